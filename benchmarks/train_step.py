"""Training throughput (images/s) of YOLOv7 models on the current Keras backend.

One training step = forward + the OTA loss (lead-guided assignment) + backward + the official
optimizer (YOLOv7SGD: gradient accumulation to 64, so the weight update itself runs every 64 / batch
steps, as in the official train.py). Batches are synthetic images with 1-6 boxes each, repeated.
Prints the median step time over repeated steps after warm-up and the images/s it gives.

With `--official-dir` (a checkout of the official repository) the official PyTorch step (forward,
ComputeLossOTA, backward, SGD accumulated to 64) is timed on the same batch in the same run, by
`official_timing.py` under `--official-python`, and the speed-up (official step time / ours)
printed. Without it the figures are absolute, with the CPU they were measured on.

    KERAS_BACKEND=tensorflow python benchmarks/train_step.py --cases yolov7_tiny:320:16
    KERAS_BACKEND=jax python benchmarks/train_step.py
    python benchmarks/train_step.py --official-dir ../yolov7 --official-python ../venv/bin/python
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import side_by_side  # noqa: E402

import keras_yolov7 as kyv7  # noqa: E402
from keras_yolov7.datasets import make_synthetic_arrays  # noqa: E402
from keras_yolov7.training import make_training_setup  # noqa: E402
from keras_yolov7.training import use_mixed_precision  # noqa: E402


def measure(preset, images, targets, jit, warmup, repeats):
    batch = images.shape[0]
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


def measure_official(args, preset, images, targets):
    with tempfile.TemporaryDirectory() as folder:
        inputs = os.path.join(folder, "batch.npz")
        np.savez(inputs, images=images, boxes=targets["boxes"], labels=targets["labels"])
        result = side_by_side.run_official(
            args, "train", side_by_side.official_cfg(preset), inputs, args.warmup, args.repeats
        )
    return result["step_s"][0], result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["yolov7_tiny:320:8", "yolov7_tiny:640:8", "yolov7:640:4"],
        help="preset:size:batch",
    )
    parser.add_argument("--jit", action="store_true", help="XLA on TensorFlow (JAX always jits; torch never)")
    parser.add_argument(
        "--mixed-precision",
        choices=("float32", "mixed_bfloat16", "mixed_float16"),
        default="float32",
        help="Keras dtype policy of the models built",
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    side_by_side.add_official_arguments(parser)
    args = parser.parse_args()
    side_by_side.check_official_arguments(parser, args)

    backend = keras.backend.backend()
    jit = {"tensorflow": args.jit, "jax": True, "torch": False}[backend]
    use_mixed_precision(args.mixed_precision)
    print(f"# {side_by_side.machine_line()}")
    print(f"# keras {keras.__version__}, backend {backend}, jit_compile={jit}, {args.mixed_precision}")
    print(f"# median of {args.repeats} train steps after {args.warmup} warm-up steps")
    if args.official_dir is None:
        print("| preset | size | batch | step s | images/s |")
        print("| --- | --- | --- | --- | --- |")
    else:
        print(f"# official: {args.official_dir}, run by {args.official_python}")
        print("| preset | size | batch | step s | images/s | official step s | official images/s | speed-up |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for case in args.cases:
        preset, size, batch = case.split(":")
        size, batch = int(size), int(batch)
        images, targets, _ = make_synthetic_arrays(batch, image_size=size, seed=0)
        step = measure(preset, images, targets, jit, args.warmup, args.repeats)
        row = f"| {preset} | {size} | {batch} | {step:.3f} | {batch / step:.2f} |"
        if args.official_dir is not None:
            official, _ = measure_official(args, preset, images, targets)
            row += f" {official:.3f} | {batch / official:.2f} | {official / step:.2f}x |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
