"""`keras-yolov7 info`: the presets with their parameters and GFLOPs."""

from keras_yolov7.cli import arguments
from keras_yolov7.models.configs import ARCHITECTURES


def add_parser(commands):
    parser = commands.add_parser(
        "info",
        help="table of the presets: parameters and GFLOPs",
        description="The seven YOLOv7 presets: training input size, detection levels, "
        "parameters (training and fused forms) and GFLOPs of the fused model at that size, "
        "counted like the official model_info.",
        formatter_class=arguments.Formatter,
    )
    parser.add_argument(
        "--presets",
        nargs="+",
        choices=list(ARCHITECTURES),
        default=list(ARCHITECTURES),
        metavar="NAME",
        help=f"presets to measure, among {', '.join(ARCHITECTURES)} (default: all)",
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
    import keras

    import keras_yolov7 as kyv7
    from keras_yolov7.models.complexity import count_gflops
    from keras_yolov7.models.complexity import count_parameters

    print(
        f"keras-yolov7 {kyv7.__version__}, keras {keras.__version__}, backend "
        f"{keras.backend.backend()}, {args.num_classes} classes"
    )
    # One row per preset as soon as it is measured (building the large presets takes seconds).
    print(
        f"{'preset':<12} {'input':>6} {'levels':>6} {'params (train)':>15} "
        f"{'params (fused)':>15} {'GFLOPs (fused)':>15}",
        flush=True,
    )
    for preset in args.presets:
        model = kyv7.YOLOv7ObjectDetector.from_preset(preset, num_classes=args.num_classes)
        fused = model.get_fused()
        size = kyv7.models.ARCHITECTURES[preset]["input_size"]
        print(
            f"{preset:<12} {size:>6} {model.num_levels:>6} {count_parameters(model):>15,} "
            f"{count_parameters(fused):>15,} {count_gflops(fused, size):>15.1f}",
            flush=True,
        )
