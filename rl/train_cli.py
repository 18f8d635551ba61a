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
    noise: Annotated[str | None, typer.Option(
        help="Also on crossbars, bit-serially, on an imperfect device: a noise preset "
             "(rram-moderate, rram-severe, ideal) or a YAML file; accuracy per seed.")] = None,
    noise_set: Annotated[str | None, typer.Option(
        "--noise-set", help="Override noise parameters: programming_sigma=0.1,read_sigma=0.")] = None,
    seeds: Annotated[int, typer.Option(help="With --noise: devices drawn with seeds 0..N-1.")] = 3,
    hw: Annotated[Path | None, typer.Option(help="With --noise: hardware YAML (default: the paper's).")] = None,
    json_path: JsonOpt = None,
) -> None:
    """Top-1 accuracy of a checkpoint on a data set split (with --noise also on crossbars, ideal
    and on imperfect devices, mean and spread over the seeds)."""
    from cimc.cli_util import check_choice, check_number
    from cimc.data import SPLITS

    model, dataset = check_names(model, dataset)
    check_choice("--split", split, list(SPLITS))
    check_number("--limit", limit, lo=1)
    check_number("--seeds", seeds, lo=1)
    if noise is None and (noise_set is not None or hw is not None):
        raise CimcError("--noise-set and --hw need --noise")
    outs = _plan_outputs([policy, ckpt, _meta(ckpt), hw, noise and _preset_path(noise)], None, json_path)
    noise_model = _noise_model(noise, noise_set) if noise is not None else None
    from cimc.training import evaluate

    net, info = _load_model(model, ckpt, policy, 0)
    rows: dict[str, Any] = {"model": model, "dataset": dataset, "split": split,
                            "accuracy": evaluate(net, dataset, split, limit)}
    if noise_model is not None:
        if info.get("float"):
            raise CimcError(f"{ckpt}: --noise needs a quantized checkpoint (a float one has no crossbar program)")
        rows.update(_crossbar_accuracy(net, dataset, split, limit, noise_model, seeds, hw))
    _report(rows, json_path, outs)


def _preset_path(spec: str) -> Path | None:
    return Path(spec) if Path(spec).is_file() else None


def _noise_model(noise: str, noise_set: str | None):
    from cimc.target.noise import load_noise

    model = load_noise(noise)
    return model.with_overrides(noise_set) if noise_set else model


def _crossbar_accuracy(net: Any, dataset: str, split: str, limit: int | None, noise: Any, seeds: int,
                       hw_path: Path | None) -> dict[str, Any]:
    """Accuracy of ``net`` compiled to ``xbar``: ideal, and per seed on the noisy device."""
    import tempfile

    from cimc.data import load_dataset
    from cimc.exec.noise_runs import crossbar_accuracy
    from cimc.frontend import import_onnx
    from cimc.models import export_onnx
    from cimc.pipeline import lower
    from cimc.target.hw import Hardware

    hw = Hardware.from_yaml(hw_path) if hw_path is not None else Hardware()
    with tempfile.TemporaryDirectory() as tmp:
        module = import_onnx(export_onnx(net, Path(tmp) / "model.onnx")).module
    lower(module, "xbar", hw=hw)
    x, y = load_dataset(dataset, split, limit=limit)
    ideal = crossbar_accuracy(module, x, y, hw)["accuracy_top1"]
    noisy = crossbar_accuracy(module, x, y, hw, noise=noise, seeds=range(seeds))
    return {"crossbar_accuracy": ideal, "noise": noise.name,
            "noisy_accuracy_mean": noisy["accuracy_top1"]["mean"], "noisy_accuracy_std": noisy["accuracy_top1"]["std"],
            "noisy_accuracy_per_seed": noisy["per_seed"]}


def register(app: typer.Typer) -> None:
    """Add ``train``, ``finetune``, ``export`` and ``evaluate`` to the ``cimc-rl`` app."""
    app.command("train")(train_cmd)
    app.command("finetune")(finetune_cmd)
    app.command("export")(export_cmd)
    app.command("evaluate")(evaluate_cmd)
