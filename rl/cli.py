"""``cimc-rl``: training, fine-tuning and export of zoo models, and the bit-width search.

The commands live in modules that each add theirs to the app: ``cimc.rl.train_cli``
(train / finetune / export / evaluate), ``cimc.rl.search_cli`` (search) and
``cimc.rl.layers_cli`` (layers). ``--model`` takes a zoo name or a user's ``FILE.py:FUNCTION``,
``--dataset`` a built-in name, ``FILE.npz`` or ``FILE.py:FUNCTION`` (``cimc.rl.inputs``); a
``.py`` given there is run, by design.
"""

from __future__ import annotations

import typer

import sys
import warnings

from cimc.cli_util import run_app

app = typer.Typer(
    name="cimc-rl",
    help="Train, fine-tune and export mixed-precision models; search per-layer bit widths. "
         "--model and --dataset take a zoo / built-in name or your own FILE.py:FUNCTION "
         "(cimc runs that file's code) or FILE.npz (read as data).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    """Train, fine-tune and export mixed-precision models; search per-layer bit widths."""


def _register_commands() -> None:
    from cimc.rl import layers_cli, search_cli, train_cli

    if app.registered_commands:
        return

    train_cli.register(app)
    search_cli.register(app)
    layers_cli.register(app)


def quiet_third_party_warnings() -> None:
    """Silence warnings of other packages that tell a cimc user nothing they can act on."""
    # Brevitas looks for an optional CUDA kernel package on import; cimc never uses it.
    warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
    warnings.filterwarnings("ignore", message="brevitas.fx is deprecated")
    warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")


def run(argv: list[str]) -> int:
    """``cimc-rl ARGV...`` in this process; returns the exit code (errors are one line)."""
    _register_commands()
    quiet_third_party_warnings()
    return run_app(app, argv, "cimc-rl")


def main() -> None:
    raise SystemExit(run(sys.argv[1:]))
