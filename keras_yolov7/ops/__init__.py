"""Backend-agnostic tensor operations (keras.ops only): boxes, decoding, NMS."""

from keras_yolov7.ops.boxes import center_xywh_to_xyxy
from keras_yolov7.ops.boxes import complete_iou
from keras_yolov7.ops.boxes import pairwise_iou
from keras_yolov7.ops.boxes import xyxy_to_center_xywh
from keras_yolov7.ops.decode import decode_level
from keras_yolov7.ops.decode import decode_predictions
from keras_yolov7.ops.nms import non_max_suppression
from keras_yolov7.ops.postprocess import DETECTION_SETTINGS
from keras_yolov7.ops.postprocess import EVALUATION_SETTINGS
from keras_yolov7.ops.postprocess import boxes_to_original
from keras_yolov7.ops.postprocess import postprocess

__all__ = [
    "DETECTION_SETTINGS",
    "EVALUATION_SETTINGS",
    "boxes_to_original",
    "center_xywh_to_xyxy",
    "complete_iou",
    "decode_level",
    "decode_predictions",
    "non_max_suppression",
    "pairwise_iou",
    "postprocess",
    "xyxy_to_center_xywh",
]
