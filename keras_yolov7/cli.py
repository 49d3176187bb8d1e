"""The `keras-yolov7` command line: train | val | predict | export | convert | info | preview.

Examples:
    keras-yolov7 info
    keras-yolov7 convert yolov7-tiny.pt --output yolov7-tiny.keras
    keras-yolov7 train --data data.yaml --preset yolov7_tiny --epochs 100 --image-size 640 --batch 16
    keras-yolov7 val --weights runs/train/exp/weights/best.keras --data data.yaml
    keras-yolov7 predict --weights best.keras --source images/ --save-json
    keras-yolov7 export --weights best.keras --format tflite --precision int8 --data data.yaml

Every command accepts --backend (tensorflow, jax or torch); the default is KERAS_BACKEND or
Keras' own default.
"""

import argparse
import os
import sys

BACKENDS = ("tensorflow", "jax", "torch")


class CLIError(Exception):
    """A problem with the command's arguments or inputs, reported as one line."""


def _add_backend(parser):
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend to run on (default: $KERAS_BACKEND, else Keras' default)",
    )


def _add_weights(parser, required=True):
    parser.add_argument(
        "--weights",
        required=required,
        help="a .keras model saved by keras-yolov7 (train, convert) or an official YOLOv7 .pt checkpoint",
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-yolov7",
        description="YOLOv7 object detection for Keras 3 (TensorFlow, JAX, PyTorch).",
        epilog="Run `keras-yolov7 COMMAND --help` for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = commands.add_parser("info", help="table of the presets: parameters and GFLOPs")
    info.add_argument("--num-classes", type=int, default=80, help="classes of the head (default 80)")
    _add_backend(info)

    convert = commands.add_parser("convert", help="official YOLOv7 .pt checkpoint -> .keras model")
    convert.add_argument("checkpoint", help="official training checkpoint (.pt), e.g. yolov7-tiny.pt")
    convert.add_argument("--output", help="output .keras path (default: beside the checkpoint)")
    convert.add_argument("--fuse", action="store_true", help="save the fused inference form")
    _add_backend(convert)
    return parser


def _set_backend(backend):
    """Re-runs the command under the requested backend when Keras is already on another one.

    Keras reads KERAS_BACKEND once, when it is first imported, which has happened by the time this
    module runs as the `keras-yolov7` entry point.
    """
    if backend is None or os.environ.get("KERAS_BACKEND") == backend:
        return
    import keras

    if keras.backend.backend() == backend:
        return
    env = dict(os.environ, KERAS_BACKEND=backend)
    os.execve(sys.executable, [sys.executable, "-m", "keras_yolov7.cli", *sys.argv[1:]], env)


def load_model(path, **kwargs):
    """A `.keras` model or an official `.pt` checkpoint, by extension."""
    import keras

    import keras_yolov7 as kyv7

    if not os.path.exists(path):
        raise CLIError(f"weights file {path!r} does not exist")
    if path.endswith(".pt") or path.endswith(".pth"):
        return kyv7.convert.load_torch_checkpoint(path, **kwargs)
    if path.endswith(".keras"):
        model = keras.models.load_model(path)
        if not isinstance(model, kyv7.YOLOv7Detector):
            raise CLIError(f"{path} holds a {type(model).__name__}, not a YOLOv7Detector")
        return model
    raise CLIError(f"weights must be a .keras model or an official .pt checkpoint, got {path!r}")


def command_info(args):
    import keras_yolov7 as kyv7
    from keras_yolov7.models.complexity import count_gflops
    from keras_yolov7.models.complexity import count_parameters

    print(f"{'preset':<12} {'input':>6} {'levels':>6} {'params (train)':>15} {'params (fused)':>15} {'GFLOPs (fused)':>15}")
    for preset in kyv7.YOLOv7Detector.presets:
        model = kyv7.YOLOv7Detector.from_preset(preset, num_classes=args.num_classes)
        fused = model.get_fused()
        size = kyv7.models.ARCHITECTURES[preset]["input_size"]
        print(
            f"{preset:<12} {size:>6} {model.num_levels:>6} {count_parameters(model):>15,} "
            f"{count_parameters(fused):>15,} {count_gflops(fused, size):>15.1f}",
            flush=True,
        )


def command_convert(args):
    import keras_yolov7 as kyv7

    model = kyv7.convert.load_torch_checkpoint(args.checkpoint)
    if args.fuse:
        model = model.get_fused()
    output = args.output or os.path.splitext(args.checkpoint)[0] + ".keras"
    if not output.endswith(".keras"):
        raise CLIError(f"--output must end with .keras, got {output!r}")
    model.save(output)
    form = "fused" if args.fuse else "training"
    print(f"{args.checkpoint} -> {output} ({model.architecture}, {model.num_classes} classes, {form} form)")


COMMANDS = {"info": command_info, "convert": command_convert}


def main(argv=None):
    args = build_parser().parse_args(argv)
    _set_backend(args.backend)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        COMMANDS[args.command](args)
    except (CLIError, ValueError, FileNotFoundError) as error:
        print(f"keras-yolov7 {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
