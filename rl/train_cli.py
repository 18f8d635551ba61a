"""``cimc-rl train | finetune | export | evaluate``: the Brevitas side of the command line.

Typical pipeline::

    cimc-rl train --model lenet --dataset fashion_mnist --float --epochs 6 --out runs/float
    cimc-rl train --model lenet --dataset fashion_mnist --bits 8 --init runs/float/model.pt \\
        --out runs/w8a8
    cimc-rl finetune --model lenet --policy p.npy --ckpt runs/w8a8/model.pt --steps 200 \\
        --out runs/p
    cimc-rl export --model lenet --ckpt runs/p/model.pt -o lenet.onnx

Checkpoints are ``DIR/model.pt`` (state_dict) plus ``DIR/model.json`` (model, data set, policy,
float flag, accuracy). Heavy imports happen inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cimc.errors import CimcError
from cimc.rl.inputs import DATASET_HELP, MODEL_HELP

ModelOpt = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help=DATASET_HELP)]
JsonOpt = Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")]
ProgressOpt = Annotated[Optional[bool], typer.Option(
    "--progress/--no-progress", help="Show progress bars (default: on a terminal).")]


def _report(rows: dict[str, Any], json_path: Path | None, outs: Any = None) -> None:
    """Print ``rows`` as a two-column table; write them as JSON (and everything planned in
    ``outs``) all or nothing, and say what was written."""
    from cimc.safe_write import OutputSet

    width = max(len(k) for k in rows)
    for key, value in rows.items():
        shown = f"{value:.2f}" if isinstance(value, float) else value
        typer.echo(f"{key:<{width}}  {shown}")
    outs = OutputSet() if outs is None else outs
    if json_path is not None:
        outs.put(json_path, json.dumps(rows, indent=1) + "\n", "--json")
    for path in outs.commit():
        typer.echo(f"wrote {path}", err=True)


def check_names(model: str, dataset: str | None = None) -> tuple[str, str | None]:
    """``--model`` and ``--dataset``, before anything is built or read: canonical names, a
    user's files loaded and checked, the data fitting the model (:func:`cimc.rl.inputs.resolve`)."""
    from cimc.rl.inputs import resolve

    return resolve(model, dataset)


def _plan_outputs(inputs: list[Any], out: Path | None = None, json_path: Path | None = None):
    """An :class:`~cimc.safe_write.OutputSet` with the checkpoint files in ``out`` and ``--json``
    checked against the inputs before any work."""
    from cimc.safe_write import OutputSet
    from cimc.training import meta_path

    outs = OutputSet(inputs)
    if out is not None:
        if out.exists() and not out.is_dir():
            raise CimcError(f"--out {out}: is a file; give a folder for model.pt / model.json")
        outs.plan(out / "model.pt", "the checkpoint")
        outs.plan(meta_path(out / "model.pt"), "the checkpoint's metadata")
    if json_path is not None:
        outs.plan(json_path, "--json")
    return outs


def _policy(model: str, path: Path | None, meta: dict[str, Any] | None = None):
    """The policy from ``--policy``, else the checkpoint's, else ``None`` (8/8), validated."""
    from cimc.models import load_policy, validate_policy
    from cimc.models.policy import policy_model

    if path is not None:
        named = policy_model(path)
        if named not in (None, model):
            raise CimcError(f"{path}: policy is for model '{named}', not '{model}'")
        try:
            return validate_policy(load_policy(path), model)
        except CimcError as exc:
            if exc.message.startswith(str(path)):
                raise
            raise CimcError(f"{path}: {exc.message}") from None
    if meta and meta.get("policy") is not None:
        return validate_policy(meta["policy"], model)
    return None


def _check_meta(model: str, meta: dict[str, Any], ckpt: Path) -> None:
    if meta.get("model") not in (None, model):
        raise CimcError(f"{ckpt}: checkpoint is for model '{meta['model']}', not '{model}'")


def _load_model(model: str, ckpt: Path | None, policy_path: Path | None, seed: int):
    """Build ``model`` (float when the checkpoint says so) and load ``ckpt`` into it."""
    from cimc.models import build
    from cimc.training import load_checkpoint

    if ckpt is None:
        policy = _policy(model, policy_path)
        return build(model, policy, seed=seed), {"policy": policy}
    state, meta = load_checkpoint(ckpt)
    _check_meta(model, meta, ckpt)
    is_float = bool(meta.get("float")) and policy_path is None
    policy = None if is_float else _policy(model, policy_path, meta)
    net = build(model, policy, seed=seed, quant=not is_float)
    if is_float:
        net.load_state_dict(state)
        return net, {"policy": None, "float": True}
    if meta.get("float"):
        from cimc.training import load_float_weights

        load_float_weights(net, state)
    else:
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CimcError(f"{ckpt}: does not fit model '{model}': {str(exc).splitlines()[0]}") from None
    return net, {"policy": policy, "float": False}


def train_cmd(
    model: ModelOpt,
    dataset: DatasetOpt = "fashion_mnist",
    epochs: Annotated[float, typer.Option(help="Epochs (fractions allowed).")] = 1.0,
    bits: Annotated[int, typer.Option(help="Uniform weight/activation bits (2..8) for QAT.")] = 8,
    float_: Annotated[bool, typer.Option("--float", help="Train the float twin instead.")] = False,
    init: Annotated[Path | None, typer.Option(help="Start from this checkpoint (float or quantised).")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate (cosine decay).")] = 2e-3,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 128,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training images.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for init and shuffling.")] = 0,
    out: Annotated[Path, typer.Option(help="Output directory for model.pt / model.json.")] = Path("runs/train"),
    json_path: JsonOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Train a zoo model (float, or QAT at uniform --bits) and save a checkpoint."""
    import numpy as np

    from cimc.cli_util import check_number, show_progress

    model, dataset = check_names(model, dataset)
    check_number("--epochs", epochs, lo=0, lo_open=True)
    check_number("--bits", bits, lo=2, hi=8)
    check_number("--lr", lr, lo=0, lo_open=True)
    check_number("--batch-size", batch_size, lo=1)
    check_number("--limit", limit, lo=1)
    outs = _plan_outputs([init, init and _meta(init)], out, json_path)
    from cimc.models import build, num_layers, validate_policy
    from cimc.training import evaluate, load_checkpoint, load_float_weights, save_checkpoint, train

    policy = None if float_ or bits == 8 else validate_policy(np.full((num_layers(model), 2), bits), model)
    net = build(model, policy, seed=seed, quant=not float_)
    if init is not None:
        state, meta = load_checkpoint(init)
        _check_meta(model, meta, init)
        if meta.get("float") and not float_:
            load_float_weights(net, state)
        else:
            _load_strict(net, state, init, model)
    stats = train(net, dataset, epochs=epochs, lr=lr, batch_size=batch_size, limit=limit,
                  seed=seed, progress=show_progress(progress))
    acc = evaluate(net, dataset, "test")
    ckpt = save_checkpoint(out / "model.pt", net, {
        "model": model, "dataset": dataset, "float": float_,
        "policy": None if policy is None else policy.tolist(), "epochs": epochs,
        "test_accuracy": acc, "seed": seed,
    }, outputs=outs)
    _report({"model": model, "mode": "float" if float_ else f"W{bits}A{bits}", "dataset": dataset,
             "epochs": epochs, "test_accuracy": acc, "epoch_seconds": stats["epoch_seconds"],
             "checkpoint": str(ckpt)}, json_path, outs)


def _meta(ckpt: Path) -> Path:
    from cimc.training import meta_path

    return meta_path(ckpt)


def _load_strict(net: Any, state: dict[str, Any], ckpt: Path, model: str) -> None:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CimcError(f"{ckpt}: does not fit model '{model}': {str(exc).splitlines()[0]}") from None


def finetune_cmd(
    model: ModelOpt,
    policy: Annotated[Path, typer.Option(help="Policy file (.npy or .json).")],
    ckpt: Annotated[Path, typer.Option(help="Quantised (8-bit QAT) checkpoint to start from.")],
    dataset: DatasetOpt = "fashion_mnist",
    steps: Annotated[int | None, typer.Option(help="Training steps (default: --epochs).")] = None,
    epochs: Annotated[float, typer.Option(help="Epochs when --steps is not given.")] = 1.0,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 2e-4,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training images.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/finetune"),
    json_path: JsonOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Rebuild at a policy, load quantised weights, fine-tune, evaluate, save."""
    from cimc.cli_util import check_number, show_progress

    model, dataset = check_names(model, dataset)
    check_number("--steps", steps, lo=1)
    check_number("--epochs", epochs, lo=0, lo_open=True)
    check_number("--lr", lr, lo=0, lo_open=True)
    check_number("--limit", limit, lo=1)
    outs = _plan_outputs([policy, ckpt, _meta(ckpt)], out, json_path)
    from cimc.training import evaluate, finetune, load_checkpoint, save_checkpoint

    pol = _policy(model, policy)
    state, meta = load_checkpoint(ckpt)
    _check_meta(model, meta, ckpt)
    if meta.get("float"):
        raise CimcError(f"{ckpt}: a float checkpoint; run 'cimc-rl train --bits 8 --init {ckpt}' first")
    net = finetune(model, pol, state, dataset, steps=steps, epochs=None if steps else epochs,
                   lr=lr, limit=limit, seed=seed, progress=show_progress(progress))
    acc = evaluate(net, dataset, "test")
    path = save_checkpoint(out / "model.pt", net, {
        "model": model, "dataset": dataset, "float": False, "policy": pol.tolist(),
        "test_accuracy": acc, "seed": seed, "from": str(ckpt),
    }, outputs=outs)
    _report({"model": model, "policy": str(policy), "dataset": dataset, "test_accuracy": acc,
             "checkpoint": str(path)}, json_path, outs)


def export_cmd(
    model: ModelOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="ONNX file to write.")],
    policy: Annotated[Path | None, typer.Option(help="Policy file (default: the checkpoint's, else 8/8).")] = None,
    ckpt: Annotated[Path | None, typer.Option(help="Checkpoint (default: seeded random weights).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for random weights.")] = 0,
    json_path: JsonOpt = None,
) -> None:
    """Export a zoo model as ONNX QCDQ (opset 19, input "x", batch 1)."""
    from cimc.models import export_onnx

    model, _ = check_names(model)
    outs = _plan_outputs([policy, ckpt, ckpt and _meta(ckpt)], None, json_path)
    outs.plan(output, "-o")
    net, info = _load_model(model, ckpt, policy, seed)
    if info.get("float"):
        raise CimcError(f"{ckpt}: a float checkpoint cannot be exported as QCDQ; give --policy or run QAT")
    path = export_onnx(net, output, outputs=outs)
    _report({"model": model, "onnx": str(path),
             "policy": "8/8" if info["policy"] is None else str(policy or "from checkpoint")},
            json_path, outs)


def evaluate_cmd(
    model: ModelOpt,
    ckpt: Annotated[Path, typer.Option(help="Checkpoint to evaluate.")],
    dataset: DatasetOpt = "fashion_mnist",
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    policy: Annotated[Path | None, typer.Option(help="Evaluate at this policy instead.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N images.")] = None,
    json_path: JsonOpt = None,
) -> None:
    """Top-1 accuracy of a checkpoint on a data set split."""
    from cimc.cli_util import check_choice, check_number
    from cimc.data import SPLITS

    model, dataset = check_names(model, dataset)
    check_choice("--split", split, list(SPLITS))
    check_number("--limit", limit, lo=1)
    outs = _plan_outputs([policy, ckpt, _meta(ckpt)], None, json_path)
    from cimc.training import evaluate

    net, _ = _load_model(model, ckpt, policy, 0)
    acc = evaluate(net, dataset, split, limit)
    _report({"model": model, "dataset": dataset, "split": split, "accuracy": acc}, json_path, outs)


def register(app: typer.Typer) -> None:
    """Add ``train``, ``finetune``, ``export`` and ``evaluate`` to the ``cimc-rl`` app."""
    app.command("train")(train_cmd)
    app.command("finetune")(finetune_cmd)
    app.command("export")(export_cmd)
    app.command("evaluate")(evaluate_cmd)
