"""pytest configuration: test helpers in this folder import as plain modules."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
