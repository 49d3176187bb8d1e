"""The YOLOv7 family on KerasHub: the architectures (as data), the backbone, the detection task and
its preprocessor, and the presets.

The names load on first use, so that `keras_yolov7.models.configs` (the architectures as plain
data, which the command line's parser reads) imports without Keras.
"""

import importlib

_NAMES = {
    "ARCHITECTURES": "keras_yolov7.models.configs",
    "COCO_CLASS_NAMES": "keras_yolov7.models.presets",
    "transfer_weights": "keras_yolov7.models.transfer",
    "YOLOv7Backbone": "keras_yolov7.models.yolov7_backbone",
    "YOLOv7ImageConverter": "keras_yolov7.models.yolov7_image_converter",
    "YOLOv7ObjectDetector": "keras_yolov7.models.yolov7_object_detector",
    "YOLOv7ObjectDetectorPreprocessor": "keras_yolov7.models.yolov7_object_detector_preprocessor",
}


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'keras_yolov7.models' has no attribute {name!r}")


__all__ = sorted(_NAMES)
