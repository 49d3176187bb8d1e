"""Argument types and the options several commands share."""

import argparse

BACKENDS = ("tensorflow", "jax", "torch")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class Formatter(argparse.HelpFormatter):
    """Help where a description or epilog with line breaks (examples, layouts) is kept as
    written and one without is wrapped, and each option's default is shown (when it has a
    value: options without one say what they default to in their help)."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "(default" not in text
            and default is not None
            and default is not False
            and default is not argparse.SUPPRESS
        ):
            text += " (default: %(default)s)"
        return text


def probability(text):
    """A number in [0, 1] (confidence and IoU thresholds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def positive_int(text):
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def device_list(text):
    """--devices: a count ("2") or comma-separated device names ("gpu:0,gpu:1")."""
    text = text.strip()
    if text.isdigit():
        return positive_int(text)
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    for name in names:
        kind, _, index = name.lstrip("/").partition(":")
        if not kind or not index.isdigit():
            raise argparse.ArgumentTypeError(
                f"expected a device count or names like gpu:0,gpu:1, got {text!r}"
            )
    if not names:
        raise argparse.ArgumentTypeError(f"expected a device count or names, got {text!r}")
    return names


def add_backend(parser):
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend to run on (default: $KERAS_BACKEND, else Keras' default)",
    )


def add_weights(parser, required=True):
    parser.add_argument(
        "--weights",
        required=required,
        metavar="PATH",
        help="a .keras model saved by keras-yolov7 (train, convert) or an official YOLOv7 .pt "
        "checkpoint",
    )


def add_run_directory(parser, project):
    group = parser.add_argument_group("output")
    group.add_argument(
        "--project", default=project, metavar="DIR", help="parent folder of the run directories"
    )
    group.add_argument(
        "--name",
        default="exp",
        help="run directory name; taken names get a number (exp, exp2, exp3, ...)",
    )
    group.add_argument(
        "--exist-ok",
        action="store_true",
        help="reuse PROJECT/NAME if it exists instead of numbering a new one",
    )


def add_allow_outside_root(parser):
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="read dataset files outside the dataset root (a data YAML's folder, a COCO image "
        "folder, a VOC folder): a `path:` or split entry, a listed image, a COCO file_name or a "
        "VOC filename with `..` or an absolute path. Without it, such a YAML is refused and "
        "such images are skipped",
    )


def add_dataset(parser, split_help):
    """--data, --split, --image-dir and --allow-outside-root, for the commands that read one
    split of a dataset."""
    parser.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="dataset: a data YAML (YOLO txt), a COCO JSON file, a Pascal VOC folder or a folder "
        "with annotations/instances_<split>*.json",
    )
    parser.add_argument("--split", default="val", metavar="NAME", help=split_help)
    parser.add_argument(
        "--image-dir",
        metavar="DIR",
        help="COCO JSON only: folder of the images (default: inferred from the JSON's location)",
    )
    add_allow_outside_root(parser)


def add_image_size(parser, default_help):
    parser.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        metavar="PIXELS",
        help=f"network input size, a multiple of the model's largest stride (default: "
        f"{default_help})",
    )


def add_nms_options(parser, conf, iou, max_det, conf_help="confidence threshold"):
    """--conf, --iou and --max-det with the command's defaults (a parser or argument group)."""
    parser.add_argument(
        "--conf", type=probability, default=conf, metavar="0..1", help=conf_help
    )
    parser.add_argument(
        "--iou", type=probability, default=iou, metavar="0..1", help="NMS IoU threshold"
    )
    parser.add_argument(
        "--max-det", type=positive_int, default=max_det, metavar="N", help="detections per image"
    )


def add_inference_precision(parser):
    """--precision of predict and val: the model's compute precision."""
    from keras_yolov7.training.precision import INFERENCE_PRECISIONS

    parser.add_argument(
        "--precision",
        choices=INFERENCE_PRECISIONS,
        default="auto",
        help="compute precision: float32, bfloat16, or auto: bfloat16 on the TensorFlow backend "
        "on a CPU with AMX or AVX512-BF16 and no GPU, float32 elsewhere",
    )
