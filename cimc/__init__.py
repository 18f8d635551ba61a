"""cimc: a mixed-precision compiler, bit-serial simulator and bit-width search for RRAM
computing-in-memory crossbars.

Sub-packages: ``cimc.frontend`` (ONNX QCDQ import, the only place that imports ``onnx``),
``cimc.dialects`` (``cimq`` and ``xbar``), ``cimc.passes`` (one rewrite pass per file),
``cimc.exec`` (execution of every IR level), ``cimc.models`` (Brevitas model zoo) and
``cimc.rl`` (DDPG bit-width search).
"""

__version__ = "0.1.0"
