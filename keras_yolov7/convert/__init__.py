"""Official YOLOv7 PyTorch checkpoints -> Keras: a safe `.pt` reader (no torch, no pickled code run)
and the mapping between official state_dict names and Keras variables."""

from keras_yolov7.convert.checkpoint import load_torch_checkpoint
from keras_yolov7.convert.state_dict import identify_preset
from keras_yolov7.convert.state_dict import load_torch_state_dict
from keras_yolov7.convert.state_dict import official_form
from keras_yolov7.convert.state_dict import official_layout
from keras_yolov7.convert.state_dict import to_torch_state_dict
from keras_yolov7.convert.torch_checkpoint import CheckpointLimits
from keras_yolov7.convert.torch_checkpoint import CheckpointTooLargeError
from keras_yolov7.convert.torch_checkpoint import TorchCheckpointError
from keras_yolov7.convert.torch_checkpoint import TorchCheckpointInfo
from keras_yolov7.convert.torch_checkpoint import UnsafeCheckpointError
from keras_yolov7.convert.torch_checkpoint import check_torch_checkpoint
from keras_yolov7.convert.torch_checkpoint import read_torch_checkpoint

__all__ = [
    "CheckpointLimits",
    "CheckpointTooLargeError",
    "TorchCheckpointError",
    "TorchCheckpointInfo",
    "UnsafeCheckpointError",
    "check_torch_checkpoint",
    "identify_preset",
    "load_torch_checkpoint",
    "load_torch_state_dict",
    "official_form",
    "official_layout",
    "read_torch_checkpoint",
    "to_torch_state_dict",
]
