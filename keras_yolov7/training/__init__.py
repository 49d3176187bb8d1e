"""The official YOLOv7 training recipe as Keras pieces: parameter groups, schedule, optimizer, EMA,
and training on several devices."""

from keras_yolov7.training.distribution import TrainingDistribution
from keras_yolov7.training.distribution import make_distribution
from keras_yolov7.training.distribution import select_devices
from keras_yolov7.training.distribution import synchronize_batch_normalization
from keras_yolov7.training.ema import ModelEMA
from keras_yolov7.training.groups import ParameterGroups
from keras_yolov7.training.groups import parameter_groups
from keras_yolov7.training.loss_scaling import ReplicaConsistentLossScaleOptimizer
from keras_yolov7.training.loss_scaling import with_loss_scaling
from keras_yolov7.training.optimizer import YOLOv7SGD
from keras_yolov7.training.precision import resolve_inference_precision
from keras_yolov7.training.precision import use_mixed_precision
from keras_yolov7.training.precision import with_inference_precision
from keras_yolov7.training.replicas import replicas_in_sync
from keras_yolov7.training.replicas import sum_over_replicas
from keras_yolov7.training.schedule import HYPERPARAMETERS
from keras_yolov7.training.schedule import YOLOv7Schedule
from keras_yolov7.training.schedule import accumulation_steps
from keras_yolov7.training.schedule import cosine_factor
from keras_yolov7.training.schedule import is_update_iteration
from keras_yolov7.training.schedule import official_lr_and_momentum
from keras_yolov7.training.schedule import warmup_iterations
from keras_yolov7.training.recipe import PRESET_FAMILIES
from keras_yolov7.training.recipe import make_training_setup

__all__ = [
    "HYPERPARAMETERS",
    "ModelEMA",
    "PRESET_FAMILIES",
    "ParameterGroups",
    "ReplicaConsistentLossScaleOptimizer",
    "TrainingDistribution",
    "YOLOv7SGD",
    "YOLOv7Schedule",
    "accumulation_steps",
    "cosine_factor",
    "is_update_iteration",
    "make_distribution",
    "make_training_setup",
    "official_lr_and_momentum",
    "parameter_groups",
    "replicas_in_sync",
    "resolve_inference_precision",
    "select_devices",
    "sum_over_replicas",
    "synchronize_batch_normalization",
    "use_mixed_precision",
    "warmup_iterations",
    "with_inference_precision",
    "with_loss_scaling",
]
