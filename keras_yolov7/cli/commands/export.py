"""`keras-yolov7 export`: SavedModel, TFLite (fp32 / fp16 / int8) or ONNX, verified
(`keras_yolov7.engine.export`)."""

import argparse

from keras_yolov7.cli import arguments
from keras_yolov7.cli.errors import CLIError

EPILOG = """\
examples:
  keras-yolov7 export --weights best.keras --format tflite --precision int8 --data data.yaml
  keras-yolov7 export --weights best.keras --format tflite --nms android --image-size 320
  keras-yolov7 export --weights best.keras --format onnx
  keras-yolov7 export --weights best.keras --format onnx --precision int8 --data data.yaml
  keras-yolov7 export --weights yolov7-tiny.pt --format saved_model --output yolov7_tiny_savedmodel

Outputs are written beside the weights by default (best_fp32.tflite, best_int8_v5.tflite,
best.onnx, best_int8.onnx, best_saved_model/). Every export is loaded back and compared with the
Keras model before it is moved into place (TFLite also at 1, 2 and 4 threads, and the android
layout in MediaPipe's ObjectDetector); the figures are printed. int8 fails when its mAP@0.5 on
--data is more than --max-map-drop points below the float model's. See docs/export.md.
"""


HELP = "export to SavedModel, TFLite (fp32/fp16/int8) or ONNX, verified"


def add_parser(commands):
    from keras_yolov7.export.layout import DEFAULT_MAX_MAP_DROP
    from keras_yolov7.export.layout import FORMATS
    from keras_yolov7.export.layout import NMS_CHOICES
    from keras_yolov7.export.layout import QUANTIZATIONS

    parser = commands.add_parser(
        "export",
        help=HELP,
        description="Export the fused model with a static square input to SavedModel, TFLite "
        "or ONNX, verify it against the Keras model and print the figures, the ops and the file "
        "size. int8 is calibrated on --data images through the validation pipeline and its "
        "mAP@0.5 is compared with the float model's on them.",
        epilog=EPILOG,
        formatter_class=arguments.Formatter,
    )
    arguments.add_weights(parser)
    parser.add_argument("--format", choices=FORMATS, default="tflite", help="export format")
    parser.add_argument(
        "--precision",
        choices=QUANTIZATIONS,
        default="fp32",
        help="weights and compute: fp32; TFLite fp16; full-integer int8 for TFLite and ONNX "
        "(QDQ), calibrated on --data",
    )
    parser.add_argument(
        "--nms",
        choices=NMS_CHOICES,
        default=None,
        help="in-graph NMS: none (candidates), v4 / v5 (builtin NMS ops), android (v5 in "
        "the MediaPipe ObjectDetector layout, with metadata); default: v5 for saved_model, none "
        "otherwise",
    )
    parser.add_argument(
        "--no-metadata",
        dest="metadata",
        action="store_false",
        help="--nms android: write no ObjectDetector metadata (MediaPipe's ObjectDetector "
        "then refuses the file); by default it is written, which needs mediapipe",
    )
    arguments.add_image_size(parser, "the model's training size")
    parser.add_argument("--output", metavar="PATH", help="output file or SavedModel folder")
    data = parser.add_argument_group("calibration and verification images")
    data.add_argument(
        "--data",
        metavar="PATH",
        help="dataset (data YAML, COCO JSON, VOC folder) whose --split images calibrate int8 "
        "and check the export (default: synthetic check images)",
    )
    data.add_argument("--split", default="val", help="split of --data")
    data.add_argument("--image-dir", metavar="DIR", help="COCO JSON --data: its images folder")
    arguments.add_allow_outside_root(data)
    data.add_argument(
        "--num-calibration",
        type=arguments.positive_int,
        default=200,
        metavar="N",
        help="int8: calibration images taken from --data",
    )
    data.add_argument(
        "--max-map-drop",
        type=map_drop,
        default=DEFAULT_MAX_MAP_DROP,
        metavar="POINTS",
        help="int8: fail when mAP@0.5 on --data is more than POINTS below the float model's; "
        "'off' reports it without a limit",
    )
    nms = parser.add_argument_group("in-graph NMS (--nms v4, v5, android)")
    arguments.add_nms_options(nms, conf=0.25, iou=0.45, max_det=100, conf_help="score threshold")
    arguments.add_backend(parser)
    parser.set_defaults(run=run)


def map_drop(text):
    """--max-map-drop: mAP points >= 0, or "off"."""
    if text.strip().lower() in ("off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected mAP points >= 0 or 'off', got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def run(args):
    from keras_yolov7 import engine
    from keras_yolov7.export.layout import FORMAT_QUANTIZATIONS

    if args.precision not in FORMAT_QUANTIZATIONS[args.format]:
        raise CLIError(
            f"--precision {args.precision} is not offered for {args.format}; expected one of "
            f"{', '.join(FORMAT_QUANTIZATIONS[args.format])}"
        )
    if args.precision == "int8" and args.data is None:
        raise CLIError("--precision int8 needs --data: calibration images from your dataset")
    engine.export(
        args.weights,
        format=args.format,
        precision=args.precision,
        nms=args.nms,
        image_size=args.image_size,
        output=args.output,
        data=args.data,
        split=args.split,
        image_dir=args.image_dir,
        allow_outside_root=args.allow_outside_root,
        num_calibration=args.num_calibration,
        metadata=args.metadata,
        max_map_drop=args.max_map_drop,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
    )
