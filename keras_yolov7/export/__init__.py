"""Deployment: SavedModel, TFLite (fp32 / fp16 / int8, NMS variants, Android layout) and ONNX.

`export(model, path, format=...)` builds every export from the fused model with a static input,
verifies it against the Keras model and reports the figures (`ExportResult`). The conversion is
TensorFlow code; under the JAX or PyTorch backend it runs in a TensorFlow subprocess.
"""

from keras_yolov7.export.export import ExportResult
from keras_yolov7.export.export import export
from keras_yolov7.export.export import fixed_size_model
from keras_yolov7.export.verify import ExportVerificationError
from keras_yolov7.export.verify import NonBuiltinOpError

__all__ = [
    "ExportResult",
    "ExportVerificationError",
    "NonBuiltinOpError",
    "export",
    "fixed_size_model",
]
