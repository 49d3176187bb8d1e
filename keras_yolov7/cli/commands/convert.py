"""`keras-yolov7 convert`: an official YOLOv7 `.pt` checkpoint -> a `.keras` model."""

import os

from keras_yolov7.cli import arguments
from keras_yolov7.cli.errors import CLIError


HELP = "official YOLOv7 .pt checkpoint -> .keras model"


def add_parser(commands):
    parser = commands.add_parser(
        "convert",
        help=HELP,
        description="Convert an official YOLOv7 checkpoint (yolov7.pt, yolov7_training.pt, "
        "yolov7-tiny.pt, ...; training, deploy or fused deploy form) to a .keras model, exactly: "
        "the preset, form, class count, anchors and class names come from the file. The file is "
        "read without torch and without running pickled code.",
        epilog="example: keras-yolov7 convert yolov7-tiny.pt --output yolov7-tiny.keras",
        formatter_class=arguments.Formatter,
    )
    parser.add_argument("checkpoint", help="official checkpoint (.pt)")
    parser.add_argument(
        "--output", metavar="PATH", help="output .keras path (default: beside the checkpoint)"
    )
    parser.add_argument(
        "--fuse",
        action="store_true",
        help="save the fused inference form (BN folded, RepConv merged, no auxiliary head)",
    )
    arguments.add_backend(parser)
    parser.set_defaults(run=run)


def run(args):
    import keras_yolov7 as kyv7

    output = args.output or os.path.splitext(args.checkpoint)[0] + ".keras"
    if not output.endswith(".keras"):
        raise CLIError(f"--output must end with .keras, got {output!r}")
    if not os.path.isfile(args.checkpoint):
        raise CLIError(f"checkpoint {args.checkpoint!r} does not exist")
    model = kyv7.convert.load_torch_checkpoint(args.checkpoint)
    if args.fuse and not model.fused:
        model = model.get_fused()
    model.save(output)
    form = "fused" if model.fused else "training"
    print(
        f"{args.checkpoint} -> {output} ({model.architecture}, {model.num_classes} classes, "
        f"{form} form)"
    )
