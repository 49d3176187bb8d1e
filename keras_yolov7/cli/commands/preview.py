"""`keras-yolov7 preview`: a picture of augmented training samples with their boxes
(`keras_yolov7.engine.preview`)."""

from keras_yolov7.cli import arguments
from keras_yolov7.models.configs import ARCHITECTURES

HELP = "picture of augmented training samples with their boxes"


def add_parser(commands):
    parser = commands.add_parser(
        "preview",
        help=HELP,
        description="Draw samples of the training pipeline (mosaic, mixup, perspective, HSV, "
        "flips of the preset's family) with their boxes and class names, to check labels and "
        "augmentations by eye before training; --no-augment shows the letterboxed images "
        "instead.",
        epilog="example: keras-yolov7 preview --data data.yaml --preset yolov7_tiny "
        "--output samples.png",
        formatter_class=arguments.Formatter,
    )
    arguments.add_dataset(parser, "split to draw")
    parser.set_defaults(split="train")
    parser.add_argument(
        "--preset",
        choices=list(ARCHITECTURES),
        default="yolov7",
        help="whose augmentation settings to use",
    )
    arguments.add_image_size(parser, "the preset's training size")
    parser.add_argument(
        "--num-images", type=arguments.positive_int, default=16, metavar="N", help="samples to draw"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the augmentations")
    parser.add_argument(
        "--no-augment",
        action="store_true",
        help="draw the letterboxed images of the validation pipeline instead",
    )
    parser.add_argument(
        "--output",
        metavar="PNG",
        help="picture to write (default: runs/preview/<dataset>_<split>.png)",
    )
    arguments.add_backend(parser)
    parser.set_defaults(run=run)


def run(args):
    from keras_yolov7 import engine

    output, drawn = engine.preview(
        args.data,
        output=args.output,
        split=args.split,
        image_dir=args.image_dir,
        allow_outside_root=args.allow_outside_root,
        preset=args.preset,
        image_size=args.image_size,
        num_images=args.num_images,
        seed=args.seed,
        augment=not args.no_augment,
    )
    print(f"{drawn} samples drawn to {output}")
