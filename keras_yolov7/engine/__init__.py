"""The workflows of keras_yolov7 as library functions: train a run directory (and resume it),
evaluate with plots, predict over files and folders, export, preview. The `keras-yolov7`
command line parses arguments, calls one of these and prints.

    import keras_yolov7 as kyv7

    run = kyv7.engine.train("data.yaml", preset="yolov7_tiny", epochs=100)
    run = kyv7.engine.resume("runs/train/exp")        # after an interruption
    kyv7.engine.evaluate(run.run_dir / "weights" / "best.keras", "data.yaml")
    kyv7.engine.predict(run.run_dir / "weights" / "best.keras", "photos/", save_json=True)
    kyv7.engine.export(run.run_dir / "weights" / "best.keras", format="tflite")
"""

from keras_yolov7.engine.evaluate import EvaluationResult
from keras_yolov7.engine.evaluate import evaluate
from keras_yolov7.engine.export import export
from keras_yolov7.engine.predict import PredictionResult
from keras_yolov7.engine.predict import find_images
from keras_yolov7.engine.predict import predict
from keras_yolov7.engine.preview import preview
from keras_yolov7.engine.train import TrainingConfig
from keras_yolov7.engine.train import TrainingResult
from keras_yolov7.engine.train import resume
from keras_yolov7.engine.train import results_columns
from keras_yolov7.engine.train import train
from keras_yolov7.engine.weights import load_model

__all__ = [
    "EvaluationResult",
    "PredictionResult",
    "TrainingConfig",
    "TrainingResult",
    "evaluate",
    "export",
    "find_images",
    "load_model",
    "predict",
    "preview",
    "resume",
    "results_columns",
    "train",
]
