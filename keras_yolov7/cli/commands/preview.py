"""`keras-yolov7 preview`: a picture of augmented training samples with their boxes."""

import pathlib

from keras_yolov7.cli import arguments
from keras_yolov7.cli.errors import CLIError
from keras_yolov7.models.configs import ARCHITECTURES


def add_parser(commands):
    parser = commands.add_parser(
        "preview",
        help="picture of augmented training samples with their boxes",
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
    from keras_yolov7.cli import data_sources
    from keras_yolov7.data import make_train_dataset
    from keras_yolov7.data import make_val_dataset
    from keras_yolov7.data import plot_augmented_samples

    size = args.image_size or ARCHITECTURES[args.preset]["input_size"]
    stride = max(ARCHITECTURES[args.preset]["strides"])
    if size % stride:
        raise CLIError(
            f"--image-size {size} is not a multiple of {args.preset}'s largest stride {stride}"
        )
    output = pathlib.Path(
        args.output or f"runs/preview/{pathlib.Path(args.data).stem}_{args.split}.png"
    )
    if output.suffix.lower() != ".png":
        raise CLIError(f"--output must be a .png file, got {str(output)!r}")
    dataset = data_sources.read_split(
        args.data, args.split, args.image_dir, args.allow_outside_root
    )
    print(data_sources.describe(dataset, f"{args.split} ({args.data})"))
    batch = min(args.num_images, 16)
    if args.no_augment:
        samples = make_val_dataset(dataset, image_size=size, batch_size=batch, stride=stride)
    else:
        samples = make_train_dataset(
            dataset,
            image_size=size,
            batch_size=batch,
            augmentation=args.preset,
            seed=args.seed,
            stride=stride,
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    drawn = plot_augmented_samples(samples, output, dataset.class_names, num_images=args.num_images)
    print(f"{drawn} samples drawn to {output}")
