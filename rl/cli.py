"""``cimc-rl``: training, fine-tuning and export of zoo models, and the bit-width search.

The commands live in two modules that each add theirs to the app: ``cimc.rl.train_cli``
(train / finetune / export / evaluate) and ``cimc.rl.search_cli`` (search).
"""

from __future__ import annotations

import typer

from cimc.cli_util import run_guarded

app = typer.Typer(
    name="cimc-rl",
    help="Train, fine-tune and export mixed-precision models; search per-layer bit widths.",
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
    from cimc.rl import search_cli, train_cli

    train_cli.register(app)
    search_cli.register(app)


def main() -> None:
    _register_commands()
    raise SystemExit(run_guarded(lambda: app(standalone_mode=True)))
