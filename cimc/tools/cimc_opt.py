"""``cimc-opt``: ``xdsl-opt`` with cimc's dialects and passes registered.

Weights of a ``model.mlir`` are loaded from ``model.weights.npz`` beside it when present.
``xdsl-opt`` itself also sees cimc through the ``xdsl.universe`` entry point; this driver adds
the weights handling and works without the plugin machinery.
"""

from __future__ import annotations

import sys
from pathlib import Path

from xdsl.xdsl_opt_main import xDSLOptMain


class CimcOptMain(xDSLOptMain):
    def register_all_dialects(self) -> None:
        super().register_all_dialects()
        from cimc.dialects import get_all_dialects

        for name, factory in get_all_dialects().items():
            if name not in self.ctx.registered_dialect_names:
                self.ctx.register_dialect(name, factory)

    def register_all_passes(self) -> None:
        super().register_all_passes()
        from cimc.passes import get_all_passes

        for name, factory in get_all_passes().items():
            self.register_pass(name, factory)


def _load_sidecar(argv: list[str]) -> None:
    from cimc.weights import STORE, sidecar_path

    for arg in argv:
        if arg.endswith(".mlir") and Path(arg).is_file():
            side = sidecar_path(arg)
            if side.exists():
                STORE.load(side)


def main() -> None:
    from cimc.cli_util import run_guarded

    _load_sidecar(sys.argv[1:])
    raise SystemExit(run_guarded(lambda: CimcOptMain(description="cimc modular optimizer driver").run()))


if __name__ == "__main__":
    main()
