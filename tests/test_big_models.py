"""Full-size ResNet-18, VGG-16 and ViT-B/32 (224x224, Brevitas, seeded weights).

`cimc lower` imports each and prints IR that parses back to a structurally equal module, with the
weights kept out of the text. The ONNX files are built once by the zoo and cached
(``$CIMC_CACHE_DIR`` or ``~/.cache/cimc/models``); building them takes a few minutes the first time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cimc import models
from cimc.frontend import import_onnx, policy_of
from cimc.ir_io import read_module

BIN = Path(sys.executable).parent
BIG = ["resnet18", "vgg16", "vit_b32"]


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG)
def test_lower_prints_ir_that_parses_back(name: str, tmp_path: Path) -> None:
    path = models.zoo_onnx(name)
    out = tmp_path / f"{name}.mlir"
    proc = subprocess.run(
        [str(BIN / "cimc"), "lower", str(path), "--to", "cimq", "-o", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    # weights are out of the text: the IR is small next to the weights file
    side = out.with_name(f"{name}.weights.npz")
    assert side.exists() and side.stat().st_size > 20 * len(text)
    assert len(text) < 2_000_000
    reparsed = read_module(out)
    original = import_onnx(path).module
    reparsed.attributes.pop("cimc.level", None)
    original.attributes.pop("cimc.level", None)
    assert reparsed.is_structurally_equivalent(original)
    # the printed text of stdout mode is the same module
    proc = subprocess.run(
        [str(BIN / "cimc"), "lower", str(path), "--to", "cimq"], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("cimq.const") == text.count("cimq.const")


@pytest.mark.slow
@pytest.mark.parametrize("name", BIG)
def test_big_model_layers_and_bits(name: str) -> None:
    result = import_onnx(models.zoo_onnx(name))
    assert [layer.name for layer in result.layers] and len(result.layers) == models.num_layers(name)
    assert (policy_of(result) == 8).all()
