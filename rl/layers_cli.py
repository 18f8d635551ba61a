"""``cimc-rl layers``: the crossbar layers of a model, in forward-execution order.

These are the rows of the model's policy (``(L, 2)`` ``[w_bits, a_bits]``), for a zoo model or a
user's ``FILE.py:FUNCTION``, with each layer's crossbar descriptor per inference (``m`` outputs,
``n`` inputs, ``P`` rows streamed, ``H`` operands written, e.g. attention heads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cimc.rl.train_cli import JsonOpt, ModelOpt


def layers_rows(model: str) -> list[dict[str, object]]:
    """One dict per policy row: ``index, name, kind, module, m, n, P, H``."""
    from cimc.models.user import is_user_model, load_user_model
    from cimc.rl.search_model import describe_model

    _, descs = describe_model(model)
    modules = ([r.module_type for r in load_user_model(model).layers] if is_user_model(model)
               else [""] * len(descs))
    return [{"index": i, "name": d.name, "kind": d.kind, "module": mod, "m": d.m, "n": d.n,
             "P": d.P, "H": d.H} for i, (d, mod) in enumerate(zip(descs, modules))]


def layers_cmd(
    model: ModelOpt,
    json_path: JsonOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the layer names, one a line.")] = False,
) -> None:
    """The crossbar layers of a model in forward-execution order: the rows of its policy."""
    from rich.table import Table

    from cimc.cli_util import print_table
    from cimc.rl.train_cli import check_names
    from cimc.safe_write import OutputSet

    model, _ = check_names(model)
    outs = OutputSet()
    if json_path is not None:
        outs.plan(json_path, "--json")
    rows = layers_rows(model)
    if quiet:
        for row in rows:
            typer.echo(row["name"])
    else:
        table = Table(title=f"{model}: {len(rows)} crossbar layers (policy rows), forward order")
        for col in ("#", "layer", "kind", "module", "m", "n", "P", "H"):
            table.add_column(col, justify="left" if col in ("layer", "kind", "module") else "right")
        for r in rows:
            table.add_row(*(str(r[k]) for k in ("index", "name", "kind", "module", "m", "n", "P", "H")))
        print_table(table)
        _note_float_only(model)
    if json_path is not None:
        outs.put(Path(json_path), json.dumps({"model": model, "layers": rows}, indent=1) + "\n", "--json")
    for path in outs.commit():
        typer.echo(f"wrote {path}", err=True)


def _note_float_only(model: str) -> None:
    from cimc.models.user import is_user_model, load_user_model

    if is_user_model(model) and load_user_model(model).float_only:
        left = ", ".join(load_user_model(model).float_only)
        typer.echo(f"left float (never ran in the forward pass): {left}")


def register(app: typer.Typer) -> None:
    """Add ``layers`` to the ``cimc-rl`` app."""
    app.command("layers")(layers_cmd)
