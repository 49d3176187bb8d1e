"""The `keras-yolov7` command line: train | val | predict | export | convert | info | preview.

Examples:
    keras-yolov7 info
    keras-yolov7 convert yolov7-tiny.pt --output yolov7-tiny.keras
    keras-yolov7 train --data data.yaml --preset yolov7_tiny --epochs 100 --batch 16
    keras-yolov7 val --weights runs/train/exp/weights/best.keras --data data.yaml
    keras-yolov7 predict --weights best.keras --source images/ --save-json
    keras-yolov7 export --weights best.keras --format tflite --precision int8 --data data.yaml
    keras-yolov7 preview --data data.yaml --preset yolov7_tiny

Every command accepts --backend (tensorflow, jax or torch); the default is KERAS_BACKEND or
Keras' own default. See docs/cli.md.
"""

from keras_yolov7.cli.errors import CLIError
from keras_yolov7.cli.main import build_parser
from keras_yolov7.cli.main import main

__all__ = ["CLIError", "build_parser", "main"]
