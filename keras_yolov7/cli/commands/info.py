"""`keras-yolov7 info`: the presets with their parameters and GFLOPs, from the architectures'
data (`keras_yolov7.models.complexity.preset_complexity`; no model is built, Keras is not
imported)."""

from keras_yolov7.cli import arguments
from keras_yolov7.models.configs import ARCHITECTURES
from keras_yolov7.models.presets import COCO_PRESETS


HELP = "table of the presets: parameters and GFLOPs"


def add_parser(commands):
    parser = commands.add_parser(
        "info",
        help=HELP,
        description="The seven YOLOv7 presets: training input size, detection levels, "
        "parameters (training and fused forms) and GFLOPs of the fused model at that size, "
        "counted like the official model_info (from the architectures' data: no model is built).",
        formatter_class=arguments.Formatter,
    )
    parser.add_argument(
        "--presets",
        nargs="+",
        choices=list(ARCHITECTURES),
        default=list(ARCHITECTURES),
        metavar="NAME",
        help=f"presets to show, among {', '.join(ARCHITECTURES)} (default: all)",
    )
    parser.add_argument(
        "--num-classes",
        type=arguments.positive_int,
        default=80,
        metavar="N",
        help="classes of the head",
    )
    arguments.add_backend(parser)
    parser.set_defaults(run=run)


def run(args):
    from importlib import metadata

    import keras_yolov7
    from keras_yolov7.models.complexity import preset_complexity

    print(
        f"keras-yolov7 {keras_yolov7.__version__}, keras {metadata.version('keras')}, "
        f"backend {_keras_backend()}, {args.num_classes} classes"
    )
    print(
        f"{'preset':<12} {'input':>6} {'levels':>6} {'params (train)':>15} "
        f"{'params (fused)':>15} {'GFLOPs (fused)':>15}"
    )
    for preset in args.presets:
        architecture = ARCHITECTURES[preset]
        figures = preset_complexity(preset, args.num_classes)
        print(
            f"{preset:<12} {architecture['input_size']:>6} {len(architecture['strides']):>6} "
            f"{figures['params_train']:>15,} {figures['params_fused']:>15,} "
            f"{figures['gflops_fused']:>15.1f}"
        )
    pretrained = [
        (name, filename, ap)
        for name, (architecture, filename, ap) in COCO_PRESETS.items()
        if architecture in args.presets
    ]
    if pretrained:
        print("pretrained presets (the official COCO weights, downloaded once on first use):")
        for name, filename, ap in pretrained:
            print(f"  {name:<17} official {filename:<15} COCO AP {ap} (paper)")


def _keras_backend():
    """The backend Keras would load, found as Keras finds it (KERAS_BACKEND, else the "backend"
    of $KERAS_HOME/keras.json, else tensorflow) without importing it."""
    import json
    import os

    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as file:
            return json.load(file).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"
