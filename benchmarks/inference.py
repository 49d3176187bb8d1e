"""Batch-1 inference latency of YOLOv7 models, unfused vs fused, on the current Keras backend.

Measures the raw forward pass (no decoding, no NMS), compiled the way each backend runs fastest:
TensorFlow through tf.function (graph; `--jit` adds XLA), JAX through jax.jit, PyTorch eagerly
under torch.no_grad(). Prints the median and the 10th/90th percentiles of repeated runs after a
warm-up.

    KERAS_BACKEND=tensorflow python benchmarks/inference.py
    KERAS_BACKEND=jax python benchmarks/inference.py --presets yolov7_tiny --sizes 640
    python benchmarks/inference.py --official-dir ../yolov7 --official-python ../venv/bin/python

With `--official-dir` (a checkout of the official repository) the official fused model is timed
the same way (eval mode, batch 1, torch.no_grad()) in the same run, by `official_timing.py` under
`--official-python`, and the speed-up (official median / ours, fused) printed. Without it the
figures are absolute, with the CPU they were measured on.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import side_by_side  # noqa: E402

import keras_yolov7 as kyv7  # noqa: E402


def compiled_forward(model, jit):
    """A function images -> raw outputs, compiled for the current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x: model(x, training=False), jit_compile=jit)
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def forward(x):
            return model.stateless_call(trainable, non_trainable, x, training=False)[0]

        return forward
    if backend == "torch":
        import torch

        def forward(x):
            with torch.no_grad():
                return model(x, training=False)

        return forward
    raise ValueError(f"unsupported backend {backend!r}")


def block(outputs):
    """Wait for asynchronous backends (JAX) to finish."""
    for out in outputs:
        if hasattr(out, "block_until_ready"):
            out.block_until_ready()
        else:
            keras.ops.convert_to_numpy(out)


def measure(forward, images, warmup, repeats):
    for _ in range(warmup):
        block(forward(images))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(forward(images))
        times.append((time.perf_counter() - start) * 1000)
    return np.percentile(times, [50, 10, 90])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["yolov7_tiny", "yolov7"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[640, 320])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--jit", action="store_true", help="XLA-compile on TensorFlow")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    side_by_side.add_official_arguments(parser)
    args = parser.parse_args()
    side_by_side.check_official_arguments(parser, args)

    backend = keras.backend.backend()
    if args.threads and backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.threads and backend == "torch":
        import torch

        torch.set_num_threads(args.threads)

    mode = {"tensorflow": "tf.function" + (" + XLA" if args.jit else ""), "jax": "jax.jit", "torch": "eager"}[backend]
    print(f"# {side_by_side.machine_line()}")
    print(f"# keras {keras.__version__}, backend {backend} ({mode})")
    print(f"# batch 1, median of {args.repeats} runs after {args.warmup} warm-up runs; raw forward pass")
    header = "| preset | size | form | median ms | p10 ms | p90 ms |"
    if args.official_dir is not None:
        print(f"# official (fused): {args.official_dir}, run by {args.official_python}")
        header += " official median ms | official p10 ms | official p90 ms | speed-up |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    rng = np.random.default_rng(0)
    for preset in args.presets:
        model = kyv7.YOLOv7ObjectDetector.from_preset(preset, num_classes=80)
        fused = model.get_fused()
        for size in args.sizes:
            images = rng.uniform(0, 255, (1, size, size, 3)).astype("float32")
            for form, net in (("unfused", model), ("fused", fused)):
                median, p10, p90 = measure(compiled_forward(net, args.jit), images, args.warmup, args.repeats)
                row = f"| {preset} | {size} | {form} | {median:.1f} | {p10:.1f} | {p90:.1f} |"
                if args.official_dir is not None:
                    row += " - | - | - | - |" if form == "unfused" else official_cells(args, preset, size, median)
                print(row, flush=True)


def official_cells(args, preset, size, median):
    result = side_by_side.run_official(
        args, "inference", side_by_side.official_cfg(preset), size, args.warmup, args.repeats
    )
    official, p10, p90 = result["ms"]
    return f" {official:.1f} | {p10:.1f} | {p90:.1f} | {official / median:.2f}x |"


if __name__ == "__main__":
    main()
