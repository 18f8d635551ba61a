"""The bad-input corpus: every command refuses every bad input with one line, a non-zero exit,
no traceback, and no new or changed file.

The cases are built on the fly in a fresh folder each (files, ONNX, MLIR, .npy/.npz, hardware
YAML, output paths, option values, checkpoints) and run in-process through the same entry
points the console scripts use (``argv`` in, exit code and captured stdout/stderr out); a seeded
sample of them, and every case of the stock ``xdsl-opt`` plug-in, also runs as a real
subprocess. Hypothesis adds seeded random variants (bytes as model files, ``--hw-set`` strings,
out-of-range numbers). The module prints its totals.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from bad_input_cases import CASES, Case, build_case

BIN = Path(sys.executable).parent
TOTALS: Counter[str] = Counter()
SUBPROCESS_SAMPLE = 14  # in-process cases that also run as real subprocesses (seeded choice)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, size, and content hash (regular files)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st_ = os.lstat(p)
            entry: tuple = (stat.S_IFMT(st_.st_mode), st_.st_size)
            if stat.S_ISREG(st_.st_mode):
                entry += (hashlib.sha1(p.read_bytes()).hexdigest(), st_.st_mtime_ns)
            out[str(p.relative_to(root))] = entry
    return out


def run_in_process(tool: str, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if tool == "cimc":
            from cimc.cli import run as entry
        elif tool == "cimc-rl":
            from cimc.rl.cli import run as entry
        elif tool == "cimc-opt":
            from cimc.tools.cimc_opt import run as entry
        else:
            raise AssertionError(f"{tool} runs as a subprocess only")
        code = entry(argv)
    return code, out.getvalue(), err.getvalue()


def run_subprocess(tool: str, argv: list[str], cwd: Path) -> tuple[int, str, str]:
    env = dict(os.environ)
    env.pop("CIMC_DEBUG", None)
    proc = subprocess.run([str(BIN / tool), *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout, proc.stderr


def check_promise(case: Case, code: int, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, f"{case.id}: exit 0\n{err}"
    assert "Traceback" not in err, f"{case.id}: traceback\n{err}"
    assert len(lines) == 1, f"{case.id}: {len(lines)} lines on stderr\n{err}"
    assert lines[0].startswith("error: "), f"{case.id}: {lines[0]}"
    assert "internal error" not in lines[0], f"{case.id}: {lines[0]}"
    for needle in case.needles:
        assert needle in lines[0], f"{case.id}: {needle!r} not in {lines[0]!r}"


def _sample() -> set[str]:
    ids = sorted(c.id for c in CASES if c.tool != "xdsl-opt")
    return set(random.Random(9).sample(ids, SUBPROCESS_SAMPLE))


SAMPLED = _sample()


@pytest.fixture(scope="module", autouse=True)
def print_totals(request):
    yield
    tools = ", ".join(f"{t} {TOTALS[t]}" for t in ("cimc", "cimc-opt", "cimc-rl", "xdsl-opt"))
    line = (f"bad-input corpus: {TOTALS['cases']} distinct bad inputs ({tools}); {TOTALS['in-process']} runs "
            f"in-process, {TOTALS['subprocess']} as subprocesses, {TOTALS['hypothesis']} hypothesis "
            f"examples; {TOTALS['passed']} passed")
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        print(f"\n{line}")


def test_bad_input_corpus_size() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    per_tool = Counter(c.tool for c in CASES)
    assert len(CASES) >= 150, len(CASES)
    assert all(per_tool[t] >= 5 for t in ("cimc", "cimc-opt", "cimc-rl", "xdsl-opt")), per_tool


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIMC_DEBUG", raising=False)
    argv = build_case(case, tmp_path)
    before = snapshot(tmp_path)
    runs = []
    if case.tool == "xdsl-opt":
        runs.append(("subprocess", run_subprocess(case.tool, argv, tmp_path)))
    else:
        runs.append(("in-process", run_in_process(case.tool, argv)))
        if case.id in SAMPLED:
            runs.append(("subprocess", run_subprocess(case.tool, argv, tmp_path)))
    for how, (code, _out, err) in runs:
        check_promise(case, code, err)
        assert snapshot(tmp_path) == before, f"{case.id} ({how}): files changed"
        TOTALS[how] += 1
    TOTALS["cases"] += 1
    TOTALS[case.tool] += 1
    TOTALS["passed"] += 1


# -- seeded random variants ------------------------------------------------------------------------

HYP = settings(max_examples=25, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _check_in(tmp: Path, tool: str, argv: list[str]) -> None:
    before = snapshot(tmp)
    code, _, err = run_in_process(tool, argv)
    check_promise(Case(f"hyp-{tool}", tool, [], None), code, err)
    assert snapshot(tmp) == before
    TOTALS["hypothesis"] += 1


@HYP
@seed(1)
@given(data=st.binary(min_size=0, max_size=200), suffix=st.sampled_from([".onnx", ".mlir"]))
def test_random_bytes_as_a_model(data: bytes, suffix: str, tmp_path_factory) -> None:
    tmp = tmp_path_factory.mktemp("bytes")
    (tmp / f"m{suffix}").write_bytes(data)
    _check_in(tmp, "cimc", ["lower", str(tmp / f"m{suffix}"), "-o", str(tmp / "out.mlir")])


_HW_KEYS = ["rows", "cols", "cell_bits", "dac_bits", "adc_bits", "mapping", "t_write_us", "t_exec_us",
            "crossbar.size.n", "bogus", ""]
_BAD_VALUES = ["0", "-1", "0x10", "1e3", "2.5", "nan", "inf", "abc", "[1]", "{a: 1}", "", "true", "9", "99"]


@HYP
@seed(2)
@given(pairs=st.lists(st.tuples(st.sampled_from(_HW_KEYS), st.sampled_from(_BAD_VALUES)), min_size=1,
                      max_size=3), sep=st.sampled_from([",", ",,", " , "]))
def test_random_bad_hw_set(pairs, sep, tmp_path_factory) -> None:
    spec = sep.join(f"{k}={v}" for k, v in pairs)
    from cimc.errors import CimcError
    from cimc.target.hw import Hardware

    try:
        Hardware().with_overrides(spec)
    except CimcError:
        pass
    else:  # a valid spec by chance (e.g. cell_bits=9 is not, rows=99 is): nothing to check
        return
    tmp = tmp_path_factory.mktemp("hwset")
    model = tmp / "m.mlir"
    from bad_input_cases import SMALL_MLIR

    model.write_text(SMALL_MLIR)
    _check_in(tmp, "cimc", ["report", str(model), "--hw-set", spec, "--json", str(tmp / "r.json")])


@HYP
@seed(3)
@given(option=st.sampled_from(["--episodes", "--warmup", "--acc-drop", "--budget", "--finetune-steps",
                                "--eval-limit", "--train-limit", "--final-steps", "--final-epochs"]),
       value=st.sampled_from(["-1", "-7", "nan", "-inf", "inf", "0"]))
def test_random_bad_search_numbers(option: str, value: str, tmp_path_factory) -> None:
    if value == "0" and option in ("--warmup",):
        return  # zero warm-up episodes are valid
    if value in ("inf",) and option not in ("--acc-drop", "--budget", "--final-epochs"):
        return  # an integer option: "inf" is a usage error, covered by the corpus
    tmp = tmp_path_factory.mktemp("search")
    _check_in(tmp, "cimc-rl", ["search", "-m", "lenet", "-d", "digits", "--ckpt", str(tmp / "q8.pt"),
                               "--out", str(tmp / "s"), option, value])
