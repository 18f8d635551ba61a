"""A corpus of quantized ONNX models that nobody on the cimc team wrote (test helper).

Each producer is a function that writes ONNX files with the producer's own tools; the models are
built on the fly (random weights, a few seconds) and cached per test session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx


def ort_quantized(model: onnx.ModelProto | Path, dst: Path, input_shape: list[int], *,
                  per_channel: bool = True, seed: int = 0, samples: int = 4) -> Path:
    """onnxruntime's ``quantize_static`` in QDQ format (uint8 activations with zero points,
    int8 weights, int32 biases), calibrated on random normal inputs."""
    from onnxruntime import quantization as q

    src = dst.with_suffix(".float.onnx")
    if isinstance(model, Path):
        src = model
    else:
        onnx.save(model, str(src))
    name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    rng = np.random.default_rng(seed)

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.data = iter([{name: rng.standard_normal(input_shape).astype(np.float32)}
                              for _ in range(samples)])

        def get_next(self):
            return next(self.data, None)

    q.quantize_static(str(src), str(dst), Reader(), quant_format=q.QuantFormat.QDQ,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                      per_channel=per_channel)
    return dst
