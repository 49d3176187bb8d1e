"""keras_yolov7: YOLOv7 real-time object detection for Keras 3 (TensorFlow, JAX and PyTorch)."""

import importlib
import os
import sys

__version__ = "0.1.0"

# Imported with the package: the model classes register with Keras' serialization here, so that
# `keras.models.load_model` and `keras_hub.models.ObjectDetector.from_preset` find them after
# `import keras_yolov7`.
_EAGER = ("convert", "datasets", "layers", "losses", "models", "ops", "training")
_CLASSES = (
    "YOLOv7Backbone",
    "YOLOv7ImageConverter",
    "YOLOv7ObjectDetector",
    "YOLOv7ObjectDetectorPreprocessor",
)
# TensorFlow-based (tf.data, export), evaluation and workflow modules load on first use, so that
# importing the package on the JAX or PyTorch backend does not pull TensorFlow in.
_LAZY = ("data", "engine", "evaluation", "export", "visualization")


def _started_as_command_line():
    """True in the `keras-yolov7` command (its script, or `python -m keras_yolov7.cli`).

    There the package loads its modules on first use: `--help`, argument errors and `info`
    answer without importing Keras (seconds of TensorFlow start-up), and the command line sets
    up the backend and a quiet TensorFlow start-up before the first import.
    """
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if script in ("keras-yolov7", "keras-yolov7.exe"):
        return True
    original = list(getattr(sys, "orig_argv", []))
    return any(
        flag == "-m" and module == "keras_yolov7.cli"
        for flag, module in zip(original, original[1:])
    )


def __getattr__(name):
    if name in _LAZY or name in _EAGER:
        return importlib.import_module(f"keras_yolov7.{name}")
    if name in _CLASSES:
        return getattr(importlib.import_module("keras_yolov7.models"), name)
    raise AttributeError(f"module 'keras_yolov7' has no attribute {name!r}")


if not _started_as_command_line():
    for _name in _EAGER:
        globals()[_name] = importlib.import_module(f"keras_yolov7.{_name}")
    for _name in _CLASSES:
        globals()[_name] = getattr(globals()["models"], _name)
    del _name

__all__ = [*_CLASSES, *_EAGER, *_LAZY]
