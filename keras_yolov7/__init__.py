"""keras_yolov7: YOLOv7 real-time object detection for Keras 3 (TensorFlow, JAX and PyTorch)."""

import importlib

from keras_yolov7 import convert
from keras_yolov7 import datasets
from keras_yolov7 import layers
from keras_yolov7 import losses
from keras_yolov7 import models
from keras_yolov7 import ops
from keras_yolov7 import training
from keras_yolov7.models import YOLOv7Backbone
from keras_yolov7.models import YOLOv7ImageConverter
from keras_yolov7.models import YOLOv7ObjectDetector
from keras_yolov7.models import YOLOv7ObjectDetectorPreprocessor

__version__ = "0.1.0"

# TensorFlow-based (tf.data, export) and evaluation modules load on first use, so that importing the
# package on the JAX or PyTorch backend does not pull TensorFlow in.
_LAZY = ("data", "evaluation", "export", "visualization")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"keras_yolov7.{name}")
    raise AttributeError(f"module 'keras_yolov7' has no attribute {name!r}")


__all__ = [
    "YOLOv7Backbone",
    "YOLOv7ImageConverter",
    "YOLOv7ObjectDetector",
    "YOLOv7ObjectDetectorPreprocessor",
    "convert",
    "datasets",
    "layers",
    "losses",
    "models",
    "ops",
    "training",
    *_LAZY,
]
