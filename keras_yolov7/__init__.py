"""keras_yolov7: YOLOv7 real-time object detection for Keras 3 (TensorFlow, JAX and PyTorch)."""

from keras_yolov7 import export
from keras_yolov7 import layers
from keras_yolov7 import models
from keras_yolov7 import ops
from keras_yolov7.models import YOLOv7Detector

__version__ = "0.1.0"

__all__ = ["YOLOv7Detector", "export", "layers", "models", "ops"]
