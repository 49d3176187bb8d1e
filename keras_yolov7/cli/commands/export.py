"""`keras-yolov7 export`: SavedModel, TFLite (fp32 / fp16 / int8) or ONNX, verified."""

import os

from keras_yolov7.cli import arguments
from keras_yolov7.cli.errors import CLIError
from keras_yolov7.export.layout import FORMATS
from keras_yolov7.export.layout import NMS_CHOICES
from keras_yolov7.export.layout import QUANTIZATIONS

EPILOG = """\
examples:
  keras-yolov7 export --weights best.keras --format tflite --precision int8 --data data.yaml
  keras-yolov7 export --weights best.keras --format tflite --nms android --image-size 320
  keras-yolov7 export --weights best.keras --format onnx
  keras-yolov7 export --weights yolov7-tiny.pt --format saved_model --output yolov7_tiny_savedmodel

Outputs are written beside the weights by default (best_fp32.tflite, best_int8_v5.tflite,
best.onnx, best_saved_model/). Every export is loaded back and compared with the Keras model
before it is moved into place; the figures are printed. See docs/export.md for the layouts.
"""


def add_parser(commands):
    parser = commands.add_parser(
        "export",
        help="export to SavedModel, TFLite (fp32/fp16/int8) or ONNX, verified",
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
        help="TFLite weights and compute: fp32, fp16 or full-integer int8 (needs --data)",
    )
    parser.add_argument(
        "--nms",
        choices=NMS_CHOICES,
        default=None,
        help="in-graph NMS: none (candidates), v4 / v5 (builtin NMS ops), android "
        "(TFLite_Detection_PostProcess); default: v5 for saved_model, none otherwise",
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
    nms = parser.add_argument_group("in-graph NMS (--nms v4, v5, android)")
    arguments.add_nms_options(nms, conf=0.25, iou=0.45, max_det=100, conf_help="score threshold")
    arguments.add_backend(parser)
    parser.set_defaults(run=run)


def default_output(weights, format, precision, nms):
    """Beside the weights: `<stem>_<precision>[_<nms>].tflite`, `<stem>.onnx`,
    `<stem>_saved_model`."""
    stem = os.path.splitext(weights)[0]
    if format == "tflite":
        return f"{stem}_{precision}{'' if nms in (None, 'none') else '_' + nms}.tflite"
    if format == "onnx":
        return f"{stem}.onnx"
    return f"{stem}_saved_model"


def run(args):
    from keras_yolov7.cli import data_sources
    from keras_yolov7.cli.weights import check_num_classes
    from keras_yolov7.cli.weights import input_size
    from keras_yolov7.cli.weights import load_model
    from keras_yolov7.export import export

    if args.precision != "fp32" and args.format != "tflite":
        raise CLIError(
            f"--precision {args.precision} is for TFLite; {args.format} exports are fp32"
        )
    if args.precision == "int8" and args.data is None:
        raise CLIError("--precision int8 needs --data: calibration images from your dataset")
    model = load_model(args.weights)
    size = input_size(model, args.image_size)
    output = args.output or default_output(args.weights, args.format, args.precision, args.nms)
    options = {}
    if args.data is not None:
        from keras_yolov7.data import make_val_dataset

        dataset = data_sources.read_split(
            args.data, args.split, args.image_dir, args.allow_outside_root
        )
        print(data_sources.describe(dataset, f"{args.split} ({args.data})"))
        check_num_classes(model, dataset, args.weights, args.data)
        batches = make_val_dataset(
            dataset, image_size=size, batch_size=16, stride=max(model.strides)
        )
        options["sample_images"] = batches.take(1)
        if args.precision == "int8":
            options.update(representative_data=batches, validation_data=(dataset, batches))
    result = export(
        model,
        output,
        format=args.format,
        image_size=size,
        quantization=args.precision,
        nms=args.nms,
        num_calibration_images=args.num_calibration,
        class_names=model.class_names,
        max_detections=args.max_det,
        score_threshold=args.conf,
        iou_threshold=args.iou,
        **options,
    )
    print_export(result)


def print_export(result):
    """The summary of an `ExportResult`: file, settings, tensors, ops and verification."""
    print(
        f"exported {result.path}: {result.format}, {result.quantization}, nms {result.nms}, "
        f"{result.image_size}x{result.image_size}, {result.num_classes} classes, "
        f"{result.file_size / 1e6:.1f} MB"
    )
    for kind, tensors in (("inputs", result.inputs), ("outputs", result.outputs)):
        described = ", ".join(
            f"{name} {spec['dtype']} {tuple(spec['shape'])}" for name, spec in tensors.items()
        )
        print(f"  {kind}: {described}")
    if result.ops:
        ops = sorted(result.ops.items(), key=lambda item: (-item[1], item[0]))
        print(f"  ops ({sum(result.ops.values())}): " + ", ".join(f"{op} {n}" for op, n in ops))
    if result.float_ops:
        print(
            "  float ops: " + ", ".join(f"{op} {n}" for op, n in sorted(result.float_ops.items()))
        )
    print("  verification:")
    for line in _figures(result.verification, "    "):
        print(line)
    if result.metadata:
        print(f"  metadata: {result.metadata}")


def _figures(values, indent):
    for key, value in values.items():
        if isinstance(value, dict):
            yield f"{indent}{key}:"
            yield from _figures(value, indent + "  ")
        elif isinstance(value, float):
            yield f"{indent}{key}: {value:.4g}"
        else:
            yield f"{indent}{key}: {value}"
