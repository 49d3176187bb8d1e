"""Datasets: COCO JSON / YOLO txt / Pascal VOC readers, and the tf.data training and validation
pipelines with the official YOLOv7 augmentations (TensorFlow only; the datasets feed `model.fit`
on every Keras backend)."""

from keras_yolov7.data.augmentation import AugmentationConfig
from keras_yolov7.data.coco import read_coco
from keras_yolov7.data.coco import to_category_ids
from keras_yolov7.data.plot import plot_augmented_samples
from keras_yolov7.data.read import read_dataset
from keras_yolov7.data.records import DetectionDataset
from keras_yolov7.data.records import ImageRecord
from keras_yolov7.data.train_pipeline import make_train_dataset
from keras_yolov7.data.val_pipeline import make_val_dataset
from keras_yolov7.data.voc import VOC_CLASSES
from keras_yolov7.data.voc import read_voc
from keras_yolov7.data.yolo import read_yolo

__all__ = [
    "VOC_CLASSES",
    "AugmentationConfig",
    "DetectionDataset",
    "ImageRecord",
    "make_train_dataset",
    "make_val_dataset",
    "plot_augmented_samples",
    "read_coco",
    "read_dataset",
    "read_voc",
    "read_yolo",
    "to_category_ids",
]
