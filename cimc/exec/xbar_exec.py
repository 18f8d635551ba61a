"""Execution of ``xbar`` programs: the bit-serial crossbar interpreter with hardware counters.

:func:`run_xbar` runs ``@main`` in xDSL's interpreter with func, arith and scf from xDSL, the cimq
host ops (:mod:`cimc.exec.cimq_exec`) and the xbar ops (:mod:`cimc.exec.xbar_impls`), and
collects the counters of every crossbar layer (tile writes and cells written, cycles, ADC
conversions and saturations, DAC activations) and the host ops' wall time. Latency is
:func:`cimc.target.counters.latency_us` of the counters. At batch ``B`` every vector needs its own
cycles, so executes scale with ``B``; static tiles are written once per inference, dynamic
(attention) tiles once per batch element. With ``B = 1`` the counts are the paper's formula.

Fast path: with a lossless ADC a layer may compute its exact integers in one product
(:mod:`cimc.exec.fast_path`) and take its counters from the program's geometry
(:mod:`cimc.analysis`); ``fast=False`` forces the bit-serial loops. Both give identical outputs
and counters (tested).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp
from xdsl.interpreter import Interpreter
from xdsl.interpreters.arith import ArithFunctions
from xdsl.interpreters.func import FuncFunctions
from xdsl.interpreters.scf import ScfFunctions
from xdsl.ir import Operation

from cimc.analysis import check_hardware, host_layers, is_host_compute, reduction_length, run_batch
from cimc.dialects import xbar
from cimc.exec.result import RunResult
from cimc.exec.cimq_exec import CimqFunctions, check_inputs, find_main
from cimc.exec.xbar_impls import XbarFunctions
from cimc.exec.xbar_records import LayerRecord
from cimc.exec.xbar_tiles import FusedChunkLoops
from cimc.target.counters import COUNTER_NAMES, Counters, latency_us
from cimc.target.energy import EnergyPreset, energy_model, total_fields
from cimc.target.hw import Hardware
from cimc.target.noise import Device, NoiseModel


class _HostTimer(Interpreter.Listener):
    """Wall time of the host ops of ``@main`` (everything but the crossbar layers) and the
    elements its host compute ops produce (:func:`cimc.analysis.is_host_compute`) and the
    multiply-adds of its products on the host (:func:`cimc.analysis.reduction_length`)."""

    def __init__(self, main: Operation):
        self.main_body = main.regions[0].block
        self.start: dict[int, float] = {}
        self.seconds = 0.0
        self.elements = 0
        self.macs = 0

    def _host(self, op: Operation) -> bool:
        return op.parent_block() is self.main_body and not isinstance(op, xbar.CROSSBAR_OPS)

    def will_interpret_op(self, op: Operation, args: Any) -> None:
        if self._host(op):
            self.start[id(op)] = time.perf_counter()

    def did_interpret_op(self, op: Operation, results: Any) -> None:
        t0 = self.start.pop(id(op), None)
        if t0 is not None:
            self.seconds += time.perf_counter() - t0
            if is_host_compute(op):
                produced = sum(int(np.size(r)) for r in results)
                self.elements += produced
                self.macs += produced * reduction_length(op)


# ---------------------------------------------------------------------------- driver


def run_xbar(
    module: ModuleOp,
    inputs: Sequence[np.ndarray],
    *,
    hw: Hardware | None = None,
    progress: bool = False,
    fast: bool | None = None,
    record_layers: bool = False,
    fuse: bool = True,
    noise: NoiseModel | Device | None = None,
    seed: int = 0,
) -> RunResult:
    """Run ``@main`` of an ``xbar-mm``/``xbar`` level module; counters in the result's report.

    ``fast``: None = exact one-step layers where the ADC is lossless, else bit-serial; True =
    always exact (an error on a lossy ADC); False = always bit-serial. ``record_layers`` adds the
    crossbar layers' outputs (``report["_layer_outputs"]``, not JSON) for comparisons.
    ``fuse=False`` interprets every chunk loop op by op (one BLAS call per plane) instead of
    running each tile's chunk loop as one stacked BLAS call; both are bit-identical.
    ``noise`` runs on a non-ideal device (a :class:`cimc.target.noise.Device`, or one drawn from a
    noise model with ``seed``; bit-serial only); without it the run is ideal, exactly as it
    always was.
    """
    hw = check_hardware(module, hw)
    main = find_main(module)
    args = check_inputs(main, inputs)
    n_layers = sum(1 for op in module.walk() if isinstance(op, xbar.CROSSBAR_OPS) and not _nested(op))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_layers, desc="crossbar layers", unit="layer", leave=False)
    device = Device(noise, hw, seed) if isinstance(noise, NoiseModel) else noise
    fns = XbarFunctions(hw, fast, bar, device)
    timer = _HostTimer(main)
    outputs: dict[str, np.ndarray] = {}

    class _Rec(Interpreter.Listener):
        def did_interpret_op(self, op: Operation, results: Any) -> None:
            if record_layers and isinstance(op, xbar.CROSSBAR_OPS) and not _nested(op):
                outputs[op.layer.data] = results[0]  # type: ignore[union-attr]

    interp = Interpreter(module, listeners=(timer, _Rec()))
    interp.register_implementations(FuncFunctions())
    interp.register_implementations(ArithFunctions())
    interp.register_implementations(ScfFunctions())
    interp.register_implementations(CimqFunctions())
    interp.register_implementations(fns, override=True)  # cimq.const: see run_cimq_const
    if fuse:
        interp.register_implementations(FusedChunkLoops(fns), override=True)
    try:
        outs = interp.call_op("main", tuple(args))
    finally:
        if bar is not None:
            bar.close()
    batch = run_batch(module) or (int(args[0].shape[0]) if args and args[0].ndim else 1)
    report = build_report(fns.layers, hw, batch, timer.seconds, Counters(host_elements=timer.elements,
                                                                            host_macs=timer.macs))
    report["host_layers"] = [{"name": h.name, "op": h.op, "reason": h.reason} for h in host_layers(module)]
    if device is not None:
        report["noise"] = device.summary()
    if record_layers:
        report["_layer_outputs"] = outputs
    measured = {rec.name: rec.tile_cycles for rec in fns.layers if rec.tile_cycles}
    return RunResult([np.asarray(o) for o in outs], report, counters_table(report), measured)


def _nested(op: Operation) -> bool:
    parent = op.parent_op()
    while parent is not None:
        if isinstance(parent, xbar.LayerOp):
            return True
        parent = parent.parent_op()
    return False


def build_report(layers: list[LayerRecord], hw: Hardware, batch: int, host_s: float,
                 host: Counters | None = None) -> dict[str, Any]:
    """JSON-able counters per layer and in total (``host``: the host ops' counts)."""
    rows = []
    host = host or Counters()
    total = Counters()
    for rec in layers:
        c = rec.counters
        total += c
        row: dict[str, Any] = {"name": rec.name, "kind": rec.kind, "path": rec.path}
        if rec.program is not None:
            p = rec.program
            row.update(m=p.m, n=p.n, P=p.P, H=p.H, w_bits=p.w_bits, a_bits=p.a_bits,
                       slices=p.slices, row_tiles=p.row_tiles, col_tiles=p.col_tiles, chunks=p.chunks)
        row.update(c.as_dict())
        row["latency_us"] = latency_us(c, hw)
        row["seconds"] = rec.seconds
        if rec.skipped_by_plane is not None:
            row["skipped_by_plane"] = [int(v) for v in rec.skipped_by_plane]
        rows.append(row)
    tot: dict[str, Any] = total.as_dict()  # the crossbar layers; the host ops are "host"
    tot["latency_us"] = latency_us(total, hw)
    return {
        "batch": batch,
        "hardware": hw.to_dict(),
        "layers": rows,
        "host": {"host_elements": host.host_elements, "host_macs": host.host_macs},
        "total": tot,
        "host_seconds": host_s,
    }


def _counters_of(row: dict[str, Any]) -> Counters:
    return Counters(**{name: int(row.get(name, 0)) for name in COUNTER_NAMES})


def add_energy(report: dict[str, Any], hw: Hardware, preset: EnergyPreset) -> dict[str, Any]:
    """Add energy per layer and component, the host ops' energy, the total and the energy-delay
    product to a run report, from its counters (``report`` is changed and returned)."""
    model = energy_model(preset, hw)
    for row in report["layers"]:
        row.update(model.fields(_counters_of(row), row["latency_us"]))
    report["host"].update(model.fields(_counters_of(report["host"]), 0.0))
    report["total"].update(total_fields((*report["layers"], report["host"]), report["total"]["latency_us"]))
    report["energy"] = model.summary()
    return report


def counters_table(report: dict[str, Any]) -> Any:
    """A rich Table of the per-layer counters."""
    from rich.table import Table

    keys = ("writes", "cells_written", "executes", "adc_conversions", "adc_saturations", "dac_activations")
    heads = ("writes", "cells written", "cycles", "ADC conversions", "ADC saturations", "DAC activations")
    if report["total"].get("skipped_cycles"):
        keys, heads = keys[:3] + ("skipped_cycles",) + keys[3:], heads[:3] + ("skipped cycles",) + heads[3:]
    if report["total"].get("adc_slots", 0) != report["total"].get("executes", 0):
        keys, heads = keys + ("adc_slots",), heads + ("ADC slots",)
    table = Table(title=f"crossbar counters (batch {report['batch']})")
    table.add_column("layer")
    for head in heads:
        table.add_column(head, justify="right")
    table.add_column("latency us", justify="right")
    for row in report["layers"]:
        table.add_row(row["name"], *(f"{row[k]:,}" for k in keys), f"{row['latency_us']:,.1f}")
    tot = report["total"]
    table.add_row("total", *(f"{tot[k]:,}" for k in keys), f"{tot['latency_us']:,.1f}", style="bold")
    return table


def layer_errors(ref: dict[str, Any], test: dict[str, Any]) -> list[dict[str, Any]]:
    """Per crossbar layer of two runs with ``record_layers``: the test run's saturations and its
    output error against the reference (max absolute, relative L2)."""
    ref_out, test_out = ref["_layer_outputs"], test["_layer_outputs"]
    layers = []
    for row in test["layers"]:
        a = np.asarray(ref_out[row["name"]], dtype=np.float64)
        b = np.asarray(test_out[row["name"]], dtype=np.float64)
        layers.append({
            "name": row["name"],
            "adc_saturations": row["adc_saturations"],
            "adc_conversions": row["adc_conversions"],
            "max_abs_error": float(np.abs(a - b).max(initial=0)),
            "rel_error": float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30)),
        })
    return layers


def output_errors(ref: Sequence[np.ndarray], test: Sequence[np.ndarray]) -> list[dict[str, float]]:
    """Per model output: max / mean absolute difference and the fraction of values changed."""
    outs = []
    for a, b in zip(ref, test):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        outs.append({
            "max_abs_error": float(np.abs(a64 - b64).max(initial=0)),
            "mean_abs_error": float(np.abs(a64 - b64).mean()) if a64.size else 0.0,
            "changed_fraction": float(np.mean(a64 != b64)) if a64.size else 0.0,
        })
    return outs


def compare_lossy(
    module: ModuleOp, inputs: Sequence[np.ndarray], hw: Hardware, *, fast: bool | None = None
) -> dict[str, Any]:
    """Run ``module`` (an ``xbar`` level program) with ``hw``'s ADC and with a lossless one.

    Returns per-layer saturations and output errors of the lossy run against the lossless run,
    and the error of the model outputs (max / mean absolute difference, fraction changed), the
    outputs of both runs and the lossy run's counters report (``lossy_report``). ``fast`` is
    passed to the lossless run (and to the lossy one where its ADC is lossless after all).
    """
    exact = run_xbar(module, inputs, hw=dataclasses.replace(hw, adc_bits=None), record_layers=True,
                     fast=fast)
    lossy = run_xbar(module, inputs, hw=hw, fast=False if not hw.lossless else fast, record_layers=True)
    return {
        "adc_bits": hw.adc_bits,
        "saturations": lossy.report["total"]["adc_saturations"],
        "layers": layer_errors(exact.report, lossy.report),
        "outputs": output_errors(exact.outputs, lossy.outputs),
        "lossless_outputs": exact.outputs,
        "lossy_outputs": lossy.outputs,
        "lossy_report": {k: v for k, v in lossy.report.items() if k != "_layer_outputs"},
    }
