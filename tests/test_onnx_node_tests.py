"""The ONNX project's own backend node tests, through cimc and onnxruntime.

Every single-node test (``onnx.backend.test.loader.load_model_tests(kind="node")``) of an op that
cimc's importer has a handler for is wrapped in Q/DQ (:mod:`onnx_node_cases`) and run by
onnxruntime (graph optimizations off) and by cimc (import + cimq executor). Per op the module
prints: cases, equal to onnxruntime, within 1 LSB, refused (with the reasons), and cases
onnxruntime itself cannot run. A case cimc accepts must match (at most 1 LSB: a rounding tie of
onnxruntime's float arithmetic); a case cimc refuses must be refused for one of the reasons the
README lists (:data:`REASONS`).
"""

from __future__ import annotations

import collections
from pathlib import Path

import onnx_node_cases as nc
import pytest

from cimc.frontend.visit import HANDLERS

#: Refusal reasons the README lists ("What cimc refuses"), as patterns of the one-line errors.
REASONS = {
    "non-float graph input": r"has element type \w+; cimc takes float32 inputs|is not a tensor",
    "optional output": r"the optional output '\w+' is not supported",
    "3-D pooling": r"only 1-D and 2-D pooling",
    "training-mode dropout": r"training_mode=true with ratio [\d.]+ drops values at random",
    "quantizer wider than 8 bits": r"is 16 bits; cimc supports 1 to 8 bits",
    "non-integer quantized type": r"quantized type \w+ is not supported",
    "per-channel activation quantizer": (r"per-channel activation zero points \[[-\d, ]+\] are not supported|"
                                         r"per-channel quantization along the batch axis is not supported"),
    "blocked quantization": r"blocked quantization \(block_size=\d+\) is not supported",
    "resize mode": r"mode '\w+' is not supported \(nearest only\)",
    "empty input": r"has size 0; cimc takes non-empty inputs",
    "reshape allowzero": r"allowzero=1 with a zero in the shape is not supported",
    "opset": r"opset \d+ is not supported",
}

#: Cases of what issue 11 asked cimc to accept: they must match onnxruntime, not be refused.
MUST_PASS = {
    "test_maxpool_2d_ceil", "test_maxpool_2d_ceil_output_size_reduce_by_one",
    "test_averagepool_2d_ceil", "test_averagepool_2d_ceil_last_window_starts_on_pad",
    "test_gemm_transposeA", "test_gemm_alpha", "test_gemm_beta", "test_gemm_all_attributes",
    "test_matmul_3d", "test_matmul_4d", "test_matmul_bcast", "test_matmul_1d_3d",
    "test_matmul_4d_1d", "test_matmul_1d_1d", "test_gather_0", "test_gather_1",
    "test_gather_2d_indices", "test_gather_negative_indices", "test_gelu_tanh_1",
    "test_gelu_tanh_2", "test_slice_neg_steps", "test_maxpool_1d_default",
    "test_averagepool_1d_default", "test_training_dropout_zero_ratio", "test_dropout_default_old",
    "test_dropout_random_old", "test_constant_pad", "test_constant_pad_axes",
    "test_split_equal_parts_1d_opset13", "test_split_1d_uneven_split_opset18",
    "test_averagepool_2d_dilations", "test_quantizelinear",
}

OPS = sorted(set(HANDLERS))
RESULTS: dict[str, list[nc.Outcome]] = {}


@pytest.fixture(scope="module")
def node_cases() -> dict[str, list]:
    by_op: dict[str, list] = collections.defaultdict(list)
    for case in nc.cases(set(OPS)):
        by_op[case.model.graph.node[0].op_type].append(case)
    return by_op


@pytest.mark.parametrize("op", OPS)
def test_node_cases(op: str, node_cases, tmp_path: Path) -> None:
    outcomes = [nc.run_case(case, tmp_path) for case in node_cases.get(op, [])]
    RESULTS[op] = outcomes
    bad = [(o.name, o.detail) for o in outcomes if o.kind == "mismatch"]
    assert not bad, bad
    for o in outcomes:
        if o.kind == "refused":
            assert nc.reason_of(o.detail, REASONS), f"{o.name}: undocumented refusal: {o.detail}"
            assert "\n" not in o.detail
        if o.name in MUST_PASS:
            assert o.kind in ("equal", "lsb"), (o.name, o.kind, o.detail)


def test_zz_print_node_table(capsys) -> None:
    """Prints the per-op table (runs after the cases above)."""
    if not RESULTS:
        pytest.skip("no node cases ran in this session (select test_node_cases too)")
    header = (f"{'op':20s} {'cases':>5s} {'equal':>5s} {'1 LSB':>5s} {'refused':>7s} "
              f"{'no ref':>6s}  refusal reasons")
    lines = [header]
    totals = collections.Counter()
    for op, outcomes in sorted(RESULTS.items()):
        kinds = collections.Counter(o.kind for o in outcomes)
        totals.update(kinds)
        totals["cases"] += len(outcomes)
        reasons = collections.Counter(nc.reason_of(o.detail, REASONS) or "?" for o in outcomes
                                      if o.kind == "refused")
        why = ", ".join(f"{r} ({n})" for r, n in sorted(reasons.items()))
        lines.append(f"{op:20s} {len(outcomes):5d} {kinds['equal']:5d} {kinds['lsb']:5d} "
                     f"{kinds['refused']:7d} {kinds['reference']:6d}  {why}")
    lines.append(f"{'total':20s} {totals['cases']:5d} {totals['equal']:5d} {totals['lsb']:5d} "
                 f"{totals['refused']:7d} {totals['reference']:6d}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert set(MUST_PASS) <= {o.name for outs in RESULTS.values() for o in outs}
    assert totals["mismatch"] == 0
