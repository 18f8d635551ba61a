"""``cimc-rl search``: the bit-width search on a model, wired to the real modules.

The command (:func:`search_command`) checks every option before anything is loaded, builds the
search's view of the model and its cost model (:mod:`cimc.rl.search_model`), the accuracy
evaluator (:class:`cimc.rl.accuracy.PolicyEvaluator`, in this process or on each Ray worker:
rebuild at the policy, load the 8-bit QAT checkpoint, calibrate / fine-tune, evaluate on a fixed
subset of the ``val`` split), runs :func:`cimc.rl.search.run_search` and then
:func:`cimc.rl.search_final.finalize` (a full QAT at the best policy, the ONNX QCDQ export
``best_model.onnx`` and its ``cimc report``, computed from the exported file).

Heavy imports (torch, brevitas) happen inside functions so ``cimc-rl --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cimc.cli_util import atomic_output
from cimc.errors import CimcError, InputFileError
from cimc.rl.inputs import DATASET_HELP, MODEL_HELP
from cimc.rl.search_final import finalize, objective_summary
from cimc.rl.search_model import COST_KINDS, describe_model, make_cost_model



# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def _load_qat_state(ckpt: Path | None, model: str) -> dict[str, Any]:
    from cimc.training import load_checkpoint

    if ckpt is None:
        raise InputFileError("--ckpt: give the 8-bit QAT checkpoint of the model "
                             f"(e.g. `cimc-rl train --model {model} --bits 8`)")
    state, meta = load_checkpoint(ckpt)
    if meta.get("model") not in (None, model):
        raise InputFileError(f"{ckpt}: checkpoint is for model '{meta.get('model')}', not '{model}'")
    if meta.get("float"):
        raise InputFileError(f"{ckpt}: is a float checkpoint; the search starts from the 8-bit QAT one")
    return state


def build_config(base: Path | None, **overrides: Any):
    """A :class:`SearchConfig` from an optional JSON file plus the options that were given."""
    from cimc.rl.env import SearchConfig
    from cimc.safe_read import read_json

    where = str(base) if base is not None else "search config"
    try:
        if base is not None:
            data = read_json(base, "search config")
            if not isinstance(data, dict):
                raise CimcError(f"{base}: a search config is a JSON object, not a {type(data).__name__}")
            cfg = SearchConfig.from_dict(data)
        else:
            cfg = SearchConfig()
        for key, value in overrides.items():
            if value is not None:
                setattr(cfg, key, value)
        return cfg.validate()
    except CimcError as exc:
        if base is not None and not exc.message.startswith(str(base)):
            raise CimcError(f"{base}: {exc.message}") from None
        raise
    except (TypeError, ValueError) as exc:
        raise CimcError(f"{where}: a value has the wrong type ({str(exc).splitlines()[0][:100]})") from None


def check_search_options(*, episodes: int | None, warmup: int | None, acc_drop: float | None,
                         budget: float | None, finetune_steps: int, eval_limit: int | None,
                         train_limit: int | None, final_steps: int | None, final_epochs: float | None,
                         method: str | None, cost: str, calib_images: int = 512,
                         cost_batch: int = 16, workers: int | None = None,
                         objective: str = "latency") -> None:
    """Every numeric and named option of ``search`` in range, before anything is loaded."""
    from cimc.cli_util import check_choice, check_number
    from cimc.rl.costs import OBJECTIVES

    check_choice("--cost", cost, COST_KINDS)
    check_choice("--objective", objective, OBJECTIVES)
    if objective != "latency" and cost != "compiler":
        raise CimcError(f"--objective {objective}: needs --cost compiler (the compiled "
                        f"program's energy and chip schedule), not --cost {cost}")
    check_choice("--method", method, ("ddpg", "random", "td3"))
    check_number("--calib-images", calib_images, lo=0)
    check_number("--cost-batch", cost_batch, lo=1)
    check_number("--workers", workers, lo=1)
    check_number("--episodes", episodes, lo=1)
    check_number("--warmup", warmup, lo=0)
    check_number("--acc-drop", acc_drop, lo=0)
    check_number("--budget", budget, lo=0, lo_open=True, hi=1)
    check_number("--finetune-steps", finetune_steps, lo=0)
    check_number("--eval-limit", eval_limit, lo=1)
    check_number("--train-limit", train_limit, lo=1)
    check_number("--final-steps", final_steps, lo=1)
    check_number("--final-epochs", final_epochs, lo=0, lo_open=True)


def warn_short_search(cfg: Any) -> None:
    """A DDPG search no longer than its warm-up never lets the agent act: say so."""
    if cfg.method == "ddpg" and cfg.episodes <= cfg.warmup:
        print(f"warning: {cfg.episodes} episode(s) with a warm-up of {cfg.warmup}: every episode is "
              "random warm-up and the DDPG agent never acts; raise --episodes or lower --warmup",
              file=sys.stderr)


def _print_report(res: Any, names: list[str], cost_model: Any, uniform: list[Any],
                  final: dict[str, Any] | None = None) -> None:
    import numpy as np
    from rich.table import Table

    from cimc.cli_util import print_table
    from cimc.rl.env import uniform_policy

    per_layer = getattr(cost_model, "layer_latencies", None)
    base = per_layer(uniform_policy(len(names), 8)) if per_layer else None
    best = per_layer(res.best_policy) if per_layer else None
    table = Table(title=f"best policy (episode {res.best_episode})")
    for col in ("#", "layer", "w", "a") + (("W8A8 us", "policy us") if base is not None else ()):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for i, (n, (w, a)) in enumerate(zip(names, np.asarray(res.best_policy))):
        row = [str(i), n, str(int(w)), str(int(a))]
        if base is not None and best is not None:
            row += [f"{base[i]:.1f}", f"{best[i]:.1f}"]
        table.add_row(*row)
    print_table(table)
    summary = Table(title="search result")
    for col in ("policy", "latency us", "speedup", "val top-1 %", "test top-1 %", "reward"):
        summary.add_column(col, justify="right")
    summary.add_row("W8A8 reference", f"{res.baseline_latency_us:.1f}", "1.00x", f"{res.acc_8bit:.2f}",
                    "", "")
    for u in uniform:
        summary.add_row(u.label, f"{u.latency_us:.1f}", f"{u.speedup:.2f}x", f"{u.accuracy:.2f}", "",
                        f"{u.reward:.2f}")
    summary.add_row("searched", f"{res.best_latency_us:.1f}", f"{res.best_speedup:.2f}x",
                    f"{res.best_accuracy:.2f}", "", f"{res.best_reward:.2f}")
    if final is not None:
        steps = final.get("final_steps")
        label = f"final ({steps} steps)" if steps is not None else f"final ({final['final_epochs']:g} ep)"
        summary.add_row(label + ", exported", f"{final['report_latency_us']:.1f}",
                        f"{final['report_speedup']:.2f}x", "", f"{final['final_test_accuracy']:.2f}", "")
    print_table(summary)


#: Files the search writes in its output folder (checked against the inputs before it starts).
OUTPUT_NAMES = ("config.json", "episodes.jsonl", "checkpoint.zip", "best_policy.npy", "best_policy.json",
                "search.png", "summary.json", "best_model.onnx", "best_policy_model.json",
                "best_report.json", "best_report.png", "cost_batch.npy")


def _meta_path(ckpt: Path) -> Path:
    from cimc.training import meta_path

    return meta_path(ckpt)


def _check_out(out: Path, inputs: list[Any]) -> None:
    """``--out`` is a folder (or will be), and no file the search writes there is an input."""
    from cimc.safe_write import OutputSet

    if out.exists() and not out.is_dir():
        raise CimcError(f"--out {out}: is a file; give a folder for the search's outputs")
    outs = OutputSet(inputs)
    for name in OUTPUT_NAMES:
        outs.plan(out / name, f"--out {out}")


def _time_table(history: list[dict[str, Any]], workers: int) -> Any:
    from rich.table import Table

    from cimc.rl.search import time_split

    split = time_split(history)
    fresh = [r for r in history if not r.get("acc_cached")]
    table = Table(title=f"time per episode ({len(history)} episodes, {len(fresh)} evaluated, "
                        f"{workers} worker{'s' if workers > 1 else ''})")
    for col in ("accuracy s", "cost s", "agent s", "wall s"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{split[k]:.3f}" for k in ("accuracy_s", "cost_s", "agent_s", "wall_s")))
    return table


def search_command(*, model: str, dataset: str, ckpt: Path | None, out: Path, config: Path | None,
                   episodes: int | None = None, warmup: int | None = None, seed: int | None = None,
                   acc_drop: float | None = None, method: str | None = None, cost: str = "compiler",
                   hw_path: Path | None = None, hw_set: str | None = None, finetune_steps: int = 0,
                   calib_images: int = 512, train_limit: int | None = 20000,
                   eval_limit: int | None = 2000, cell_constraint: bool | None = None,
                   first_last: bool | None = None, budget: float | None = None,
                   resume: bool = False, uniform: bool = False, export: bool = True,
                   progress: bool | None = True, final_epochs: float | None = 1.0,
                   final_steps: int | None = None, workers: int | None = None,
                   ray_address: str | None = None, cost_batch: int = 16, objective: str = "latency",
                   energy: str | None = None) -> dict[str, Any]:
    """The ``search`` command without the CLI layer; returns the JSON summary it writes.

    With ``export``, :func:`finalize` runs after the search (full QAT at the best policy for
    ``final_steps`` steps, else ``final_epochs`` epochs; ONNX export; ``cimc report`` on it).
    ``workers`` > 1 or ``ray_address`` evaluate the episodes on Ray workers. ``objective``
    ``energy`` / ``edp`` minimises the compiled program's energy (EDP) under the ``energy`` preset
    (``cimc report --energy``'s; default isaac-puma-32nm).
    """
    from rich.console import Console

    from cimc.cli_util import show_progress
    from cimc.loaders import load_hardware
    from cimc.rl.accuracy import EvalSettings, EvaluatorFactory
    from cimc.rl.baselines import uniform_policies
    from cimc.rl.parallel import make_executor
    from cimc.rl.search import EnvSpec, run_search, time_split
    from cimc.rl.train_cli import check_names

    model, dataset = check_names(model, dataset)
    check_search_options(episodes=episodes, warmup=warmup, acc_drop=acc_drop, budget=budget,
                         finetune_steps=finetune_steps, eval_limit=eval_limit, train_limit=train_limit,
                         final_steps=final_steps, final_epochs=final_epochs, method=method, cost=cost,
                         calib_images=calib_images, cost_batch=cost_batch, workers=workers,
                         objective=objective)
    from cimc.loaders import load_energy, preset_file

    _check_out(out, [ckpt, ckpt and _meta_path(ckpt), config, hw_path, preset_file(energy)])
    progress = show_progress(progress)
    hw = load_hardware(hw_path, hw_set)
    preset = load_energy(energy) if objective != "latency" or energy is not None else None
    cfg = build_config(config, episodes=episodes, warmup=warmup, seed=seed, allowed_drop=acc_drop,
                       method=method, cell_bits=hw.cell_bits, cell_constraint=cell_constraint,
                       first_last_8bit=first_last,
                       reward_mode="budget" if budget is not None else None,
                       latency_budget=budget, workers=workers)
    warn_short_search(cfg)
    settings = EvalSettings(finetune_steps=finetune_steps, calib_images=calib_images,
                            eval_limit=eval_limit, train_limit=train_limit, seed=cfg.seed).validate()
    infos, descs = describe_model(model)
    state = _load_qat_state(ckpt, model)
    factory = EvaluatorFactory(model, dataset, state, settings,
                               hw.to_dict() if cost == "measured" else None, cost_batch)
    from cimc.target.energy import energy_model

    cost_model = make_cost_model(cost, model, descs, hw, objective=objective,
                                 energy=energy_model(preset, hw) if objective != "latency" else None)
    spec = EnvSpec(tuple(infos), model=model, dataset=dataset)
    if cost == "measured":
        import numpy as np

        out.mkdir(parents=True, exist_ok=True)
        with atomic_output(out / "cost_batch.npy", "wb") as fh:
            np.save(fh, factory.cost_inputs(), allow_pickle=False)
    executor = make_executor(None, factory, cfg.workers, address=ray_address)
    try:
        res = run_search(cfg, spec, cost_model, None, out, resume=resume, progress=progress,
                         executor=executor)
    finally:
        executor.close()
    local = factory() if (uniform or export) else None
    rows = uniform_policies(cfg, spec, cost_model, local, acc_8bit=res.acc_8bit) if uniform else []
    final = None
    if export:
        final = finalize(out, model, res.best_policy, state, dataset=dataset, hw=hw,
                         final_epochs=final_epochs, final_steps=final_steps,
                         train_limit=train_limit, seed=cfg.seed, progress=progress, energy=preset,
                         objective=objective)
    summary = {"model": model, "dataset": dataset, "cost": cost, "objective": objective,
               "energy_preset": None if preset is None else preset.name, "hw": hw.to_dict(),
               "cost_batch": cost_batch if cost == "measured" else None,
               "config": cfg.to_dict(), "eval": settings.to_dict(), **res.to_dict(),
               "layers": spec.names, "uniform": [u.to_dict() for u in rows],
               **objective_summary(cost_model, objective, res.best_policy),
               "time_per_episode": time_split(res.history), "best_model_onnx": None, **(final or {})}
    with atomic_output(out / "summary.json") as fh:
        fh.write(json.dumps(summary, indent=2) + "\n")  # type: ignore[attr-defined]
    _print_report(res, spec.names, cost_model, rows, final)
    if objective != "latency":
        print(f"{objective} (preset {summary['energy_preset']}): best policy {summary['best_energy_uj']:.4g} uJ, "
              f"EDP {summary['best_edp_uj_us']:.4g} uJ*us; W8A8 {summary['baseline_energy_uj']:.4g} uJ, "
              f"EDP {summary['baseline_edp_uj_us']:.4g} uJ*us; chip {summary['best_chip_us']:,.1f} us per "
              f"inference, W8A8 {summary['baseline_chip_us']:,.1f} us; gain {summary['best_objective_gain']:.3f}x")
    Console().print(_time_table(res.history, cfg.workers))
    print(f"best policy: {out / 'best_policy.npy'}  summary: {out / 'summary.json'}"
          + (f"  model: {final['best_model_onnx']}  report: {out / 'best_report.json'}" if final else ""))
    return summary


def search_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help=DATASET_HELP)],
    ckpt: Annotated[Path, typer.Option(help="8-bit QAT checkpoint (from `cimc-rl train --bits 8`).")],
    episodes: Annotated[Optional[int], typer.Option(help="Episodes (default 600).")] = None,
    warmup: Annotated[Optional[int], typer.Option(help="Warm-up episodes of random actions (default 30).")] = None,
    hw: Annotated[Optional[Path], typer.Option("--hw", help="Hardware YAML (cimc or CIM-AQ layout).")] = None,
    hw_set: Annotated[Optional[str], typer.Option("--hw-set", help="Hardware overrides: rows=128,cell_bits=2.")] = None,
    acc_drop: Annotated[Optional[float], typer.Option("--acc-drop", help="Allowed top-1 drop in points (default 0.5).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/search"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the search in --out.")] = False,
    seed: Annotated[Optional[int], typer.Option(help="Seed (default 0).")] = None,
    finetune_steps: Annotated[int, typer.Option(help="Fine-tune steps per episode (0: calibration and evaluation only).")] = 0,
    calib_images: Annotated[int, typer.Option(help="Training images to re-estimate the BatchNorm statistics per episode (0: none).")] = 512,
    eval_limit: Annotated[Optional[int], typer.Option(help="Validation images per episode (always the same ones).")] = 2000,
    train_limit: Annotated[Optional[int], typer.Option(help="Training images for the fine-tunes.")] = 20000,
    method: Annotated[Optional[str], typer.Option(help="ddpg (cimc's agent), random, or td3 (Stable-Baselines3).")] = None,
    objective: Annotated[str, typer.Option(help="What the reward's cost ratio measures, against W8A8: latency (the paper's, single array), energy or edp (energy x latency) of the compiled program, or chip (its time per inference in the chip schedule of --hw/--hw-set: arrays, replication, pipelining). energy, edp and chip need --cost compiler.")] = "latency",
    energy: Annotated[Optional[str], typer.Option("--energy", help="Energy preset for --objective energy/edp and the best model's report: a built-in name (isaac-puma-32nm, the default; neurosim-22nm) or a YAML file, as `cimc report --energy`.")] = None,
    cost: Annotated[str, typer.Option(help="compiler (latency of the compiled xbar program), closed-form, or measured (cycles counted by running the policy's model at xbar-opt on --cost-batch validation images).")] = "compiler",
    cost_batch: Annotated[int, typer.Option(help="--cost measured: validation images in the calibration batch.")] = 16,
    workers: Annotated[Optional[int], typer.Option(help="Episodes evaluated at once on Ray workers (default 1: in this process).")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="A running Ray cluster (default: a local instance).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="SearchConfig JSON; options given override it.")] = None,
    cell_constraint: Annotated[Optional[bool], typer.Option("--cell-constraint/--no-cell-constraint", help="Weight bits multiples of the cell bits (default on).")] = None,
    first_last: Annotated[Optional[bool], typer.Option("--first-last/--no-first-last", help="First and last layers at 8/8 (default on).")] = None,
    budget: Annotated[Optional[float], typer.Option(help="HAQ mode: hard budget on the objective (latency, energy, EDP or chip time) as a fraction of W8A8.")] = None,
    uniform: Annotated[bool, typer.Option("--uniform/--no-uniform", help="Also evaluate W8A8, W6A6, W4A4, W2A2.")] = False,
    export: Annotated[bool, typer.Option("--export/--no-export", help="Final QAT at the best policy, ONNX export and its report.")] = True,
    final_epochs: Annotated[float, typer.Option(help="Epochs of the final QAT at the best policy.")] = 1.0,
    final_steps: Annotated[Optional[int], typer.Option(help="Steps of the final QAT (overrides --final-epochs).")] = None,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", help="Show the progress bar (default: on a terminal).")] = None,
) -> None:
    """Search per-layer weight/activation bits with DDPG (CIM-AQ), random search or SB3's TD3."""
    search_command(model=model, dataset=dataset, ckpt=ckpt, out=out, config=config,
                   episodes=episodes, warmup=warmup, seed=seed, acc_drop=acc_drop, method=method,
                   cost=cost, hw_path=hw, hw_set=hw_set, finetune_steps=finetune_steps,
                   calib_images=calib_images, train_limit=train_limit, eval_limit=eval_limit,
                   cell_constraint=cell_constraint, first_last=first_last, budget=budget,
                   resume=resume, uniform=uniform, export=export, progress=progress,
                   final_epochs=final_epochs, final_steps=final_steps, workers=workers,
                   ray_address=ray_address, cost_batch=cost_batch, objective=objective,
                   energy=energy)


def register(app: typer.Typer) -> None:
    """Add the ``search`` command to ``cimc-rl``."""
    app.command("search")(search_cmd)
