"""Official YOLOv7 PyTorch checkpoints: a safe `.pt` reader (no torch, no pickled code run)."""

from keras_yolov7.convert.torch_checkpoint import TorchCheckpointError
from keras_yolov7.convert.torch_checkpoint import TorchCheckpointInfo
from keras_yolov7.convert.torch_checkpoint import UnsafeCheckpointError
from keras_yolov7.convert.torch_checkpoint import read_torch_checkpoint

__all__ = [
    "TorchCheckpointError",
    "TorchCheckpointInfo",
    "UnsafeCheckpointError",
    "read_torch_checkpoint",
]
