"""ONNX front end: :func:`import_onnx` reads a QDQ/QCDQ file into a ``cimq`` module.

This package is the only part of cimc that imports :mod:`onnx`. It may import the dialects,
:mod:`cimc.semantics`, :mod:`cimc.weights` and :mod:`cimc.errors`; nothing below it imports it.
The modules, in the order a file goes through them:

* :mod:`~cimc.frontend.load`: loading and checks (file, opset, QDQ present, inputs, batch);
* :mod:`~cimc.frontend.shapes`: static shapes (onnx shape inference) and constant folding;
* :mod:`~cimc.frontend.values` / :mod:`~cimc.frontend.types`: the value table's entries, the node
  a handler receives, ONNX types to numpy / xDSL types;
* :mod:`~cimc.frontend.context`: the import context (value table, emission, blobs);
* :mod:`~cimc.frontend.quantizers`: Q / DQ / Clip -> bits, scales and zero points;
* :mod:`~cimc.frontend.ops_crossbar`, :mod:`~cimc.frontend.ops_float`,
  :mod:`~cimc.frontend.ops_layout`: one handler per op kind;
* :mod:`~cimc.frontend.visit`: the op table and the visit of one node;
* :mod:`~cimc.frontend.build`: the graph visit and the module build (:func:`import_onnx`).

:func:`policy_of` gives the ``(L, 2)`` ``[w_bits, a_bits]`` array of the crossbar layers in graph
order.
"""

from cimc.frontend.build import import_onnx
from cimc.frontend.result import ImportResult, LayerInfo, TensorInfo, policy_of

__all__ = ["ImportResult", "LayerInfo", "TensorInfo", "import_onnx", "policy_of"]
