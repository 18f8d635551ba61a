"""Models nobody on the cimc team wrote (:mod:`corpus`): every one imports, and `cimc run --level
cimq` equals onnxruntime (graph optimizations off) on every quantized tensor, except counted
rounding ties of one LSB. Each tensor is compared with onnxruntime's and then replaced by it
(:func:`ort_oracle.forced_comparison`), so a tie cannot spread. The test prints, per model, the
producer, the crossbar layers and the counts; the last test prints the table and checks the
corpus' size (>= 14 models from >= 4 producers).

Models with ``host`` layers (their first layer takes the float image) run those layers on the
host (issue 11's host fallback): exactly those are host layers, the rest maps to crossbars.
"""

from __future__ import annotations

import pytest

import corpus
import ort_oracle
from cimc.analysis import host_layers
from cimc.dialects import cimq
from cimc.frontend import import_onnx

pytest.importorskip("qonnx", reason="the corpus has qonnx's models (pip install '.[qonnx]')")

ROWS: dict[str, tuple] = {}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(corpus.ENTRIES))
def test_corpus_model(name: str, capsys) -> None:
    model = corpus.build(name)
    result = import_onnx(model.path)
    assert tuple(h.name for h in host_layers(result.module)) == model.host
    x = corpus.input_for(model)
    reference, _ = ort_oracle.quantized_tensors(corpus.reference_path(model), [x])
    cmp, not_ties = ort_oracle.forced_comparison(result.module, [x], reference)
    quantizers = sum(1 for op in result.module.walk()
                     if isinstance(op, (cimq.QuantizeOp, cimq.RequantizeOp)))
    assert result.layers, "no crossbar layer"
    assert cmp.tensors >= quantizers, (cmp.tensors, quantizers, cmp.unmatched[:5])
    assert cmp.max_diff <= 1, cmp.line()
    assert not not_ties, not_ties[:5]
    ROWS[name] = (model.producer, len(result.layers), len(model.host), cmp)
    with capsys.disabled():
        print(f"\n[{name}] {model.producer}, {len(result.layers)} crossbar layers, "
              f"{len(model.host)} host: {cmp.line()}", end="")


def test_zz_corpus_table(capsys) -> None:
    """Prints the per-model table and checks the corpus' size (runs after the models)."""
    if not ROWS:
        pytest.skip("no corpus model ran in this session (select test_corpus_model too)")
    lines = [f"{'model':28s} {'producer':18s} {'layers':>6s} {'host':>4s} {'tensors':>7s} "
             f"{'integers':>9s} {'ties':>5s} {'max':>3s}"]
    for name, (producer, layers, host, cmp) in ROWS.items():
        lines.append(f"{name:28s} {producer:18s} {layers:6d} {host:4d} {cmp.tensors:7d} "
                     f"{cmp.elements:9d} {cmp.ties:5d} {cmp.max_diff:3d}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    if len(ROWS) == len(corpus.ENTRIES):
        assert len(ROWS) >= 14
        assert len({r[0] for r in ROWS.values()}) >= 4
