"""The YOLOv7 training loss and its fixed-shape label assignment (keras.ops only)."""

from keras_yolov7.losses.target_checks import check_targets
from keras_yolov7.losses.yolov7_loss import OFFICIAL_GAINS
from keras_yolov7.losses.yolov7_loss import YOLOv7Loss

__all__ = ["OFFICIAL_GAINS", "YOLOv7Loss", "check_targets"]
