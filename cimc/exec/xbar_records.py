"""What the xbar interpreter functions keep per run: a layer's :class:`LayerRecord`, the physical
accumulators of ``!xbar.buf`` (:class:`PhysAcc`), and the value helpers the ops share (a static
weight's blob, zero points, the digital zero-point correction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects.builtin import TensorType

from cimc.analysis import LayerProgram
from cimc.dialects import cimq
from cimc.target.counters import Counters
from cimc.weights import Blob


@dataclass
class PhysAcc:
    """``!xbar.buf``: int64 accumulators ``[H, B, P, phys_cols]``, allocated on first use."""

    repeats: int
    cols: int
    data: np.ndarray | None = None


@dataclass
class LayerRecord:
    """Counters and timing of one layer during a run."""

    program: LayerProgram | None
    name: str
    kind: str
    counters: Counters = field(default_factory=Counters)
    seconds: float = 0.0
    path: str = ""
    weight: Blob | None = None
    """The static weight's blob (cells are derived from it once)."""
    batch: int = 1
    tile_cycles: dict[tuple[int, int, int], int] = field(default_factory=dict)
    """Cycles executed per tile ``(h, rt, ct)`` (kept where cycles were skipped)."""
    skipped_by_plane: np.ndarray | None = None
    """Skipped cycles per DAC chunk (bit-plane) index, over all tiles and vectors."""

    def count_skips(self, executed: int, skipped_per_chunk: np.ndarray, tile: tuple[int, int, int]) -> None:
        """Record a tile's executed cycles and the skipped ones per chunk."""
        self.tile_cycles[tile] = self.tile_cycles.get(tile, 0) + executed
        if self.skipped_by_plane is None:
            self.skipped_by_plane = np.zeros(len(skipped_per_chunk), dtype=np.int64)
        self.skipped_by_plane += skipped_per_chunk


def static_blob(value: Any) -> Blob | None:
    """The blob of a static crossbar weight (the ``cimq.const`` it comes from), else None."""
    owner = value.owner
    if isinstance(owner, cimq.ConstOp) and isinstance(owner.value, cimq.BlobAttr):
        return owner.value.blob.data
    return None



def zp_corrected(y: np.ndarray, xc: np.ndarray, w_zp: int) -> np.ndarray:
    """``y - w_zp * rowsum(xc)`` (``xbar.zp_correct``: ``xc`` the centred streamed input
    ``[B, H, P, n]``, ``y`` its product ``[B, H, P, m]``); ``y`` itself when ``w_zp`` is 0."""
    if not w_zp:
        return y
    return y - w_zp * np.sum(xc, axis=-1, dtype=np.int64, keepdims=True)


def zero_point(value: Any) -> int:
    """The zero point of a quantized value's type (0 for anything else)."""
    t = value.type
    return t.element_type.zp if isinstance(t, TensorType) and isinstance(t.element_type, cimq.QuantType) else 0


def centered(x: np.ndarray, value: Any) -> np.ndarray:
    """The streamed integers minus their zero point (what the crossbar's correction leaves)."""
    zp = zero_point(value)
    return np.asarray(x, dtype=np.int64) - zp if zp else x
