"""cimc dialects: ``cimq`` (mixed-precision quantized tensors) and ``xbar`` (crossbars)."""
