"""``cimc-opt``: ``xdsl-opt`` with cimc's dialects and passes registered.

What it adds to the stock driver:

- weights: a ``model.mlir`` input loads ``model.weights.npz`` beside it; with ``-o out.mlir``
  the constants the output refers to (including those the passes create: crossbar cells,
  recombination tables) are written to ``out.weights.npz`` beside it, as ``cimc lower`` does,
  so ``cimc run out.mlir`` works; on stdout a note says how to keep them;
- the ``cimc.level`` attribute follows the passes (``convert-cimq-to-xbar`` -> ``xbar-mm``,
  ``xbar-tile`` -> ``xbar``, ...);
- outputs: ``-o`` is never one of the inputs, and it (with its weights) is written all or
  nothing only after everything succeeded, so a failure leaves no file behind;
- errors: pipeline syntax, unknown passes or options, bad option values, malformed or invalid IR
  and bad command-line flags are one ``error: ...`` line (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from xdsl.xdsl_opt_main import xDSLOptMain

from cimc.errors import CimcError, InputFileError


class CimcOptMain(xDSLOptMain):
    """``xDSLOptMain`` with cimc's registries, safe input, buffered output and level tracking."""

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

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser) -> None:
        super().register_all_arguments(arg_parser)
        arg_parser.add_argument("--debug", action="store_true", help="Show tracebacks of errors.")

    def get_input_stream(self) -> tuple[IO[bytes], str]:
        if self.args.input_file is None:
            return sys.stdin.buffer, "mlir"
        from cimc.safe_read import LIMITS, read_bytes

        path = Path(self.args.input_file)
        return io.BytesIO(read_bytes(path, "IR file", LIMITS["mlir"])), path.suffix.lstrip(".")

    def prepare_output(self) -> IO[str]:
        self.buffer = _Buffer()
        self.modules: list = []
        return self.buffer

    def parse_chunk(self, chunk: IO[bytes], file_extension: str, start_offset: int = 0):
        from xdsl.utils.exceptions import ParseError, VerifyException

        name = self.get_input_name()
        try:
            module = super().parse_chunk(chunk, file_extension, start_offset)
        except ParseError as exc:
            if self.args.parsing_diagnostics:
                raise  # xdsl-opt prints it as the expected diagnostic
            raise InputFileError(f"{name}: malformed IR: {_parse_error_line(exc)}") from None
        except UnicodeDecodeError:
            raise InputFileError(f"{name}: not a text IR file") from None
        if module is not None and not self.args.disable_verify and not self.args.verify_diagnostics:
            try:
                module.verify()
            except VerifyException as exc:
                raise InputFileError(f"{name}: invalid IR: {_first_line(exc)}") from None
        if module is not None:
            self._bind(module, name)
        return module

    def _bind(self, module, name: str) -> None:
        """Fill the module's blobs from ``<stem>.weights.npz`` beside the input, where present."""
        from cimc.ir_io import bind_blobs
        from cimc.weights import WeightStore, sidecar_path

        side = sidecar_path(name) if name.endswith(".mlir") else None
        store = WeightStore.load(side) if side is not None and side.is_file() else WeightStore()
        bind_blobs(module, store)  # a pass that needs a missing constant says so when it reads it

    def apply_passes(self, prog) -> None:
        from xdsl.utils.exceptions import DiagnosticException

        try:
            super().apply_passes(prog)
        except CimcError:
            raise
        except DiagnosticException as exc:
            if self.args.verify_diagnostics:
                raise  # xdsl-opt prints it as the expected diagnostic
            raise CimcError(f"{self.get_input_name()}: {_first_line(exc)}") from None
        level = level_after(prog, [p.name for p in self.pipeline.passes])
        if level is not None:
            from cimc.ir_io import set_module_level

            set_module_level(prog, level)
        self.modules.append(prog)


class _Buffer(io.StringIO):
    """The output text, kept when the driver closes its output stream."""

    def close(self) -> None:
        pass


def level_after(module, pass_names: list[str]) -> str | None:
    """The ``cimc.level`` a module reaches after ``pass_names`` (None: no level pass ran)."""
    from cimc.ir_io import module_level
    from cimc.pipeline import levels, passes_between

    names = [n for n, _ in levels()]
    reached = {}
    for prev, level in zip(names, names[1:]):
        for p in passes_between(prev, level):
            reached[p.name] = level
    hits = [reached[n] for n in pass_names if n in reached]
    if not hits:
        return None
    current = module_level(module) or "cimq"
    return max([current, *hits], key=names.index)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _parse_error_line(exc: BaseException) -> str:
    """``<what> (<file>:<line>:<col>)`` from an xDSL parse error with its source excerpt."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    where, what = lines[0], lines[-1]
    return f"{what} ({where})" if where != what else what


@contextlib.contextmanager
def _one_line_argparse() -> Iterator[None]:
    """argparse errors (unknown flag, bad target) as a CimcError instead of usage + exit."""
    original = argparse.ArgumentParser.error

    def error(self, message: str):
        raise CimcError(f"{message} (see 'cimc-opt --help')")

    argparse.ArgumentParser.error = error  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original  # type: ignore[method-assign]


def _pipeline_error(spec: str, exc: BaseException) -> CimcError:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    what = lines[-1] if lines else type(exc).__name__
    column = next((ln.rsplit(":", 1)[-1] for ln in lines if ln.startswith("pass-pipeline:")), None)
    at = f" at column {column}" if column else ""
    return CimcError(f"-p '{spec}': invalid pass pipeline: {what}{at}")


def _build(argv: list[str]) -> CimcOptMain:
    from xdsl.utils.exceptions import ArgSpecParseError

    spec = _option_value(argv, ("-p", "--passes")) or ""
    try:
        with _one_line_argparse():
            return CimcOptMain(description="cimc modular optimizer driver", args=argv)
    except CimcError:
        raise
    except (ArgSpecParseError, ValueError, TypeError) as exc:
        raise _pipeline_error(spec, exc) from None


def _option_value(argv: list[str], names: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _run(argv: list[str]) -> None:
    from cimc.safe_write import OutputSet
    from cimc.weights import blobs_npz_bytes, sidecar_path

    opt = _build(argv)
    src = Path(opt.args.input_file) if opt.args.input_file else None
    outs = OutputSet([src, sidecar_path(src)] if src is not None else [])
    out = Path(opt.args.output_file) if opt.args.output_file else None
    if out is not None:
        outs.plan(out, "-o")
        if not outs.passthrough(out):
            outs.plan(sidecar_path(out), "the weights of -o")
    opt.run()
    text = opt.buffer.getvalue()
    blobs = _blobs(opt.modules)
    digests = {b.digest for b in blobs}
    if out is None:
        sys.stdout.write(text)
        if digests and not _all_in(digests, src):
            print(f"note: the output refers to {len(digests)} constant(s) kept outside the IR; "
                  "use -o FILE.mlir to write them to FILE.weights.npz", file=sys.stderr)
        return
    outs.put(out, text, "-o")
    side = sidecar_path(out)
    if outs.passthrough(out):
        digests = set()  # a device or stream has no "beside": the text goes alone
    if digests:
        outs.put(side, blobs_npz_bytes(blobs), "the weights of -o")
    outs.commit()
    print(f"wrote {out}" + (f" (weights: {side})" if digests else ""), file=sys.stderr)


def _blobs(modules: list) -> list:
    from cimc.ir_io import module_blobs

    return [attr.blob.data for m in modules for attr in module_blobs(m)]


def _all_in(digests: set[str], src: Path | None) -> bool:
    """Whether the input's weights file already holds every constant (nothing new to keep)."""
    from cimc.weights import sidecar_path

    if src is None or not sidecar_path(src).is_file():
        return False
    import zipfile

    with zipfile.ZipFile(sidecar_path(src)) as zf:
        have = {n.removesuffix(".npy") for n in zf.namelist()}
    return digests <= have


def run(argv: list[str]) -> int:
    """``cimc-opt ARGV...`` in this process; returns the exit code."""
    from cimc.cli_util import run_guarded

    return run_guarded(lambda: _run(argv), argv)


def main() -> None:
    raise SystemExit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
