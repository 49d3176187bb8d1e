"""Keras layers for the YOLOv7 building blocks. Each has get_config() and get_fused()."""

from keras_yolov7.layers.batch_norm import BatchNorm
from keras_yolov7.layers.conv import Conv
from keras_yolov7.layers.elan import EELAN
from keras_yolov7.layers.elan import ELAN
from keras_yolov7.layers.head import AuxiliaryHead
from keras_yolov7.layers.head import YOLOv7Head
from keras_yolov7.layers.implicit import ImplicitAdd
from keras_yolov7.layers.implicit import ImplicitMultiply
from keras_yolov7.layers.pooling import SPPCSPC
from keras_yolov7.layers.pooling import DownC
from keras_yolov7.layers.pooling import MPTransition
from keras_yolov7.layers.pooling import ReOrg
from keras_yolov7.layers.pooling import SPPCSPCTiny
from keras_yolov7.layers.preprocessing import ImageInput
from keras_yolov7.layers.repconv import RepConv
from keras_yolov7.layers.repconv import RepConvN

__all__ = [
    "AuxiliaryHead",
    "BatchNorm",
    "Conv",
    "DownC",
    "EELAN",
    "ELAN",
    "ImageInput",
    "ImplicitAdd",
    "ImplicitMultiply",
    "MPTransition",
    "ReOrg",
    "RepConv",
    "RepConvN",
    "SPPCSPC",
    "SPPCSPCTiny",
    "YOLOv7Head",
]
