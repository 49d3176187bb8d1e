"""The YOLOv7 architectures (as data), their builder and the YOLOv7Detector model."""

from keras_yolov7.models.configs import ARCHITECTURES
from keras_yolov7.models.yolov7_detector import YOLOv7Detector

__all__ = ["ARCHITECTURES", "YOLOv7Detector"]
