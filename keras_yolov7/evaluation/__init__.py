"""COCO evaluation, the evaluation callback and plots."""

from keras_yolov7.evaluation import metrics
from keras_yolov7.evaluation import plots
from keras_yolov7.evaluation.callback import COCOEvaluationCallback
from keras_yolov7.evaluation.coco import detections_to_coco
from keras_yolov7.evaluation.coco import evaluate_detections
from keras_yolov7.evaluation.coco import ground_truth_to_coco
from keras_yolov7.evaluation.inference import compile_detect_function
from keras_yolov7.evaluation.inference import evaluate_model
from keras_yolov7.evaluation.inference import predict_dataset

__all__ = [
    "COCOEvaluationCallback",
    "compile_detect_function",
    "detections_to_coco",
    "evaluate_detections",
    "evaluate_model",
    "ground_truth_to_coco",
    "metrics",
    "plots",
    "predict_dataset",
]
