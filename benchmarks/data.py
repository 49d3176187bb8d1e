"""Throughput of the tf.data pipelines (images per second), printed as a table.

Each configuration is built once; the first pass over the data is a warm-up. In each following
pass the steady rate is timed from its first batch to its last, and the time to that first batch
(function instantiation and filling the shuffle buffer, paid once per epoch) is shown apart. The
record list is repeated up to `--min-images` so that small datasets give long enough passes. The
tf.data thread pool is limited to `--cores` threads to emulate a small training machine.

    KERAS_BACKEND=tensorflow python benchmarks/data.py                       # coco_tiny val, 640
    python benchmarks/data.py --data path/to/data.yaml --split train --cores 2 --passes 3
    python benchmarks/data.py --image-size 320 --passes 2                    # quick smoke run
"""

import argparse
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from keras_yolov7.data import AugmentationConfig  # noqa: E402
from keras_yolov7.data import make_train_dataset  # noqa: E402
from keras_yolov7.data import make_val_dataset  # noqa: E402
from keras_yolov7.data import read_dataset  # noqa: E402

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco_tiny"


def configurations():
    """(name, builder(dataset, size, batch, cores)) pairs, cheapest first."""

    def train(config):
        def build(dataset, size, batch, cores):
            return make_train_dataset(
                dataset, image_size=size, batch_size=batch, augmentation=config, seed=0
            ).with_options(_options(cores))

        return build

    def val(dataset, size, batch, cores):
        return make_val_dataset(dataset, image_size=size, batch_size=batch).with_options(
            _options(cores)
        )

    return [
        ("validation letterbox", val),
        ("train, no mosaic", train(AugmentationConfig(mosaic=0.0))),
        ("train, mosaic 4 only", train(AugmentationConfig(mosaic9=0.0, mixup=0.0))),
        (
            "train yolov7_tiny (mosaic, mixup .05)",
            train(AugmentationConfig.for_preset("yolov7_tiny")),
        ),
        ("train yolov7 P5 (mosaic 4/9, mixup .15)", train(AugmentationConfig.for_preset("yolov7"))),
        ("train, mixup every sample", train(AugmentationConfig(mixup=1.0))),
    ]


def _options(cores):
    options = tf.data.Options()
    options.threading.private_threadpool_size = cores
    return options


def measure(dataset, passes):
    """`(images, seconds, startup seconds)`: steady images and time over passes 2..N, and the
    mean time to the first batch of a pass."""
    for _ in dataset:
        pass
    images, seconds, startup = 0, 0.0, 0.0
    for _ in range(passes - 1):
        start = time.perf_counter()
        iterator = iter(dataset)
        next(iterator)
        first = time.perf_counter()
        startup += first - start
        for batch, _ in iterator:
            images += int(batch.shape[0])
        seconds += time.perf_counter() - first
    return images, seconds, startup / (passes - 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="dataset path (read_dataset)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cores", type=int, default=2, help="tf.data threads")
    parser.add_argument("--passes", type=int, default=3, help="passes per configuration (>= 2)")
    parser.add_argument("--min-images", type=int, default=512, help="repeat records up to this")
    args = parser.parse_args()
    if args.passes < 2:
        parser.error("--passes must be at least 2 (the first pass is a warm-up)")
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(args.cores)

    dataset = read_dataset(args.data, split=args.split)
    original = len(dataset)
    dataset.records = dataset.records * max(1, -(-args.min_images // original))
    print(
        f"{original} images from {args.data} [{args.split}] ({len(dataset)} per pass), "
        f"S={args.image_size}, "
        f"batch {args.batch_size}, {args.cores} tf.data threads, {args.passes - 1} timed passes\n"
    )
    header = ("pipeline", "images", "seconds", "images/s", "first batch s")
    print(
        f"| {header[0]:<42} | {header[1]:>6} | {header[2]:>7} | {header[3]:>8} | {header[4]:>13} |"
    )
    print(f"| {'-' * 42} | {'-' * 6}:| {'-' * 7}:| {'-' * 8}:| {'-' * 13}:|")
    for name, build in configurations():
        pipeline = build(dataset, args.image_size, args.batch_size, args.cores)
        images, seconds, startup = measure(pipeline, args.passes)
        rate = images / seconds
        print(
            f"| {name:<42} | {images:>6} | {seconds:>7.2f} | {rate:>8.1f} | {startup:>13.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
