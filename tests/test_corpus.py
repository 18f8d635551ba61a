"""Models nobody on the cimc team wrote (:mod:`corpus`): every one imports, and `cimc run --level
cimq` equals onnxruntime (graph optimizations off) on every quantized tensor, except counted
rounding ties of one LSB. Each tensor is compared with onnxruntime's and then replaced by it
(:func:`ort_oracle.forced_comparison`), so a tie cannot spread. The test prints, per model, the
producer, the crossbar layers and the counts; the last test prints the table and checks the
corpus' size (>= 14 models from >= 4 producers).

Models marked ``pending`` need issue 11's host fallback (their first layer takes the float
image); until then they must be refused with exactly that reason.
"""

from __future__ import annotations

import pytest

import corpus
import ort_oracle
from cimc.dialects import cimq
from cimc.errors import UnsupportedModelError
from cimc.frontend import import_onnx

pytest.importorskip("qonnx", reason="the corpus has qonnx's models (pip install '.[qonnx]')")

ROWS: dict[str, tuple] = {}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(corpus.ENTRIES))
def test_corpus_model(name: str, capsys) -> None:
    model = corpus.build(name)
    if model.pending:
        with pytest.raises(UnsupportedModelError) as info:
            import_onnx(model.path)
        assert model.pending in str(info.value) and "\n" not in str(info.value)
        ROWS[name] = (model.producer, "pending", str(info.value))
        return
    result = import_onnx(model.path)
    x = corpus.input_for(model)
    reference, _ = ort_oracle.quantized_tensors(corpus.reference_path(model), [x])
    cmp, not_ties = ort_oracle.forced_comparison(result.module, [x], reference)
    quantizers = sum(1 for op in result.module.walk()
                     if isinstance(op, (cimq.QuantizeOp, cimq.RequantizeOp)))
    assert result.layers, "no crossbar layer"
    assert cmp.tensors >= quantizers, (cmp.tensors, quantizers, cmp.unmatched[:5])
    assert cmp.max_diff <= 1, cmp.line()
    assert not not_ties, not_ties[:5]
    ROWS[name] = (model.producer, len(result.layers), cmp)
    with capsys.disabled():
        print(f"\n[{name}] {model.producer}, {len(result.layers)} crossbar layers: {cmp.line()}",
              end="")


def test_zz_corpus_table(capsys) -> None:
    """Prints the per-model table and checks the corpus' size (runs after the models)."""
    if not ROWS:
        pytest.skip("no corpus model ran in this session (select test_corpus_model too)")
    lines = [f"{'model':28s} {'producer':18s} {'layers':>6s} {'tensors':>7s} {'integers':>9s} "
             f"{'ties':>5s} {'max':>3s}"]
    imported = {n: r for n, r in ROWS.items() if r[1] != "pending"}
    for name, (producer, layers, cmp) in imported.items():
        lines.append(f"{name:28s} {producer:18s} {layers:6d} {cmp.tensors:7d} {cmp.elements:9d} "
                     f"{cmp.ties:5d} {cmp.max_diff:3d}")
    for name, (producer, _, reason) in ROWS.items():
        if name not in imported:
            lines.append(f"{name:28s} {producer:18s} pending host fallback: {reason[:70]}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    if len(ROWS) == len(corpus.ENTRIES):
        assert len(imported) >= 14
        assert len({r[0] for r in imported.values()}) >= 4
