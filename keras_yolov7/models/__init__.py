"""The YOLOv7 family on KerasHub: the architectures (as data), the backbone, the detection task and
its preprocessor, and the presets."""

from keras_yolov7.models.configs import ARCHITECTURES
from keras_yolov7.models.presets import COCO_CLASS_NAMES
from keras_yolov7.models.transfer import transfer_weights
from keras_yolov7.models.yolov7_backbone import YOLOv7Backbone
from keras_yolov7.models.yolov7_image_converter import YOLOv7ImageConverter
from keras_yolov7.models.yolov7_object_detector import YOLOv7ObjectDetector
from keras_yolov7.models.yolov7_object_detector_preprocessor import (
    YOLOv7ObjectDetectorPreprocessor,
)

__all__ = [
    "ARCHITECTURES",
    "COCO_CLASS_NAMES",
    "YOLOv7Backbone",
    "YOLOv7ImageConverter",
    "YOLOv7ObjectDetector",
    "YOLOv7ObjectDetectorPreprocessor",
    "transfer_weights",
]
