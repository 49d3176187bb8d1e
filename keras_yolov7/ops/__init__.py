"""Backend-agnostic tensor operations (keras.ops only): boxes, decoding, NMS."""

from keras_yolov7.ops.boxes import center_xywh_to_xyxy
from keras_yolov7.ops.boxes import complete_iou
from keras_yolov7.ops.boxes import pairwise_iou
from keras_yolov7.ops.boxes import xyxy_to_center_xywh
from keras_yolov7.ops.decode import decode_level
from keras_yolov7.ops.decode import decode_predictions

__all__ = [
    "center_xywh_to_xyxy",
    "complete_iou",
    "decode_level",
    "decode_predictions",
    "pairwise_iou",
    "xyxy_to_center_xywh",
]
