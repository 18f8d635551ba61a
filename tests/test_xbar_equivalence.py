"""Bit-serial crossbar programs against the cimq reference on many random mixed-precision models.

For every model (random Brevitas conv nets, MLPs and attention blocks from ``brevitas_zoo``, and
the small zoo models lenet / resnet_small / vit_small at random policies), on a lossless ADC and a
crossbar smaller than the layers (16x16 or 32x32, so every layer is tiled), cycling through all
three mappings, cell bits 1, 2, 4 and DAC bits 1, 2:

* every crossbar layer's integer accumulator of the ``xbar`` program (bit-serial, ``fast=False``)
  equals the cimq layer's accumulator, and the model outputs are identical;
* the counted writes and executes of every layer equal :func:`cimc.target.layer_cost` of that
  layer's ``(m, n, P, H)``, which is derived here from the importer's layer shapes (not from the
  program), times the batch (every inference programs every tile, as in the paper).

The same models at ``xbar-opt`` (narrow slices, packing, zero slices and tiles, zero-plane
skipping, batch amortisation): bit-serial and fast path give cimq's integers; both count the same
(skipped cycles and cycles per tile included); writes and cells equal the closed form of the
optimised program and executed + skipped cycles its worst case; the chip schedule at 1, 4 and
64 arrays places every executed cycle once.

Plus: a tile's fused chunk loop (one stacked BLAS call) is bit-identical to the op-by-op loop,
saturations included, on a lossy ADC.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from cimc.analysis import analyse_layer, module_layers
from cimc.chip_report import chip_schedule
from cimc.target import layer_cost
from cimc.dialects import cimq
from cimc.exec.cimq_exec import run_cimq
from cimc.exec.xbar_exec import run_xbar
from cimc.target.hw import Hardware
from cimc.pipeline import lower

from descriptors import descriptor

pytest.importorskip("brevitas")
brevitas_zoo = pytest.importorskip("brevitas_zoo")

#: (mapping, cell bits, DAC bits, crossbar size): 36 points, cycled over the models.
GRID = list(itertools.product(("dc", "dr", "of"), (1, 2, 4), (1, 2), (16, 32)))
BREVITAS = [("conv", s) for s in range(14)] + [("mlp", s) for s in range(14)] + [
    ("attention", s) for s in range(12)
]
ZOO = [(name, s) for name in ("lenet", "resnet_small", "vit_small") for s in range(4)]
CROSSBAR_OPS = (cimq.ConvOp, cimq.MatMulOp, cimq.MatMulActOp)


def _hardware(index: int) -> Hardware:
    mapping, c, d, size = GRID[(7 * index) % len(GRID)]
    return Hardware(rows=size, cols=size, cell_bits=c, dac_bits=d, mapping=mapping)


def _as_cimq_layout(acc: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """An ``xbar.layer`` result ``[B, H, P, m]`` in the layout of the cimq accumulator."""
    if ref.ndim == 4 and acc.shape[1] * acc.shape[3] == ref.shape[1] and acc.shape[2] == ref.shape[2] * ref.shape[3]:
        if not (acc.shape[1] == ref.shape[1] and acc.shape[2] == ref.shape[2]):  # conv: groups x channels
            return acc.transpose(0, 1, 3, 2).reshape(ref.shape)
    return acc.reshape(ref.shape)


def _check_model(module, layers, x: np.ndarray, hw: Hardware, where: str) -> dict:
    ref_out, rec = run_cimq(module, [x], record=lambda op: isinstance(op, CROSSBAR_OPS))
    ref_acc = {op.layer.data: np.asarray(v[0] if isinstance(v, tuple) else v) for op, v in rec.items()}
    prog = module.clone()
    lower(prog, "xbar", hw=hw)
    res = run_xbar(prog, [x], hw=hw, fast=False, record_layers=True)
    assert {r["path"] for r in res.report["layers"]} == {"bit-serial"}
    for a, b in zip(ref_out, res.outputs, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    accs = res.report["_layer_outputs"]
    assert set(accs) == set(ref_acc), where
    for name, acc in accs.items():
        ref = ref_acc[name]
        got = _as_cimq_layout(np.asarray(acc), ref)
        assert np.array_equal(got.astype(np.int64), ref.astype(np.int64)), (where, name)
    batch = x.shape[0]
    rows = {r["name"]: r for r in res.report["layers"]}
    assert set(rows) == {info.name for info in layers}, where
    tiled = False
    for info in layers:
        desc = descriptor(info)
        row = rows[info.name]
        cost = layer_cost(desc, info.w_bits, info.a_bits, hw)
        assert row["writes"] == cost.writes * batch, (where, info.name)  # every inference writes
        assert row["executes"] == cost.executes * batch, (where, info.name)
        assert row["adc_saturations"] == 0
        tiled |= cost.tiles > 1
    seen = _check_opt(module, x, hw, ref_out, ref_acc, where)
    return {
        "signed": {info.a_signed for info in layers},
        "tiled": tiled,
        "kinds": {info.kind for info in layers},
        **seen,
    }


def _check_opt(module, x, hw, ref_out, ref_acc, where) -> dict:
    """xbar-opt: exact on both paths, counted alike, closed form, schedule; what it exercised."""
    opt = module.clone()
    lower(opt, "xbar-opt", hw=hw)
    runs = [run_xbar(opt, [x], hw=hw, fast=fast, record_layers=True) for fast in (False, True)]
    for res in runs:
        for a, b in zip(ref_out, res.outputs, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b), where
        for name, acc in res.report["_layer_outputs"].items():
            ref = ref_acc[name]
            assert np.array_equal(_as_cimq_layout(np.asarray(acc), ref).astype(np.int64), ref.astype(np.int64)), (where, name)
    strip = lambda rep: [{k: v for k, v in r.items() if k not in ("path", "seconds")} for r in rep["layers"]]  # noqa: E731
    assert strip(runs[0].report) == strip(runs[1].report), where
    assert runs[0].tile_cycles == runs[1].tile_cycles, where
    progs = {p.name: p for p in map(analyse_layer, module_layers(opt))}
    batch = x.shape[0]
    for row in runs[0].report["layers"]:
        closed = progs[row["name"]].counters(batch, hw)
        assert (row["writes"], row["cells_written"]) == (closed.writes, closed.cells_written), (where, row["name"])
        assert row["executes"] + row["skipped_cycles"] == closed.executes, (where, row["name"])
    for arrays in (1, 4, 64):
        chip = dataclasses.replace(hw, arrays=arrays, residency="greedy" if arrays > 1 else "none")
        sched = chip_schedule(opt, chip, batch=batch, measured=runs[0].tile_cycles)
        assert sched.counters.executes == runs[0].report["total"]["executes"], (where, arrays)
    return {
        "blocks": any(p.geometry.blocks > 1 for p in progs.values()),
        "shared": any(p.shared for p in progs.values()),
        "compacted": any(p.phys_cols < _full_cols(p, hw) for p in progs.values()),
        "skipped": runs[0].report["total"]["skipped_cycles"] > 0,
    }


def _full_cols(p, hw: Hardware) -> int:
    from cimc.target import layer_geometry

    return layer_geometry(p.geometry.desc, p.w_bits, p.a_bits, hw, narrow=p.slices != -(-p.w_bits // hw.cell_bits),
                          blocks=p.geometry.blocks).phys_cols


@pytest.fixture(scope="module")
def coverage() -> dict:
    return {"signed": set(), "tiled": 0, "hw": set(), "kinds": set(), "models": 0,
            "blocks": 0, "shared": 0, "compacted": 0, "skipped": 0}


def _record(coverage: dict, seen: dict, hw: Hardware) -> None:
    coverage["signed"] |= seen["signed"]
    coverage["kinds"] |= seen["kinds"]
    coverage["tiled"] += int(seen["tiled"])
    coverage["hw"].add((hw.mapping, hw.cell_bits, hw.dac_bits))
    coverage["models"] += 1
    for key in ("blocks", "shared", "compacted", "skipped"):
        coverage[key] += int(seen[key])


@pytest.mark.parametrize("family,seed", BREVITAS, ids=[f"{f}{s}" for f, s in BREVITAS])
def test_brevitas_models(family, seed, tmp_path, coverage):
    from cimc.frontend import import_onnx

    case = brevitas_zoo.GENERATORS[family](seed)
    path = brevitas_zoo.export(case, tmp_path / f"{case.name}.onnx")
    imported = import_onnx(path)
    hw = _hardware(BREVITAS.index((family, seed)))
    seen = _check_model(imported.module, imported.layers, case.x.numpy(), hw, f"{case.name} {hw}")
    _record(coverage, seen, hw)


@pytest.mark.parametrize("name,seed", ZOO, ids=[f"{n}{s}" for n, s in ZOO])
def test_zoo_models_random_policy(name, seed, tmp_path, coverage):
    from cimc.frontend import import_onnx
    from cimc.models import build, export_onnx, input_shape, num_layers

    rng = np.random.default_rng(1000 + seed)
    policy = rng.integers(2, 9, size=(num_layers(name), 2))
    model = build(name, policy, seed=seed)
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    imported = import_onnx(path)
    assert [[i.w_bits, i.a_bits] for i in imported.layers] == policy.tolist()
    x = rng.standard_normal((1, *input_shape(name))).astype(np.float32)
    hw = _hardware(len(BREVITAS) + ZOO.index((name, seed)))
    if hw.rows < 32:
        hw = dataclasses.replace(hw, rows=32, cols=32)
    seen = _check_model(imported.module, imported.layers, x, hw, f"{name} {policy.tolist()} {hw}")
    _record(coverage, seen, hw)


def test_coverage(coverage):
    """Runs last (file order): the models above covered what this file promises."""
    if coverage["models"] < len(BREVITAS) + len(ZOO):
        pytest.skip("run together with the model tests (it checks their coverage)")
    assert coverage["models"] >= 50
    assert coverage["signed"] == {True, False}
    assert coverage["kinds"] >= {"conv", "linear", "matmul_act"}
    assert coverage["tiled"] >= 30
    assert {(m, c, d) for m in ("dc", "dr", "of") for c in (1, 2, 4) for d in (1, 2)} <= coverage["hw"]
    # xbar-opt: every optimisation that depends on the model did something on several of them
    assert min(coverage[k] for k in ("blocks", "shared", "compacted", "skipped")) >= 3, coverage


@pytest.mark.parametrize("mapping", ["dc", "dr", "of"])
def test_fused_chunk_loop_identical_to_op_by_op(mapping):
    """Lossy ADC (saturating): the fused chunk loop gives the same outputs and counters."""
    from xbar_ir import attention_module, conv_module

    rng = np.random.default_rng(7)
    hw = Hardware(rows=16, cols=16, cell_bits=2, dac_bits=2, mapping=mapping)
    lossy = dataclasses.replace(hw, adc_bits=4)
    for module, inputs in (
        conv_module(rng, cin=4, cout=6, k=3, size=6, pad=1, w_bits=7, a_bits=6, a_signed=True),
        attention_module(rng, heads=2, tokens=5, dim=20, w_bits=6, a_bits=5),
    ):
        inputs = [np.concatenate([v, 0.5 * v]) for v in inputs]  # batch 2
        prog = module.clone()
        lower(prog, "xbar", hw=hw)
        fused = run_xbar(prog, inputs, hw=lossy, fast=False)
        plain = run_xbar(prog, inputs, hw=lossy, fast=False, fuse=False)
        assert fused.report["total"]["adc_saturations"] > 0
        assert all(np.array_equal(a, b) for a, b in zip(fused.outputs, plain.outputs))
        strip = lambda rep: [{k: v for k, v in r.items() if k != "seconds"} for r in rep["layers"]]  # noqa: E731
        assert strip(fused.report) == strip(plain.report)
        assert fused.report["total"] == plain.report["total"]
