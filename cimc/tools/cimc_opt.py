"""``cimc-opt``: ``xdsl-opt`` with cimc's dialects and passes registered.

Weights of a ``model.mlir`` are loaded from ``model.weights.npz`` beside it when present.
``xdsl-opt`` itself also sees cimc through the ``xdsl.universe`` entry point; this driver adds
the weights handling and works without the plugin machinery.
"""

from __future__ import annotations

from xdsl.xdsl_opt_main import xDSLOptMain

from cimc.ir_io import bind_blobs
from cimc.weights import WeightStore, sidecar_path


class CimcOptMain(xDSLOptMain):
    def register_all_dialects(self) -> None:
        super().register_all_dialects()
        from cimc.dialects import get_all_dialects

        for name, factory in get_all_dialects().items():
            if name not in self.ctx.registered_dialect_names:
                self.ctx.register_dialect(name, factory)

    def parse_chunk(self, chunk, file_extension: str, start_offset: int = 0):
        """Parse, then fill the module's blobs from ``<stem>.weights.npz`` beside the input."""
        module = super().parse_chunk(chunk, file_extension, start_offset)
        name = self.get_input_name()
        side = sidecar_path(name) if name.endswith(".mlir") else None
        if module is not None and side is not None and side.is_file():
            bind_blobs(module, WeightStore.load(side))
        return module

    def register_all_passes(self) -> None:
        super().register_all_passes()
        from cimc.passes import get_all_passes

        for name, factory in get_all_passes().items():
            self.register_pass(name, factory)


def main() -> None:
    from cimc.cli_util import run_guarded

    raise SystemExit(run_guarded(lambda: CimcOptMain(description="cimc modular optimizer driver").run()))


if __name__ == "__main__":
    main()
