"""Time of YOLOv7Loss (value and gradient w.r.t. the raw outputs), compiled where the backend allows.

Random logits and targets shaped like training: `--preset yolov7_tiny --size 640 --batch 8
--max-boxes 100` by default. TensorFlow runs under tf.function(jit_compile=True), JAX under jax.jit,
torch eagerly. Prints seconds per call; asserts nothing.

    KERAS_BACKEND=jax python benchmarks/loss_speed.py --preset yolov7_tiny --batch 8
"""

import argparse
import time

import keras
import numpy as np

from keras_yolov7.losses import OFFICIAL_GAINS
from keras_yolov7.losses import YOLOv7Loss
from keras_yolov7.models.configs import ARCHITECTURES


def random_inputs(arch, num_classes, size, batch, max_boxes, boxes_per_image, seed=0):
    rng = np.random.default_rng(seed)
    strides = arch["strides"]
    levels = len(strides) * (2 if arch.get("aux") else 1)
    preds = [
        rng.normal(0.0, 1.5, (batch, size // s, size // s, 3, 5 + num_classes)).astype("float32")
        for s in list(strides) * (levels // len(strides))
    ]
    boxes = -np.ones((batch, max_boxes, 4), "float32")
    labels = -np.ones((batch, max_boxes), "int32")
    n = min(boxes_per_image, max_boxes)
    centre = rng.uniform(0.1, 0.9, (batch, n, 2)) * size
    wh = rng.uniform(0.02, 0.4, (batch, n, 2)) * size
    boxes[:, :n] = np.concatenate([centre - wh / 2, centre + wh / 2], -1)
    labels[:, :n] = rng.integers(0, num_classes, (batch, n))
    return preds, {"boxes": boxes, "labels": labels}


def compiled_step(loss):
    """A function (preds, y_true) -> (loss value, gradients w.r.t. preds), compiled if possible."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(preds, y_true):
            with tf.GradientTape() as tape:
                tape.watch(preds)
                value = loss.compute_components(y_true, preds)["loss"]
            return value, tape.gradient(value, preds)

        return step
    if backend == "jax":
        import jax

        return jax.jit(
            jax.value_and_grad(lambda preds, y_true: loss.compute_components(y_true, preds)["loss"])
        )

    def step(preds, y_true):
        preds = [p.detach().requires_grad_() for p in preds]
        value = loss.compute_components(y_true, preds)["loss"]
        value.backward()
        return value, [p.grad for p in preds]

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="yolov7_tiny", choices=sorted(ARCHITECTURES))
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-boxes", type=int, default=100)
    parser.add_argument("--boxes-per-image", type=int, default=30)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    arch = ARCHITECTURES[args.preset]
    family = "tiny" if args.preset == "yolov7_tiny" else ("p6" if arch.get("aux") else "p5")
    loss = YOLOv7Loss(args.classes, arch["anchors"], arch["strides"], **OFFICIAL_GAINS[family])
    preds, y_true = random_inputs(
        arch, args.classes, args.size, args.batch, args.max_boxes, args.boxes_per_image
    )
    # Backend tensors, as inside a training step (numpy arguments would add a copy per call).
    preds = [keras.ops.convert_to_tensor(p) for p in preds]
    y_true = {k: keras.ops.convert_to_tensor(v) for k, v in y_true.items()}
    step = compiled_step(loss)
    start = time.perf_counter()
    value, _ = step(preds, y_true)
    float(value)
    first = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        value, grads = step(preds, y_true)
        float(value)
        times.append(time.perf_counter() - start)
    print(
        f"{keras.backend.backend()} {args.preset} {args.size}px batch {args.batch} "
        f"max_boxes {args.max_boxes} ({args.boxes_per_image} boxes/image): loss {float(value):.4f}, "
        f"first call {first:.2f} s, "
        f"then median {np.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f} ms) per loss + gradient"
    )


if __name__ == "__main__":
    main()
