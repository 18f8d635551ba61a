"""The search's cost from cimc's own compiled crossbar program (not a hand-written table).

:class:`CompilerCost` costs a policy the way a user would: build the zoo model at that policy
(Brevitas), export it to ONNX QCDQ, import it, lower it to the ``xbar`` level for the chosen
hardware and read every layer's writes and crossbar cycles off the program (the same reading
``cimc report`` does, and which the tests prove equal to the interpreter's counters).

What does not change between episodes is cached: a layer's cost depends only on its own shape,
its bits and the hardware, so every compiled layer is remembered under ``(layer, w, a)``. A
policy whose layers were all seen before is costed without compiling anything; a new one is
compiled once and fills the cache for all its layers.

With an :class:`~cimc.target.energy.EnergyModel` (``--objective energy|edp``) each compiled
policy also gets its energy and energy-delay product, computed from the compiled module by
:func:`cimc.report.program_energy` (what ``cimc report --energy`` gives for that model). The
chip schedule can couple layers (arrays, residency), so these are cached per policy: a policy
not compiled before is compiled for them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cimc.errors import CimcError
from cimc.rl.costs import OBJECTIVE_FIGURE


class CompilerCost:
    """``latency(policy)`` in microseconds from the compiled ``xbar`` program of the policy."""

    def __init__(self, model_name: str, hw: Any = None, *, seed: int = 0, energy: Any = None,
                 objective: str = "latency") -> None:
        from cimc.target.hw import Hardware
        from cimc.models import num_layers

        self.model_name = model_name
        self.hw = hw or Hardware()
        self.seed = seed
        self.n_layers = num_layers(model_name)
        self._rows: dict[tuple[int, int, int], dict[str, Any]] = {}
        self.energy = energy
        self.objective = objective
        self._figures: dict[bytes, dict[str, float]] = {}
        self.compiles = 0
        self.compile_seconds = 0.0
        self._tmp = tempfile.TemporaryDirectory(prefix="cimc-cost-")

    # -- compiling ------------------------------------------------------------------------------
    def compile_rows(self, policy: np.ndarray) -> list[dict[str, Any]]:
        """Compile ``policy``'s model to ``xbar`` and return the report's per-layer rows."""
        from cimc.frontend import import_onnx
        from cimc.models import build, export_onnx
        from cimc.pipeline import lower
        from cimc.report import layer_rows, program_energy

        t0 = time.perf_counter()
        model = build(self.model_name, policy, seed=self.seed)
        path = export_onnx(model, Path(self._tmp.name) / "policy.onnx")
        module = import_onnx(path).module
        lower(module, "xbar", hw=self.hw)
        rows = layer_rows(module, self.hw)
        self.compiles += 1
        self.compile_seconds += time.perf_counter() - t0
        if len(rows) != len(policy):
            raise CimcError(
                f"{self.model_name}: the compiled program has {len(rows)} crossbar layers, the "
                f"policy {len(policy)}"
            )
        for i, (row, (w, a)) in enumerate(zip(rows, policy)):
            if (row["w_bits"], row["a_bits"]) != (int(w), int(a)):
                raise CimcError(
                    f"{self.model_name}: layer {i} '{row['name']}' compiled at "
                    f"w{row['w_bits']}/a{row['a_bits']}, the policy asks w{w}/a{a}"
                )
        if self.energy is not None:
            self._figures[np.asarray(policy, dtype=np.int64).tobytes()] = program_energy(
                module, rows, self.hw, self.energy)
        return rows

    def layer_rows(self, policy: np.ndarray) -> list[dict[str, Any]]:
        pol = np.asarray(policy, dtype=np.int64).reshape(-1, 2)
        keys = [(i, int(w), int(a)) for i, (w, a) in enumerate(pol)]
        if not all(k in self._rows for k in keys):
            for key, row in zip(keys, self.compile_rows(pol)):
                self._rows[key] = row
        return [self._rows[k] for k in keys]

    # -- the CostModel protocol of cimc.rl.search ------------------------------------------------
    def latency(self, policy: np.ndarray) -> float:
        return float(sum(r["latency_us"] for r in self.layer_rows(policy)))

    def layer_latencies(self, policy: np.ndarray) -> np.ndarray:
        return np.array([r["latency_us"] for r in self.layer_rows(policy)], dtype=np.float64)

    def baseline_latency(self) -> float:
        return self.latency(np.full((self.n_layers, 2), 8, dtype=np.int64))

    # -- the objective (``--objective``): latency, energy or energy-delay product ----------------
    def figures(self, policy: np.ndarray) -> dict[str, float]:
        """``latency_us`` (the report's), ``energy_uj``, ``edp_uj_us`` of the compiled policy."""
        if self.energy is None:
            raise CimcError("compiler cost: energy needs an energy preset")
        pol = np.asarray(policy, dtype=np.int64).reshape(-1, 2)
        key = pol.tobytes()
        if key not in self._figures:
            self.compile_rows(pol)
        return self._figures[key]

    def value(self, policy: np.ndarray) -> float:
        """The figure the search minimises: latency (us), energy (uJ) or EDP (uJ x us)."""
        if self.objective == "latency":
            return self.latency(policy)
        return float(self.figures(policy)[OBJECTIVE_FIGURE[self.objective]])

    def baseline_value(self) -> float:
        return self.value(np.full((self.n_layers, 2), 8, dtype=np.int64))

    def counts(self, policy: np.ndarray) -> dict[str, int]:
        rows = self.layer_rows(policy)
        return {"writes": sum(r["writes"] for r in rows), "executes": sum(r["executes"] for r in rows)}
