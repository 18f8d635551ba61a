"""The cases of tests/test_bad_inputs.py: one bad input each, built in a fresh folder ``d``.

A case is a tool, an argv template (``{d}`` is the case folder, ``{ex}`` the examples folder), an
optional ``setup(d)`` that plants the files, and substrings the one error line must contain.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ONNX = EXAMPLES / "lenet_fmnist_mixed.onnx"

SMALL_MLIR = """
func.func @main(%x: tensor<?x4xf32>) -> tensor<?x2xf32> {
  %q = cimq.quantize %x : (tensor<?x4xf32>) -> tensor<?x4x!cimq.q<u4:0.5>>
  %w = cimq.const dense<[[1, -1], [2, 3], [0, 7], [-7, 1]]> : tensor<4x2xi8> : tensor<4x2x!cimq.q<s4n:0.25>>
  %a = cimq.matmul %q, %w {layer = "fc"} : (tensor<?x4x!cimq.q<u4:0.5>>, tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<?x2x!cimq.q<s32:0.125>>
  %f = cimq.dequantize %a : (tensor<?x2x!cimq.q<s32:0.125>>) -> tensor<?x2xf32>
  func.return %f : tensor<?x2xf32>
}
"""


@dataclass
class Case:
    id: str
    tool: str
    argv: list[str]
    setup: Callable[[Path], None] | None = None
    needles: tuple[str, ...] = field(default_factory=tuple)


class Payload:
    """Unpickling this creates ``PWNED`` in the current folder."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def build_case(case: Case, d: Path) -> list[str]:
    if case.setup is not None:
        case.setup(d)
    return [a.replace("{d}", str(d)).replace("{ex}", str(EXAMPLES)) for a in case.argv]


# -- file builders ---------------------------------------------------------------------------------


def write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            p.write_text(data)
        else:
            p.write_bytes(data)
    return setup


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        for s in setups:
            s(d)
    return setup


def copy_model(name: str = "m.onnx") -> Callable[[Path], None]:
    return lambda d: shutil.copy(ONNX, d / name)


def small(name: str = "m.mlir") -> Callable[[Path], None]:
    return write(name, SMALL_MLIR)


def npy(name: str, arr) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        np.save(d / name, np.asarray(arr), allow_pickle=True)
    return setup


def npz(name: str, **arrays) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        np.savez(d / name, **arrays)
    return setup


def pickled(name: str) -> Callable[[Path], None]:
    return write(name, pickle.dumps(Payload()))


def torch_pickle(name: str) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        import torch

        torch.save({"w": Payload()}, d / name)
    return setup


def fifo(name: str) -> Callable[[Path], None]:
    return lambda d: os.mkfifo(d / name)


def full_dev(name: str = "full") -> Callable[[Path], None]:
    """A /dev/full twin (ENOSPC on write) inside the case folder (root), else a link to it."""
    def setup(d: Path) -> None:
        if os.geteuid() == 0:
            os.mknod(d / name, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        else:
            (d / name).symlink_to("/dev/full")
    return setup


def symlink(name: str, target: str) -> Callable[[Path], None]:
    return lambda d: (d / name).symlink_to(d / target)


def hardlink(name: str, target: str) -> Callable[[Path], None]:
    return lambda d: os.link(d / target, d / name)


def onnx_variant(name: str, edit: Callable) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        import onnx

        model = onnx.load(str(ONNX))
        edit(model, d)
        onnx.save(model, str(d / name))
    return setup


def _no_outputs(model, d) -> None:
    del model.graph.output[:]


def _two_inputs(model, d) -> None:
    from onnx import TensorProto, helper

    model.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1, 4]))


def _symbolic_batch(model, d) -> None:
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"


def _opset(model, d) -> None:
    model.opset_import[0].version = 3


def _unsupported_op(model, d) -> None:
    model.graph.node[-1].op_type = "Einsum"


def _external(location: str) -> Callable:
    def edit(model, d) -> None:
        from onnx import TensorProto

        t = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", location
    return edit


def _outside_file(d: Path) -> None:
    (d.parent / f"{d.name}-secret.bin").write_bytes(b"\1" * 4096)


def mlir_blob_without_weights(d: Path) -> None:
    (d / "b.mlir").write_text(SMALL_MLIR.replace(
        'cimq.const dense<[[1, -1], [2, 3], [0, 7], [-7, 1]]> : tensor<4x2xi8>',
        'cimq.const #cimq.blob<"w", "0123456789abcdef0123">'))


def lowered(name: str = "m.mlir") -> Callable[[Path], None]:
    """``cimc lower`` of the example (an .mlir with its .weights.npz beside it)."""
    def setup(d: Path) -> None:
        from cimc.cli import run

        assert run(["lower", str(ONNX), "-o", str(d / name)]) == 0
    return setup


def yaml(text: str) -> Callable[[Path], None]:
    return write("hw.yaml", text)


def alias_bomb() -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\nrows: *a9\n"


# -- the corpus ------------------------------------------------------------------------------------

CASES: list[Case] = []


def add(id: str, tool: str, argv: list[str], setup=None, *needles: str) -> None:
    CASES.append(Case(id, tool, argv, setup, tuple(needles)))


# cimc: model files
for cmd in ("lower", "run", "report"):
    add(f"{cmd}-missing-model", "cimc", [cmd, "{d}/nope.onnx"], None, "nope.onnx")
add("lower-dir-as-model", "cimc", ["lower", "{d}"], None, "directory")
add("lower-empty-onnx", "cimc", ["lower", "{d}/e.onnx"], write("e.onnx", b""), "e.onnx")
add("lower-random-onnx", "cimc", ["lower", "{d}/r.onnx"], write("r.onnx", os.urandom(64)), "r.onnx")
add("lower-text-onnx", "cimc", ["lower", "{d}/t.onnx"], write("t.onnx", "hello\n"), "t.onnx")
add("lower-truncated-onnx", "cimc", ["lower", "{d}/t.onnx"], write("t.onnx", ONNX.read_bytes()[:5000]), "t.onnx")
add("lower-dev-zero", "cimc", ["lower", "/dev/zero"], None, "/dev/zero")
add("lower-fifo-model", "cimc", ["lower", "{d}/p.onnx"], fifo("p.onnx"), "p.onnx")
add("lower-symlink-loop", "cimc", ["lower", "{d}/loop.onnx"], lambda d: (d / "loop.onnx").symlink_to(d / "loop.onnx"), "loop.onnx")
add("lower-onnx-no-outputs", "cimc", ["lower", "{d}/n.onnx"], onnx_variant("n.onnx", _no_outputs), "output")
add("lower-onnx-opset", "cimc", ["lower", "{d}/o.onnx"], onnx_variant("o.onnx", _opset), "opset")
add("lower-onnx-unsupported-op", "cimc", ["lower", "{d}/u.onnx"], onnx_variant("u.onnx", _unsupported_op), "Einsum")
add("lower-onnx-external-dotdot", "cimc", ["lower", "{d}/x.onnx"],
    both(_outside_file, onnx_variant("x.onnx", lambda m, d: _external(f"../{d.name}-secret.bin")(m, d))), "outside the model's folder")
add("lower-onnx-external-absolute", "cimc", ["lower", "{d}/x.onnx"],
    onnx_variant("x.onnx", _external("/etc/hostname")), "outside the model's folder")
add("lower-onnx-external-missing", "cimc", ["lower", "{d}/x.onnx"], onnx_variant("x.onnx", _external("w.bin")), "w.bin")
add("run-onnx-two-inputs-npy", "cimc", ["run", "{d}/two.onnx", "--input", "{d}/x.npy"],
    both(onnx_variant("two.onnx", _two_inputs), npy("x.npy", np.zeros((1, 1, 28, 28), np.float32))), "extra")
# cimc: MLIR files
add("lower-malformed-mlir", "cimc", ["lower", "{d}/b.mlir"], write("b.mlir", "func.func @main( {"), "b.mlir")
add("lower-binary-mlir", "cimc", ["lower", "{d}/b.mlir"], write("b.mlir", b"\x00\xff\xfe" * 30), "b.mlir")
add("lower-empty-mlir", "cimc", ["run", "{d}/b.mlir"], write("b.mlir", ""), "b.mlir")
add("run-mlir-no-main", "cimc", ["run", "{d}/b.mlir"], write("b.mlir", "func.func @other() {\n  func.return\n}\n"), "@main")
add("run-mlir-no-outputs", "cimc", ["run", "{d}/b.mlir"], write("b.mlir", "func.func @main(%x: tensor<1x4xf32>) {\n  func.return\n}\n"), "no outputs")
add("lower-unknown-op-mlir", "cimc", ["lower", "{d}/b.mlir"], write("b.mlir", '"foo.bar"() : () -> ()\n'), "b.mlir")
add("lower-invalid-mlir", "cimc", ["lower", "{d}/b.mlir"],
    write("b.mlir", SMALL_MLIR.replace("tensor<4x2xi8> : tensor<4x2x", "tensor<4x3xi8> : tensor<4x2x")), "b.mlir")
add("lower-deep-mlir", "cimc", ["lower", "{d}/b.mlir"], write("b.mlir", "builtin.module {" * 5000), "b.mlir")
add("run-mlir-blob-no-weights", "cimc", ["run", "{d}/b.mlir"], mlir_blob_without_weights, "weights")
add("run-mlir-corrupt-weights", "cimc", ["run", "{d}/b.mlir"],
    both(mlir_blob_without_weights, write("b.weights.npz", b"PK\3\4garbage")), "b.weights.npz")
add("run-mlir-pickled-weights", "cimc", ["run", "{d}/b.mlir"],
    both(mlir_blob_without_weights, npz("b.weights.npz", w=np.array([Payload()], dtype=object))), "b.weights.npz")
add("run-mlir-weights-digest", "cimc", ["run", "{d}/b.mlir"],
    both(mlir_blob_without_weights, npz("b.weights.npz", **{"0123456789abcdef0123": np.zeros(3)})), "digest")
# cimc: hardware files
HW_BAD = {
    "hw-alias-bomb": (alias_bomb(), "expands"),
    "hw-python-tag": ("rows: !!python/object/apply:os.system ['touch PWNED']\n", "hw.yaml"),
    "hw-invalid-yaml": ("rows: [1\n", "line"),
    "hw-top-list": ("- 1\n- 2\n", "mapping"),
    "hw-unknown-key": ("rowz: 128\n", "rowz"),
    "hw-rows-zero": ("rows: 0\n", "rows"),
    "hw-rows-negative": ("rows: -5\n", "rows"),
    "hw-rows-string": ("rows: '128'\n", "rows"),
    "hw-rows-float": ("rows: 128.5\n", "rows"),
    "hw-rows-bool": ("rows: true\n", "rows"),
    "hw-cell-bits-9": ("cell_bits: 9\n", "cell_bits"),
    "hw-dac-bits-0": ("dac_bits: 0\n", "dac_bits"),
    "hw-adc-bits-40": ("adc_bits: 40\n", "adc_bits"),
    "hw-mapping-bad": ("mapping: xx\n", "mapping"),
    "hw-t-write-negative": ("t_write_us: -1\n", "t_write_us"),
    "hw-t-exec-nan": ("t_exec_us: .nan\n", "t_exec_us"),
    "hw-t-exec-inf": ("t_exec_us: .inf\n", "t_exec_us"),
    "hw-t-exec-list": ("t_exec_us: [1, 2]\n", "t_exec_us"),
    "hw-authors-crossbar-scalar": ("crossbar: 5\n", "crossbar"),
    "hw-authors-size-list": ("crossbar:\n  size: [1, 2]\n", "crossbar.size"),
    "hw-authors-m-string": ("crossbar:\n  size:\n    m: '256'\n", "crossbar.size.m"),
    "hw-authors-m-float": ("crossbar:\n  size:\n    m: 256.0\n", "crossbar.size.m"),
    "hw-authors-mapping-int": ("mapper:\n  mapping_type: 3\n", "mapper.mapping_type"),
    "hw-authors-mapper-list": ("mapper: [dc]\n", "mapper"),
    "hw-authors-mixed": ("rows: 128\ncrossbar:\n  size:\n    n: 128\n", "mixes"),
    "hw-authors-cell-bits-0": ("crossbar:\n  resolution_weight_bits: 0\n", "crossbar.resolution_weight_bits"),
    "hw-authors-write-string": ("crossbar:\n  mvm_write_latency: fast\n", "crossbar.mvm_write_latency"),
    "hw-authors-exec-negative": ("crossbar:\n  mvm_execute_latency: -1.4\n", "crossbar.mvm_execute_latency"),
    "hw-recursive-alias": ("a: &a [*a]\n", "hw.yaml"),
    "hw-big": ("rows: 128\n" + "#" * (2 * 2**20) + "\n", "MiB"),
    "hw-not-utf8": (b"rows: \xff\xfe\n", "hw.yaml"),
}
for name, (text, needle) in HW_BAD.items():
    add(f"report-{name}", "cimc", ["report", "{d}/m.mlir", "--hw", "{d}/hw.yaml", "--json", "{d}/r.json"],
        both(small(), write("hw.yaml", text)), needle)
add("report-hw-missing", "cimc", ["report", "{d}/m.mlir", "--hw", "{d}/none.yaml"], small(), "none.yaml")
add("report-hw-dir", "cimc", ["report", "{d}/m.mlir", "--hw", "{d}"], small(), "directory")
add("report-hw-dev-zero", "cimc", ["report", "{d}/m.mlir", "--hw", "/dev/zero"], small(), "/dev/zero")
HW_SET_BAD = {
    "commas": (",,,", "--hw-set"), "hex": ("rows=0x100", "rows"), "no-value-sep": ("rows", "key=value"),
    "no-key": ("=5", "key=value"), "unknown": ("bogus=1", "bogus"), "word": ("rows=abc", "rows"),
    "exp": ("rows=1e3", "rows"), "dup": ("rows=128,rows=64", "rows"), "float-bits": ("cell_bits=2.0", "cell_bits"),
    "adc-negative": ("adc_bits=-1", "adc_bits"), "mapping-case": ("mapping=DC", "mapping"),
    "nan": ("t_write_us=nan", "t_write_us"), "list": ("rows=[1]", "rows"), "dict": ("rows={a: 1}", "rows"),
    "tag": ("rows=!!python/object/apply:os.system ['touch PWNED']", "rows"), "empty-value": ("rows=", "rows"),
    "trailing-comma": ("rows=128,", "--hw-set"), "octal": ("rows=0o17", "rows"), "plus": ("rows=+128", "rows"),
    "underscore": ("rows=1_000", "rows"),
}
for name, (spec, needle) in HW_SET_BAD.items():
    add(f"lower-hw-set-{name}", "cimc", ["lower", "{d}/m.mlir", "--to", "xbar", "--hw-set", spec,
                                          "-o", "{d}/o.mlir"], small(), needle)
# cimc: levels and options
add("lower-bad-level", "cimc", ["lower", "{d}/m.mlir", "--to", "bogus"], small(), "bogus")
add("run-bad-level", "cimc", ["run", "{d}/m.mlir", "--level", "xbar-bogus"], small(), "xbar-bogus")
add("run-fast-at-cimq", "cimc", ["run", "{d}/m.mlir", "--fast"], small(), "--fast")
add("run-compare-lossless", "cimc", ["run", "{d}/m.mlir", "--level", "xbar", "--compare-lossless"], small(), "lossy")
add("run-fast-lossy", "cimc", ["run", "{d}/m.mlir", "--level", "xbar", "--fast", "--hw-set", "adc_bits=3"], small(), "--fast")
add("run-batch-zero", "cimc", ["run", "{d}/m.mlir", "--batch", "0"], small(), "--batch")
add("run-batch-negative", "cimc", ["run", "{d}/m.mlir", "--batch", "-1"], small(), "--batch")
add("run-batch-word", "cimc", ["run", "{d}/m.mlir", "--batch", "abc"], small(), "--batch")
add("run-batch-huge", "cimc", ["run", str(ONNX), "--batch", "100000000"], None, "needs about")
add("run-seed-word", "cimc", ["run", "{d}/m.mlir", "--seed", "x"], small(), "--seed")
add("run-unknown-option", "cimc", ["run", "{d}/m.mlir", "--bogus"], small(), "--bogus")
add("run-no-model", "cimc", ["run"], None, "model")
add("unknown-command", "cimc", ["frobnicate"], None, "frobnicate")
add("report-opt-flag-value", "cimc", ["report", "{d}/m.mlir", "--opt=maybe"], small(), "--opt")
# cimc: --batch-axis (which input axis is the batch)
add("report-batch-axis-unknown-input", "cimc", ["report", str(ONNX), "--batch-axis", "foo=1"], None, "no input 'foo'")
add("lower-batch-axis-out-of-range", "cimc", ["lower", str(ONNX), "--batch-axis", "4"], None, "axis 4 is out of range")
add("run-batch-axis-word", "cimc", ["run", str(ONNX), "--batch-axis", "x"], None, "--batch-axis 'x'")
add("report-batch-axis-twice", "cimc", ["report", str(ONNX), "--batch-axis", "1", "--batch-axis", "0"], None, "twice")
add("report-batch-axis-sizes-differ", "cimc", ["report", "{d}/two.onnx", "--batch-axis", "extra=1"],
    onnx_variant("two.onnx", _two_inputs), "one size on every input")
add("lower-batch-axis-symbolic-elsewhere", "cimc", ["lower", "{d}/s.onnx", "--batch-axis", "1"],
    onnx_variant("s.onnx", _symbolic_batch), "dim 0 is dynamic")
add("lower-batch-axis-mlir", "cimc", ["lower", "{d}/m.mlir", "--batch-axis", "0"], small(), "applies to ONNX files")
add("run-batch-off-the-typed-batch", "cimc", ["run", str(ONNX), "--batch-axis", "1", "--batch", "3"], None,
    "--batch 3", "typed at batch 1")
# cimc: inputs and labels
X = np.zeros((2, 4), np.float32)
add("run-input-missing", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npy"], small(), "x.npy")
add("run-input-dir", "cimc", ["run", "{d}/m.mlir", "--input", "{d}"], small(), "directory")
add("run-input-text", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npy"], both(small(), write("x.npy", "1,2,3\n")), "x.npy")
add("run-input-pickle", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npy"],
    both(small(), npy("x.npy", np.array([Payload()], dtype=object))), "x.npy")
add("run-input-raw-pickle", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npy"], both(small(), pickled("x.npy")), "x.npy")
add("run-input-shape", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npy"], both(small(), npy("x.npy", np.zeros((2, 5), np.float32))), "shape")
add("run-input-rank", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npy"], both(small(), npy("x.npy", np.zeros(4, np.float32))), "shape")
add("run-input-nan", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npy"],
    both(small(), npy("x.npy", np.array([[1, np.nan, 0, 0]], np.float32))), "non-finite")
add("run-input-inf", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npy"],
    both(small(), npy("x.npy", np.array([[1, 0, -np.inf, 0]], np.float32))), "non-finite")
add("run-input-strings", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npy"], both(small(), npy("x.npy", np.array([["a"] * 4]))), "dtype")
add("run-input-complex", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npy"], both(small(), npy("x.npy", np.zeros((1, 4), np.complex64))), "dtype")
add("run-input-empty", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npy"], both(small(), npy("x.npy", np.zeros((0, 4), np.float32))), "empty")
add("run-input-npz-names", "cimc", ["run", "{d}/two.onnx", "--input", "{d}/x.npz"],
    both(onnx_variant("two.onnx", _two_inputs), npz("x.npz", a=np.zeros((1, 1, 28, 28), np.float32), b=np.zeros((1, 4), np.float32))), "extra")
add("run-input-npz-extra", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npz"],
    both(small(), npz("x.npz", x=X, y=X)), "x.npz")
add("run-input-dev-zero", "cimc", ["run", "{d}/m.mlir", "--input", "/dev/zero"], small(), "/dev/zero")
add("run-input-fifo", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/p.npy"], both(small(), fifo("p.npy")), "p.npy")
add("run-labels-missing", "cimc", ["run", "{d}/m.mlir", "--labels", "{d}/y.npy"], small(), "y.npy")
add("run-labels-float", "cimc", ["run", "{d}/m.mlir", "--labels", "{d}/y.npy"], both(small(), npy("y.npy", np.zeros(1))), "integer")
add("run-labels-2d", "cimc", ["run", "{d}/m.mlir", "--labels", "{d}/y.npy"], both(small(), npy("y.npy", np.zeros((1, 1), int))), "1-D")
add("run-labels-count", "cimc", ["run", "{d}/m.mlir", "--labels", "{d}/y.npy", "--batch", "3"], both(small(), npy("y.npy", np.zeros(2, int))), "batch")
add("run-labels-negative", "cimc", ["run", "{d}/m.mlir", "--labels", "{d}/y.npy"], both(small(), npy("y.npy", np.array([-1]))), "outside")
add("run-labels-too-big", "cimc", ["run", "{d}/m.mlir", "--labels", "{d}/y.npy"], both(small(), npy("y.npy", np.array([2]))), "outside")
add("run-labels-npz", "cimc", ["run", "{d}/m.mlir", "--labels", "{d}/y.npz"], both(small(), npz("y.npz", y=np.zeros(1, int))), "y.npz")
add("run-labels-pickle", "cimc", ["run", "{d}/m.mlir", "--labels", "{d}/y.npy"],
    both(small(), npy("y.npy", np.array([Payload()], dtype=object))), "y.npy")
# cimc: outputs
add("lower-o-is-model", "cimc", ["lower", "{d}/m.onnx", "-o", "{d}/m.onnx"], copy_model(), "overwrite")
add("lower-o-is-mlir-input", "cimc", ["lower", "{d}/m.mlir", "-o", "{d}/m.mlir"], small(), "overwrite")
add("lower-o-sidecar-is-input-weights", "cimc", ["lower", "{d}/m.mlir", "--to", "xbar", "-o", "{d}/m.weights"],
    lowered(), "overwrite")
add("lower-o-symlink-to-model", "cimc", ["lower", "{d}/m.onnx", "-o", "{d}/l.mlir"], both(copy_model(), symlink("l.mlir", "m.onnx")), "overwrite")
add("lower-o-hardlink-to-model", "cimc", ["lower", "{d}/m.onnx", "-o", "{d}/h.mlir"], both(copy_model(), hardlink("h.mlir", "m.onnx")), "overwrite")
add("lower-o-dotdot-model", "cimc", ["lower", "{d}/m.onnx", "-o", "{d}/sub/../m.onnx"],
    both(copy_model(), lambda d: (d / "sub").mkdir()), "overwrite")
add("lower-o-directory", "cimc", ["lower", "{d}/m.mlir", "-o", "{d}"], small(), "directory")
add("lower-o-file-parent", "cimc", ["lower", "{d}/m.mlir", "-o", "{d}/f/o.mlir"], both(small(), write("f", "x")), "not a directory")
add("lower-o-full-device", "cimc", ["lower", "{d}/m.mlir", "-o", "{d}/full"], both(small(), full_dev()), "no space")
add("lower-o-fifo-no-reader", "cimc", ["lower", "{d}/m.mlir", "-o", "{d}/p"], both(small(), fifo("p")), "reading")
add("report-json-is-model", "cimc", ["report", "{d}/m.onnx", "--json", "{d}/m.onnx"], copy_model(), "overwrite")
add("report-json-is-hw", "cimc", ["report", "{d}/m.mlir", "--hw", "{d}/hw.yaml", "--json", "{d}/hw.yaml"],
    both(small(), yaml("rows: 128\n")), "overwrite")
add("report-json-equals-plot", "cimc", ["report", "{d}/m.mlir", "--json", "{d}/r.out", "--plot", "{d}/r.out"], small(), "twice")
add("report-json-full-device", "cimc", ["report", "{d}/m.mlir", "--json", "{d}/full"], both(small(), full_dev()), "no space")
add("report-plot-full-device", "cimc", ["report", "{d}/m.mlir", "--json", "{d}/r.json", "--plot", "{d}/full"],
    both(small(), full_dev()), "no space")
add("report-plot-file-parent", "cimc", ["report", "{d}/m.mlir", "--json", "{d}/r.json", "--plot", "{d}/f/p.png"],
    both(small(), write("f", "x")), "not a directory")
add("run-report-is-model", "cimc", ["run", "{d}/m.onnx", "--report", "{d}/m.onnx"], copy_model(), "overwrite")
add("run-output-is-input", "cimc", ["run", "{d}/m.mlir", "--input", "{d}/x.npy", "--output", "{d}/x.npy"],
    both(small(), npy("x.npy", X)), "overwrite")
add("run-output-is-labels", "cimc", ["run", "{d}/m.mlir", "--labels", "{d}/y.npy", "--output", "{d}/y.npy"],
    both(small(), npy("y.npy", np.zeros(1, int))), "overwrite")
add("run-output-equals-report", "cimc", ["run", "{d}/m.mlir", "--output", "{d}/o", "--report", "{d}/o"], small(), "twice")
add("run-output-full-device", "cimc", ["run", "{d}/m.mlir", "--output", "{d}/full"], both(small(), full_dev()), "no space")
add("run-report-full-after-output", "cimc", ["run", "{d}/m.mlir", "--output", "{d}/y.npy", "--report", "{d}/full"],
    both(small(), full_dev()), "no space")
add("run-report-file-parent", "cimc", ["run", "{d}/m.mlir", "--output", "{d}/y.npy", "--report", "{d}/f/r.json"],
    both(small(), write("f", "x")), "not a directory")
add("run-output-directory", "cimc", ["run", "{d}/m.mlir", "--output", "{d}"], small(), "directory")

# cimc-opt
OPT_BAD = {
    "syntax": ("xbar-tile{", "pass pipeline"), "unknown-pass": ("no-such-pass", "no-such-pass"),
    "unknown-option": ("xbar-tile{bogus=1}", "bogus"), "rows-zero": ("convert-cimq-to-xbar,xbar-tile{rows=0}", "rows"),
    "rows-word": ("xbar-tile{rows=abc}", "rows"), "cell-bits": ("convert-cimq-to-xbar,xbar-tile{cell-bits=9}", "cell"),
    "mapping": ("convert-cimq-to-xbar,xbar-tile{mapping=zz}", "mapping"), "dac-zero": ("convert-cimq-to-xbar,xbar-tile{dac-bits=0}", "dac"),
    "cols-negative": ("convert-cimq-to-xbar,xbar-tile{cols=-4}", "cols"), "set-bits": ("xbar-set-bits{w-bits=9}", "w-bits"),
    "double-comma": ("cimq-fuse-requantize,,", "pass pipeline"), "unclosed-brace": ("xbar-tile{rows=4", "pass pipeline"),
}
for name, (spec, needle) in OPT_BAD.items():
    add(f"opt-{name}", "cimc-opt", ["{d}/m.mlir", "-p", spec, "-o", "{d}/o.mlir"], small(), needle)
add("opt-malformed-ir", "cimc-opt", ["{d}/b.mlir"], write("b.mlir", "func.func @main( {"), "b.mlir")
add("opt-binary-ir", "cimc-opt", ["{d}/b.mlir"], write("b.mlir", b"\xff\x00" * 50), "b.mlir")
add("opt-missing-input", "cimc-opt", ["{d}/none.mlir"], None, "none.mlir")
add("opt-o-is-input", "cimc-opt", ["{d}/m.mlir", "-o", "{d}/m.mlir"], small(), "overwrite")
add("opt-o-directory", "cimc-opt", ["{d}/m.mlir", "-o", "{d}"], small(), "directory")
add("opt-o-full-device", "cimc-opt", ["{d}/m.mlir", "-o", "{d}/full"], both(small(), full_dev()), "no space")
add("opt-blob-no-weights", "cimc-opt", ["{d}/b.mlir", "-o", "{d}/o.mlir"], mlir_blob_without_weights, "weights")
add("opt-corrupt-weights", "cimc-opt", ["{d}/b.mlir"], both(mlir_blob_without_weights, write("b.weights.npz", b"junk")), "b.weights.npz")
add("opt-unknown-flag", "cimc-opt", ["{d}/m.mlir", "--bogus"], small(), "--bogus")
add("opt-unknown-target", "cimc-opt", ["{d}/m.mlir", "-t", "nope"], small(), "nope")
add("opt-verify-failure", "cimc-opt", ["{d}/b.mlir"],
    write("b.mlir", SMALL_MLIR.replace("tensor<4x2xi8> : tensor<4x2x", "tensor<4x3xi8> : tensor<4x2x")), "b.mlir")
add("opt-dir-input", "cimc-opt", ["{d}"], None, "directory")

# xdsl-opt with the plug-in (subprocesses)
for name, spec, needle in (("rows-zero", "xbar-tile{rows=0}", "rows"), ("cell-bits", "xbar-tile{cell-bits=0}", "cell-bits"),
                           ("mapping", "xbar-tile{mapping=zz}", "mapping"), ("set-bits", "xbar-set-bits{a-bits=99}", "a-bits"),
                           ("rows-negative", "xbar-tile{rows=-1}", "rows"), ("dac-bits", "xbar-tile{dac-bits=9}", "dac-bits")):
    add(f"xdsl-opt-{name}", "xdsl-opt", ["{d}/m.mlir", "-p", f"convert-cimq-to-xbar,{spec}"], small(), needle)

# cimc-rl: training
RL_TRAIN = {
    "epochs-negative": (["--epochs", "-1"], "--epochs"), "epochs-nan": (["--epochs", "nan"], "--epochs"),
    "epochs-inf": (["--epochs", "inf"], "--epochs"), "bits-9": (["--bits", "9"], "--bits"), "bits-1": (["--bits", "1"], "--bits"),
    "lr-negative": (["--lr", "-1"], "--lr"), "lr-nan": (["--lr", "nan"], "--lr"), "batch-zero": (["--batch-size", "0"], "--batch-size"),
    "limit-zero": (["--limit", "0"], "--limit"), "model-bogus": (["--model", "bogus"], "bogus"),
    "dataset-bogus": (["--dataset", "bogus"], "bogus"), "init-missing": (["--init", "{d}/none.pt"], "none.pt"),
    "init-pickle": (["--init", "{d}/evil.pt"], "evil.pt"), "init-garbage": (["--init", "{d}/g.pt"], "g.pt"),
    "init-dir": (["--init", "{d}"], "directory"), "out-is-file": (["--out", "{d}/f"], "f"),
    "json-is-init": (["--init", "{d}/q.pt", "--json", "{d}/q.pt"], "overwrite"),
}
RL_SETUP = {"init-pickle": torch_pickle("evil.pt"), "init-garbage": write("g.pt", b"garbage"),
            "out-is-file": write("f", "x"), "json-is-init": torch_pickle("q.pt")}
for name, (extra, needle) in RL_TRAIN.items():
    argv = ["train"] + ([] if "--model" in extra else ["--model", "lenet"]) + extra
    add(f"rl-train-{name}", "cimc-rl", argv, RL_SETUP.get(name), needle)
add("rl-finetune-steps-negative", "cimc-rl", ["finetune", "-m", "lenet", "--policy", "{d}/p.json", "--ckpt", "{d}/c.pt", "--steps", "-5"], None, "--steps")
add("rl-finetune-policy-missing", "cimc-rl", ["finetune", "-m", "lenet", "--policy", "{d}/p.json", "--ckpt", "{d}/c.pt"], None, "p.json")
add("rl-finetune-policy-bad-json", "cimc-rl", ["finetune", "-m", "lenet", "--policy", "{d}/p.json", "--ckpt", "{d}/c.pt"],
    write("p.json", "{nope"), "p.json")
add("rl-finetune-policy-pickle", "cimc-rl", ["finetune", "-m", "lenet", "--policy", "{d}/p.npy", "--ckpt", "{d}/c.pt"],
    npy("p.npy", np.array([Payload()], dtype=object)), "p.npy")
add("rl-finetune-policy-shape", "cimc-rl", ["finetune", "-m", "lenet", "--policy", "{d}/p.npy", "--ckpt", "{d}/c.pt"],
    npy("p.npy", np.full((2, 2), 8)), "p.npy")
add("rl-finetune-policy-bits", "cimc-rl", ["finetune", "-m", "lenet", "--policy", "{d}/p.json", "--ckpt", "{d}/c.pt"],
    write("p.json", json.dumps({"layers": [{"w_bits": 99, "a_bits": 8}] * 5})), "p.json")
add("rl-finetune-ckpt-pickle", "cimc-rl", ["finetune", "-m", "lenet", "--policy", "{d}/p.json", "--ckpt", "{d}/c.pt"],
    both(write("p.json", json.dumps({"layers": [{"w_bits": 8, "a_bits": 8}] * 5})), torch_pickle("c.pt")), "c.pt")
add("rl-export-ckpt-missing", "cimc-rl", ["export", "-m", "lenet", "--ckpt", "{d}/c.pt", "-o", "{d}/m.onnx"], None, "c.pt")
add("rl-export-o-is-ckpt", "cimc-rl", ["export", "-m", "lenet", "--ckpt", "{d}/c.pt", "-o", "{d}/c.pt"], torch_pickle("c.pt"), "overwrite")
add("rl-export-o-directory", "cimc-rl", ["export", "-m", "lenet", "-o", "{d}"], None, "directory")
add("rl-evaluate-limit-negative", "cimc-rl", ["evaluate", "-m", "lenet", "--ckpt", "{d}/c.pt", "--limit", "-1"], None, "--limit")
add("rl-evaluate-split-bogus", "cimc-rl", ["evaluate", "-m", "lenet", "--ckpt", "{d}/c.pt", "--split", "bogus"], None, "bogus")
add("rl-unknown-command", "cimc-rl", ["frobnicate"], None, "frobnicate")
# cimc-rl: search
SEARCH = ["search", "-m", "lenet", "-d", "digits", "--ckpt", "{d}/q8.pt", "--out", "{d}/s"]
RL_SEARCH = {
    "episodes-zero": (["--episodes", "0"], "--episodes"), "episodes-negative": (["--episodes", "-3"], "--episodes"),
    "warmup-negative": (["--warmup", "-1"], "--warmup"), "acc-drop-nan": (["--acc-drop", "nan"], "--acc-drop"),
    "acc-drop-negative": (["--acc-drop", "-1"], "--acc-drop"), "budget-zero": (["--budget", "0"], "--budget"),
    "budget-nan": (["--budget", "nan"], "--budget"), "finetune-steps": (["--finetune-steps", "-1"], "--finetune-steps"),
    "eval-limit": (["--eval-limit", "0"], "--eval-limit"), "train-limit": (["--train-limit", "0"], "--train-limit"),
    "method": (["--method", "bogus"], "bogus"), "cost": (["--cost", "bogus"], "bogus"),
    "final-steps": (["--final-steps", "0"], "--final-steps"), "final-epochs": (["--final-epochs", "-1"], "--final-epochs"),
    "seed-word": (["--seed", "abc"], "--seed"), "ckpt-missing": ([], "q8.pt"), "hw-set": (["--hw-set", "rows=0"], "rows"),
    "config-bad-json": (["--config", "{d}/c.json"], "c.json"), "config-list": (["--config", "{d}/c.json"], "c.json"),
    "config-unknown-key": (["--config", "{d}/c.json"], "bogus"), "out-is-file": (["--out", "{d}/f"], "f"),
    "ckpt-pickle": ([], "q8.pt"), "config-is-out-config": (["--config", "{d}/s/config.json"], "overwrite"),
    "objective": (["--objective", "speed"], "speed"),
    "objective-cost": (["--objective", "energy", "--cost", "closed-form"], "--cost compiler"),
    "energy-preset": (["--objective", "edp", "--energy", "no-such-preset"], "no-such-preset"),
}
SEARCH_SETUP = {
    "config-bad-json": write("c.json", "{"), "config-list": write("c.json", "[1, 2]"),
    "config-unknown-key": write("c.json", json.dumps({"bogus": 1})), "out-is-file": write("f", "x"),
    "ckpt-pickle": torch_pickle("q8.pt"),
    "config-is-out-config": write("s/config.json", json.dumps({"episodes": 3})),
}
for name, (extra, needle) in RL_SEARCH.items():
    argv = [a for a in SEARCH if not (name == "out-is-file" and a in ("--out", "{d}/s"))] + extra
    add(f"rl-search-{name}", "cimc-rl", argv, SEARCH_SETUP.get(name), needle)
add("rl-search-no-ckpt", "cimc-rl", ["search", "-m", "lenet", "-d", "digits", "--out", "{d}/s"], None, "--ckpt")
add("rl-search-resume-crafted", "cimc-rl", SEARCH + ["--resume"],
    both(torch_pickle("q8.pt"), write("s/checkpoint.zip", pickle.dumps(Payload()))), "q8.pt")
# cimc-rl: a user's own model (FILE.py:FUNCTION) and data (FILE.npz, FILE.py:FUNCTION)
GOOD_MODEL = """
import torch
from torch import nn
def make():
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    m.input_shape = (1, 8, 8)
    return m
"""
BAD_MODELS = {  # name: (source of m.py, --model, needles)
    "model-file-missing": (None, "{d}/none.py:make", ("none.py", "not found")),
    "model-not-spec": (None, "{d}/m.txt:make", ("unknown model",)),
    "model-syntax": ("def make(:\n", "{d}/m.py:make", ("m.py:1", "syntax error")),
    "model-import-raises": ("import no_such_module_xyz\n", "{d}/m.py:make", ("m.py", "ModuleNotFoundError")),
    "model-no-function": (GOOD_MODEL, "{d}/m.py:build", ("m.py", "no function 'build'", "make")),
    "model-not-callable": ("make = 3\n", "{d}/m.py:make", ("m.py", "'make' is a int")),
    "model-function-raises": ("def make():\n    raise ValueError('bad width')\n", "{d}/m.py:make",
                              ("m.py:make", "ValueError: bad width")),
    "model-function-args": ("def make(width):\n    pass\n", "{d}/m.py:make", ("m.py:make", "TypeError")),
    "model-not-module": ("def make():\n    return 3\n", "{d}/m.py:make", ("m.py:make", "int, not a torch.nn.Module")),
    "model-no-input-shape": ("from torch import nn\ndef make():\n    return nn.Sequential(nn.Linear(4, 2))\n",
                             "{d}/m.py:make", ("m.py:make", "input_shape")),
    "model-bad-input-shape": (GOOD_MODEL.replace("(1, 8, 8)", "(1, -8, 8)"), "{d}/m.py:make", ("m.py:make", "input_shape")),
    "model-no-crossbar": (GOOD_MODEL.replace("nn.Linear(64, 10)", "nn.ReLU()"), "{d}/m.py:make",
                          ("m.py:make", "no crossbar layers")),
    "model-forward-fails": (GOOD_MODEL.replace("(1, 8, 8)", "(1, 8, 9)"), "{d}/m.py:make",
                            ("m.py:make", "forward pass", "RuntimeError")),
    "model-output-shape": (GOOD_MODEL.replace("nn.Flatten(), nn.Linear(64, 10)", "nn.Linear(8, 10)"), "{d}/m.py:make", ("m.py:make", "(N, classes)")),
    "model-layer-twice": ("from torch import nn\nclass M(nn.Module):\n    input_shape = (4,)\n"
                          "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 4)\n"
                          "    def forward(self, x):\n        return self.fc(self.fc(x))\n"
                          "def make():\n    return M()\n", "{d}/m.py:make", ("m.py:make", "'fc' runs twice")),
    "model-cross-attention": ("import torch\nfrom torch import nn\nclass M(nn.Module):\n    input_shape = (3, 4)\n"
                              "    def __init__(self):\n        super().__init__()\n"
                              "        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)\n"
                              "    def forward(self, x):\n        return self.attn(x, x + 1, x + 1)[0].mean(1)\n"
                              "def make():\n    return M()\n", "{d}/m.py:make", ("m.py:make", "'attn'", "self-attention")),
    "model-float64": (GOOD_MODEL.replace("return m", "return m.double()"), "{d}/m.py:make", ("m.py:make", "float64")),
}
for name, (source, spec, needles) in BAD_MODELS.items():
    add(f"rl-layers-{name}", "cimc-rl", ["layers", "--model", spec], write("m.py", source) if source else None, *needles)
add("rl-train-model-file-missing", "cimc-rl", ["train", "--model", "{d}/none.py:make", "--dataset", "digits"], None,
    "none.py")
add("rl-search-model-not-module", "cimc-rl", ["search", "-m", "{d}/m.py:make", "-d", "digits", "--ckpt", "{d}/q8.pt",
                                              "--out", "{d}/s"], write("m.py", BAD_MODELS["model-not-module"][0]),
    "m.py:make", "torch.nn.Module")
X8 = np.zeros((4, 1, 8, 8), np.uint8)
Y8 = np.arange(4) % 3
GOOD_DATA = {"x_train": X8, "y_train": Y8, "x_val": X8, "y_val": Y8}
BAD_DATA = {  # name: (arrays of d.npz, needles)
    "data-missing-array": ({k: v for k, v in GOOD_DATA.items() if k != "y_val"}, ("d.npz", "no array 'y_val'")),
    "data-unexpected-array": ({**GOOD_DATA, "labels": Y8}, ("d.npz", "unexpected array 'labels'")),
    "data-test-half": ({**GOOD_DATA, "x_test": X8}, ("d.npz", "'x_test' but no 'y_test'")),
    "data-float64": ({**GOOD_DATA, "x_train": X8.astype(np.float64)}, ("d.npz", "x_train", "float64")),
    "data-x-1d": ({**GOOD_DATA, "x_val": np.zeros(4, np.float32)}, ("d.npz", "x_val", "shape (4,)")),
    "data-empty": ({**GOOD_DATA, "x_val": X8[:0], "y_val": Y8[:0]}, ("d.npz", "x_val is empty")),
    "data-nan": ({**GOOD_DATA, "x_train": np.full((4, 1, 8, 8), np.nan, np.float32)}, ("d.npz", "x_train", "NaN")),
    "data-float-labels": ({**GOOD_DATA, "y_train": Y8.astype(np.float32)}, ("d.npz", "y_train", "integers")),
    "data-label-count": ({**GOOD_DATA, "y_val": Y8[:3]}, ("d.npz", "y_val", "shape (3,)")),
    "data-negative-label": ({**GOOD_DATA, "y_train": Y8 - 1}, ("d.npz", "y_train", "negative")),
    "data-sample-shapes": ({**GOOD_DATA, "x_val": np.zeros((4, 1, 8, 9), np.uint8)}, ("d.npz", "x_val", "(1, 8, 9)")),
    "data-label-range": ({**GOOD_DATA, "y_val": Y8 + 9}, ("d.npz", "y_val has label 11", "10 outputs")),
    "data-shape-vs-model": ({**GOOD_DATA, "x_train": X8[:, :, :7], "x_val": X8[:, :, :7]},
                            ("d.npz", "(1, 7, 8)", "(1, 8, 8)")),
}
for name, (arrays, needles) in BAD_DATA.items():
    add(f"rl-train-{name}", "cimc-rl", ["train", "--model", "{d}/m.py:make", "--dataset", "{d}/d.npz"],
        both(write("m.py", GOOD_MODEL), npz("d.npz", **arrays)), *needles)
add("rl-train-data-pickle", "cimc-rl", ["train", "--model", "lenet", "--dataset", "{d}/d.npz"],
    npz("d.npz", **{**GOOD_DATA, "y_train": np.array([Payload()] * 4, dtype=object)}), "d.npz")
add("rl-train-data-not-npz", "cimc-rl", ["train", "--model", "lenet", "--dataset", "{d}/d.npz"],
    write("d.npz", b"not a zip"), "d.npz")
add("rl-train-data-missing", "cimc-rl", ["train", "--model", "lenet", "--dataset", "{d}/none.npz"], None, "none.npz")
add("rl-train-data-zoo-shape", "cimc-rl", ["train", "--model", "lenet", "--dataset", "{d}/d.npz"],
    npz("d.npz", **GOOD_DATA), "d.npz", "(1, 8, 8)", "lenet", "(1, 28, 28)")
add("rl-train-data-py-not-dict", "cimc-rl", ["train", "--model", "lenet", "--dataset", "{d}/data.py:load"],
    write("data.py", "def load():\n    return [1, 2]\n"), "data.py:load", "list, not a dict")
add("rl-train-data-py-tensor", "cimc-rl", ["train", "--model", "{d}/m.py:make", "--dataset", "{d}/data.py:load"],
    both(write("m.py", GOOD_MODEL), write("data.py", "import torch\nimport numpy as np\ndef load():\n"
                                          "    x = np.zeros((4, 1, 8, 8), np.float32); y = np.zeros(4, np.int64)\n"
                                          "    return {'x_train': torch.zeros(4, 1, 8, 8), 'y_train': y, 'x_val': x, 'y_val': y}\n")),
    "data.py:load", "'x_train' is a Tensor")
add("rl-train-data-py-raises", "cimc-rl", ["train", "--model", "lenet", "--dataset", "{d}/data.py:load"],
    write("data.py", "def load():\n    return 1 / 0\n"), "data.py:load", "ZeroDivisionError")
add("rl-evaluate-data-no-function", "cimc-rl", ["evaluate", "--model", "lenet", "--ckpt", "{d}/c.pt", "--dataset",
                                                "{d}/data.py:nope"], write("data.py", "def load():\n    pass\n"),
    "data.py", "no function 'nope'")
