"""Training throughput (images/s) of YOLOv7 models on the current Keras backend.

One training step = forward + the OTA loss (lead-guided assignment) + backward + the official
optimizer (YOLOv7SGD: gradient accumulation to 64, so the weight update itself runs every 64 / batch
steps, as in the official train.py). Batches are synthetic images with 1-6 boxes each, repeated.
Prints the median step time over repeated steps after warm-up and the images/s it gives.

    KERAS_BACKEND=tensorflow python benchmarks/train_step.py --jit
    KERAS_BACKEND=jax python benchmarks/train_step.py
    KERAS_BACKEND=torch python benchmarks/train_step.py --cases yolov7_tiny:320:8

Official PyTorch code on the 2-core CPU of the project machines (spec): yolov7_tiny 640 batch 8
2.42 images/s, yolov7 640 batch 4 0.38 images/s.
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_yolov7 as kyv7  # noqa: E402
from keras_yolov7.datasets import make_synthetic_arrays  # noqa: E402
from keras_yolov7.training import make_training_setup  # noqa: E402

OFFICIAL_IMAGES_PER_SECOND = {("yolov7_tiny", 640, 8): 2.42, ("yolov7", 640, 4): 0.38}


def measure(preset, size, batch, jit, warmup, repeats):
    images, targets, names = make_synthetic_arrays(batch, image_size=size, seed=0)
    model = kyv7.YOLOv7ObjectDetector.from_preset(preset, num_classes=80)
    optimizer, _ = make_training_setup(model, epochs=300, steps_per_epoch=1000, batch_size=batch)
    model.compile(optimizer=optimizer, jit_compile=jit)
    for _ in range(warmup):
        model.train_on_batch(images, targets)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.train_on_batch(images, targets)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["yolov7_tiny:320:8", "yolov7_tiny:640:8", "yolov7:640:4"],
        help="preset:size:batch",
    )
    parser.add_argument("--jit", action="store_true", help="XLA on TensorFlow (JAX always jits; torch never)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    backend = keras.backend.backend()
    jit = {"tensorflow": args.jit, "jax": True, "torch": False}[backend]
    print(
        f"# keras {keras.__version__}, backend {backend}, jit_compile={jit}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}"
    )
    print(f"# median of {args.repeats} train steps after {args.warmup} warm-up steps")
    print("| preset | size | batch | step s | images/s | official images/s | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case in args.cases:
        preset, size, batch = case.split(":")
        size, batch = int(size), int(batch)
        step = measure(preset, size, batch, jit, args.warmup, args.repeats)
        rate = batch / step
        official = OFFICIAL_IMAGES_PER_SECOND.get((preset, size, batch))
        reference = f"{official:.2f} | {rate / official:.2f}x" if official else "- | -"
        print(f"| {preset} | {size} | {batch} | {step:.2f} | {rate:.2f} | {reference} |", flush=True)


if __name__ == "__main__":
    main()
