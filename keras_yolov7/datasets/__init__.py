"""Small built-in datasets, so the demo and examples run with nothing downloaded."""

from keras_yolov7.datasets.synthetic import SYNTHETIC_CLASS_NAMES
from keras_yolov7.datasets.synthetic import make_synthetic_arrays
from keras_yolov7.datasets.synthetic import write_synthetic_dataset

__all__ = ["SYNTHETIC_CLASS_NAMES", "make_synthetic_arrays", "write_synthetic_dataset"]
