"""cimc: a mixed-precision compiler, bit-serial simulator and bit-width search for RRAM
computing-in-memory crossbars.

Packages, bottom to top (each imports only those below it; ``lint-imports`` checks the contracts
in ``pyproject.toml``): ``cimc.target`` (the crossbar model: hardware, geometry, mapping,
counters, kernels; no IR), ``cimc.weights`` (blobs owned by modules), ``cimc.dialects`` (``cimq``
and ``xbar``), ``cimc.semantics`` / ``cimc.ir_io``, ``cimc.analysis`` (counts read off a
program), ``cimc.frontend`` (ONNX QCDQ import, the only place that imports ``onnx``),
``cimc.passes`` (one rewrite pass per file), ``cimc.pipeline`` (the levels), ``cimc.exec``
(execution of every IR level), ``cimc.report``, ``cimc.models`` / ``cimc.data`` /
``cimc.training`` (Brevitas zoo and QAT), and on top ``cimc.cli``, ``cimc.tools`` (``cimc-opt``)
and ``cimc.rl`` (DDPG bit-width search).
"""

__version__ = "0.1.0"
