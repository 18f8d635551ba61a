"""Nothing lost, nothing executed (issue 9): one test per finding, through the real commands.

Payloads planted in every kind of file cimc reads are not run; inputs are never clobbered;
device nodes, fifos and symlinks given as outputs stay what they are; a failing second output
leaves nothing behind; ENOSPC is one line; the README's cimc-opt example runs under cimc run;
and the newcomer's path: progress bars only on a terminal, "wrote X", quiet third-party
warnings, the short-search warning, plots with a log axis, the hardware, labelled axes and
legends off the data.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_one_line_error
from bad_input_cases import ONNX, SMALL_MLIR, Payload

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BIN = Path(sys.executable).parent


def cli(tool: str, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """A command in this process: exit code, stdout, stderr."""
    from cimc.cli import run as cimc_run
    from cimc.rl.cli import run as rl_run
    from cimc.tools.cimc_opt import run as opt_run

    entry = {"cimc": cimc_run, "cimc-rl": rl_run, "cimc-opt": opt_run}[tool]
    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = entry(list(args))
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert_one_line_error(subprocess.CompletedProcess([], code, "", err), *needles)


def full_device(d: Path) -> Path:
    if os.geteuid() == 0:
        node = d / "full"
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        return node
    return Path("/dev/full")


# -- 1. no code from files -------------------------------------------------------------------------


def _plant(kind: str, d: Path) -> list[str]:
    """Write a file of ``kind`` carrying a payload; the argv of a command that reads it."""
    evil_npy = np.array([Payload()], dtype=object)
    if kind == "search checkpoint":
        (d / "s").mkdir()
        (d / "s" / "checkpoint.zip").write_bytes(pickle.dumps(Payload()))
        return ["cimc-rl", "search", "-m", "lenet", "-d", "digits", "--ckpt", str(d / "s" / "checkpoint.zip"),
                "--out", str(d / "s"), "--resume"]
    if kind == "training checkpoint":
        import torch

        torch.save({"w": Payload()}, d / "model.pt")
        return ["cimc-rl", "evaluate", "-m", "lenet", "--ckpt", str(d / "model.pt")]
    if kind == "input .npy":
        d.joinpath("m.mlir").write_text(SMALL_MLIR)
        np.save(d / "x.npy", evil_npy, allow_pickle=True)
        return ["cimc", "run", str(d / "m.mlir"), "--input", str(d / "x.npy")]
    if kind == "input .npz":
        d.joinpath("m.mlir").write_text(SMALL_MLIR)
        np.savez(d / "x.npz", x=evil_npy)
        return ["cimc", "run", str(d / "m.mlir"), "--input", str(d / "x.npz")]
    if kind == "labels .npy":
        d.joinpath("m.mlir").write_text(SMALL_MLIR)
        np.save(d / "y.npy", evil_npy, allow_pickle=True)
        return ["cimc", "run", str(d / "m.mlir"), "--labels", str(d / "y.npy")]
    if kind == "policy .npy":
        np.save(d / "p.npy", evil_npy, allow_pickle=True)
        return ["cimc-rl", "export", "-m", "lenet", "--policy", str(d / "p.npy"), "-o", str(d / "o.onnx")]
    if kind == "weights .npz":
        from bad_input_cases import mlir_blob_without_weights

        mlir_blob_without_weights(d)
        np.savez(d / "b.weights.npz", w=evil_npy)
        return ["cimc", "run", str(d / "b.mlir")]
    if kind == "hardware YAML":
        d.joinpath("m.mlir").write_text(SMALL_MLIR)
        d.joinpath("hw.yaml").write_text("rows: !!python/object/apply:os.system ['touch PWNED']\n")
        return ["cimc", "report", str(d / "m.mlir"), "--hw", str(d / "hw.yaml")]
    if kind == "ONNX external data":
        import onnx
        from onnx import TensorProto

        (d / "model").mkdir()
        (d / "secret.bin").write_bytes(b"\1" * 4096)
        model = onnx.load(str(ONNX))
        t = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", "../secret.bin"
        onnx.save(model, str(d / "model" / "m.onnx"))
        return ["cimc", "lower", str(d / "model" / "m.onnx")]
    raise AssertionError(kind)


KINDS = ["search checkpoint", "training checkpoint", "input .npy", "input .npz", "labels .npy",
         "policy .npy", "weights .npz", "hardware YAML", "ONNX external data"]


@pytest.mark.parametrize("kind", KINDS)
def test_payload_in_every_file_kind_is_not_run(kind: str, tmp_path: Path) -> None:
    tool, *argv = _plant(kind, tmp_path)
    code, _, err = cli(tool, *argv, cwd=tmp_path)
    one_line_error(code, err)
    assert not (tmp_path / "PWNED").exists(), f"{kind}: the payload ran"


# -- 2. never overwrite an input; all or nothing ---------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["lower", "{m}", "-o", "{m}"],
    ["report", "{m}", "--json", "{m}"],
    ["run", "{m}", "--report", "{m}"],
    ["run", "{m}", "--input", "{x}", "--output", "{x}"],
])
def test_inputs_are_never_overwritten(argv: list[str], tmp_path: Path) -> None:
    model, x = tmp_path / "m.onnx", tmp_path / "x.npy"
    shutil.copy(ONNX, model)
    np.save(x, np.zeros((1, 1, 28, 28), np.float32))
    before = {p: p.read_bytes() for p in (model, x)}
    code, _, err = cli("cimc", *[a.format(m=model, x=x) for a in argv])
    one_line_error(code, err, "would overwrite the input")
    assert {p: p.read_bytes() for p in (model, x)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "x.npy"]


def test_device_node_and_stdout_outputs_are_written_through(tmp_path: Path) -> None:
    """``-o /dev/full``: ENOSPC, one line, the node stays a device; ``-o /dev/stdout`` writes to the
    pipe and the link stays; a symlink to a device is followed, never replaced."""
    full = full_device(tmp_path)
    code, _, err = cli("cimc", "lower", str(ONNX), "--to", "xbar", "-o", str(full))
    one_line_error(code, err, f"{full}: cannot write: no space left on device")
    assert stat.S_ISCHR(os.stat(full).st_mode)
    proc = subprocess.run([str(BIN / "cimc"), "lower", str(ONNX), "-o", "/dev/stdout"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("builtin.module") and "wrote /dev/stdout" in proc.stderr
    assert os.path.islink("/dev/stdout")
    link = tmp_path / "to_full"
    link.symlink_to(full)
    code, _, err = cli("cimc", "report", str(ONNX), "--json", str(link))
    one_line_error(code, err, "no space left on device")
    assert link.is_symlink() and stat.S_ISCHR(os.stat(link).st_mode)


@pytest.mark.parametrize("argv", [
    ["report", "{onnx}", "--json", "{d}/r.json", "--plot", "{full}"],
    ["run", "{onnx}", "--output", "{d}/y.npy", "--report", "{full}"],
    ["report", "{onnx}", "--json", "{d}/new/r.json", "--plot", "{d}/file/p.png"],
])
def test_nothing_left_after_a_failing_second_output(argv: list[str], tmp_path: Path) -> None:
    full = full_device(tmp_path)
    (tmp_path / "file").write_text("in the way")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = cli("cimc", *[a.format(onnx=ONNX, d=tmp_path, full=full) for a in argv])
    one_line_error(code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cimc_opt_leaves_no_output_on_failure(tmp_path: Path) -> None:
    src = tmp_path / "m.mlir"
    src.write_text(SMALL_MLIR)
    code, _, err = cli("cimc-opt", str(src), "-p", "convert-cimq-to-xbar,xbar-tile{rows=0}", "-o", str(tmp_path / "o.mlir"))
    one_line_error(code, err, "rows must be")
    code, _, err = cli("cimc-opt", str(src), "-p", "convert-cimq-to-xbar,xbar-tile", "-o", str(full_device(tmp_path)))
    one_line_error(code, err, "no space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "m.mlir"] or os.geteuid() != 0


# -- 3. one line, never a traceback ----------------------------------------------------------------


@pytest.mark.parametrize("tool", ["cimc-opt", "xdsl-opt"])
@pytest.mark.parametrize("spec", ["convert-cimq-to-xbar,xbar-tile{rows=0}", "xbar-tile{cell-bits=9}",
                                  "xbar-tile{mapping=zz}", "xbar-set-bits{w-bits=-1}"])
def test_pass_option_errors_are_one_line_in_both_drivers(tool: str, spec: str, tmp_path: Path) -> None:
    src = tmp_path / "m.mlir"
    src.write_text(SMALL_MLIR)
    proc = subprocess.run([str(BIN / tool), str(src), "-p", spec], capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, "must be")


def test_huge_batch_is_refused_up_front_with_the_size() -> None:
    code, _, err = cli("cimc", "run", str(ONNX), "--batch", "100000000")
    one_line_error(code, err, "--batch: a batch of 100,000,000 needs about", "available")


# -- 4. validated inputs ---------------------------------------------------------------------------


def test_nonfinite_inputs_refused_or_saturated_with_the_flag(tmp_path: Path) -> None:
    (tmp_path / "m.mlir").write_text(SMALL_MLIR)
    x = np.array([[1.0, np.nan, np.inf, -np.inf]], np.float32)
    np.save(tmp_path / "x.npy", x)
    code, _, err = cli("cimc", "run", str(tmp_path / "m.mlir"), "--input", str(tmp_path / "x.npy"))
    one_line_error(code, err, "3 non-finite value(s)", "--allow-nonfinite")
    code, _, err = cli("cimc", "run", str(tmp_path / "m.mlir"), "--input", str(tmp_path / "x.npy"),
                       "--allow-nonfinite", "--output", str(tmp_path / "y.npy"))
    assert code == 0, err
    big = np.finfo(np.float32).max
    np.save(tmp_path / "x2.npy", np.array([[1.0, 0.0, big, -big]], np.float32))
    code, _, err = cli("cimc", "run", str(tmp_path / "m.mlir"), "--input", str(tmp_path / "x2.npy"),
                       "--output", str(tmp_path / "y2.npy"))
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "y2.npy"))


def test_two_input_graph_is_fed_by_name(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(ONNX))
    model.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1, 4]))
    onnx.save(model, str(tmp_path / "two.onnx"))
    x = np.load(EXAMPLES / "fmnist_test64_x.npy")[:1]
    np.savez(tmp_path / "in.npz", x=x, extra=np.zeros((1, 4), np.float32))
    code, _, err = cli("cimc", "run", str(tmp_path / "two.onnx"), "--input", str(tmp_path / "in.npz"),
                       "--output", str(tmp_path / "y.npy"))
    assert code == 0, err
    np.save(tmp_path / "x.npy", x)
    code, _, err = cli("cimc", "run", str(ONNX), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y1.npy"))
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "y1.npy"))
    code, _, err = cli("cimc", "run", str(tmp_path / "two.onnx"), "--input", str(tmp_path / "x.npy"))
    one_line_error(code, err, "2 inputs (x, extra)")


# -- 5. the newcomer's path ------------------------------------------------------------------------


def test_readme_cimc_opt_example_runs_under_cimc_run(tmp_path: Path) -> None:
    """README: lower, tile with cimc-opt -o (weights beside it, level updated), run the result."""
    m, t = tmp_path / "model.mlir", tmp_path / "tiled.mlir"
    x, y = EXAMPLES / "fmnist_test64_x.npy", tmp_path / "y.npy"
    assert cli("cimc", "lower", str(ONNX), "-o", str(m))[0] == 0
    code, _, err = cli("cimc-opt", str(m), "-p", "convert-cimq-to-xbar,xbar-tile{rows=64}", "-o", str(t))
    assert code == 0, err
    assert f"wrote {t} (weights: {tmp_path / 'tiled.weights.npz'})" in err
    assert 'cimc.level = "xbar"' in t.read_text()
    code, _, err = cli("cimc", "run", str(t), "--level", "xbar", "--hw-set", "rows=64", "--input", str(x),
                       "--output", str(y))
    assert code == 0, err
    ref = tmp_path / "ref.npy"
    assert cli("cimc", "run", str(ONNX), "--level", "xbar", "--hw-set", "rows=64", "--input", str(x),
               "--output", str(ref))[0] == 0
    assert np.array_equal(np.load(y), np.load(ref))
    code, out, err = cli("cimc-opt", str(m), "-p", "convert-cimq-to-xbar,xbar-tile{rows=64}")
    assert code == 0 and out.startswith("builtin.module") and "use -o FILE.mlir" in err


def test_run_says_what_it_wrote_and_shows_no_progress_when_piped(tmp_path: Path) -> None:
    proc = subprocess.run([str(BIN / "cimc"), "run", str(ONNX), "--level", "xbar", "--bit-serial",
                           "--output", str(tmp_path / "y.npy"), "--report", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [f"wrote {tmp_path / 'y.npy'}", f"wrote {tmp_path / 'r.json'}"]
    assert "\r" not in proc.stderr and "crossbar layers" not in proc.stderr


def test_tables_keep_whole_numbers_when_piped() -> None:
    proc = subprocess.run([str(BIN / "cimc"), "report", str(ONNX)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "60"})
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout and "..." not in proc.stdout
    assert "10,483.2" in proc.stdout and "/conv1/Conv" in proc.stdout
    lines = proc.stdout.splitlines()
    body = lines[next(i for i, x in enumerate(lines) if x.startswith("┏")):
                 next(i for i, x in enumerate(lines) if x.startswith("└")) + 1]
    assert len(body) > 4 and len({len(line) for line in body}) == 1  # one line per row (first table)
    assert "256 x 256 crossbar (rows x cols)" in proc.stdout


def test_print_table_wraps_between_words_on_a_narrow_terminal() -> None:
    from cimc.cli_util import _fit_widths

    widths = _fit_widths([30, 12, 10], [8, 12, 10], 40)
    assert sum(widths) == 40 and widths[1:] == [12, 10] and widths[0] == 18
    assert _fit_widths([30, 12], [20, 12], 10) == [20, 12]  # never below the longest word


def test_rl_commands_print_no_brevitas_warning(tmp_path: Path) -> None:
    proc = subprocess.run([str(BIN / "cimc-rl"), "export", "-m", "lenet", "-o", str(tmp_path / "m.onnx")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "fast_hadamard_transform" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"wrote {tmp_path / 'm.onnx'}"]


def test_search_shorter_than_its_warmup_warns(tmp_path: Path) -> None:
    code, _, err = cli("cimc-rl", "search", "-m", "lenet", "-d", "digits", "--ckpt", str(tmp_path / "q8.pt"),
                       "--out", str(tmp_path / "s"), "--episodes", "4")
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 2
    assert lines[0].startswith("warning: 4 episode(s) with a warm-up of 30")
    assert lines[1].startswith("error: ") and "q8.pt" in lines[1]


def test_ckpt_shows_as_required() -> None:
    from typer.testing import CliRunner

    from cimc.rl.cli import _register_commands, app

    _register_commands()
    res = CliRunner().invoke(app, ["search", "--help"], env={"COLUMNS": "200"})
    line = next(ln for ln in res.output.splitlines() if "--ckpt" in ln)
    assert "*" in line or "required" in line


def _report() -> dict:
    from cimc.frontend import import_onnx
    from cimc.report import xbar_report
    from cimc.target.hw import Hardware

    return xbar_report(import_onnx(ONNX).module, Hardware(rows=128))


def _legend_outside(ax) -> bool:
    fig = ax.figure
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    box = ax.get_window_extent()
    return legend.x0 >= box.x1 - 1 or legend.y1 <= box.y0 + 1 or legend.y0 >= box.y1 - 1


def test_report_plot_log_axis_hardware_labels_legends() -> None:
    import matplotlib.pyplot as plt

    from cimc.report import report_figure

    fig = report_figure(_report())
    bits, lat = fig.axes
    assert lat.get_yscale() == "log"
    assert "128 x 256 crossbar (rows x cols)" in fig._suptitle.get_text()
    assert all(ax.get_ylabel() for ax in (bits, lat)) and lat.get_xlabel()
    assert _legend_outside(bits) and _legend_outside(lat)
    plt.close(fig)


def test_search_plot_integer_episodes_labels_legends() -> None:
    import matplotlib.pyplot as plt

    from cimc.rl.plots import search_figure

    hist = [{"episode": i, "reward": float(i), "speedup": 1.0 + i / 10, "accuracy": 90.0 - i} for i in range(5)]
    best = {"episode": 4, "reward": 4.0, "speedup": 1.4, "accuracy": 86.0, "policy": [[8, 8], [4, 6]]}
    fig = search_figure(hist, best, ["conv1", "fc"])
    reward_ax, speed_ax, bits_ax, acc_ax = fig.axes
    for ax in (reward_ax, speed_ax):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert all(float(t).is_integer() for t in ticks), ticks
        assert ax.get_xlabel() == "episode"
    assert all(ax.get_ylabel() for ax in fig.axes) and bits_ax.get_xlabel()
    assert _legend_outside(reward_ax) and _legend_outside(speed_ax) and _legend_outside(bits_ax)
    plt.close(fig)
    json.dumps(hist)
