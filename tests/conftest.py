"""pytest configuration: test helpers in this folder import as plain modules."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")


@pytest.fixture(scope="session")
def corpus_models():
    """Every model of the corpus of others' quantized ONNX files (tests/corpus.py), built and
    cached on first use (``host``: the layers a model runs on the host)."""
    import corpus

    return corpus.models()
