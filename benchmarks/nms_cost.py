"""Cost of keras_yolov7.ops.non_max_suppression and postprocess on the current backend.

Prints milliseconds per call (median of repeats, after a warm-up/compile call):
- NMS alone at K candidates, all valid, boxes clustered around objects as a trained detector's
  candidates are: 30 objects (300 survivors are found early), and 3 objects of one class (few
  survivors, so every tile is visited: the worst case);
- the full postprocess (decode, top-k candidates, NMS) of a 640x640, 80-class yolov7 output in the
  evaluation setting (conf 0.001, IoU 0.65, multi-label) and the detection setting.

Run: KERAS_BACKEND=jax python benchmarks/nms_cost.py [--candidates 3000] [--batch 1]
Figures are not asserted anywhere; measure on a quiet machine.
"""

import argparse
import statistics
import time

import keras
import numpy as np

from keras_yolov7.ops import non_max_suppression
from keras_yolov7.ops import postprocess

ANCHORS = np.array(
    [[12, 16, 19, 36, 40, 28], [36, 75, 76, 55, 72, 146], [142, 110, 192, 243, 459, 401]],
    "float32",
).reshape(3, 3, 2)
STRIDES = (8, 16, 32)


def clustered_candidates(rng, batch, k, num_objects=30, num_classes=80, label_noise=0.2):
    """Jittered copies of a few object boxes, with decreasing scores, like real NMS input."""
    centres = rng.uniform(50, 590, (batch, num_objects, 2))
    sizes = rng.uniform(20, 200, (batch, num_objects, 2))
    owner = rng.integers(0, num_objects, (batch, k))
    c = np.take_along_axis(centres, owner[..., None], axis=1) + rng.normal(0, 6, (batch, k, 2))
    s = np.take_along_axis(sizes, owner[..., None], axis=1) * rng.uniform(0.8, 1.2, (batch, k, 2))
    boxes = np.concatenate([c - s / 2, c + s / 2], -1).astype("float32")
    scores = rng.uniform(0.001, 1, (batch, k)).astype("float32")
    labels = (owner % num_classes + (rng.uniform(size=(batch, k)) < label_noise)).astype("int32")
    return boxes, scores, labels


def realistic_raw(rng, batch, size=640, num_classes=80):
    """Raw logits whose sigmoid objectness is low almost everywhere, high on a few cells."""
    outputs = []
    for stride in STRIDES:
        n = size // stride
        raw = rng.normal(0, 1, (batch, n, n, 3, 5 + num_classes)).astype("float32")
        raw[..., 4] = rng.normal(-6, 2, (batch, n, n, 3))
        raw[..., 5:] = rng.normal(-4, 2, (batch, n, n, 3, num_classes))
        outputs.append(raw)
    return outputs


def compiled(fn):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return {"eager": fn, "xla": tf.function(fn, jit_compile=True)}
    if backend == "jax":
        import jax

        return {"jit": jax.jit(fn)}
    return {"eager": fn}


def timed(fn, args, repeats):
    keras.ops.convert_to_numpy(fn(*args)["num_detections"])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(fn(*args)["num_detections"])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    backend = keras.backend.backend()

    def nms(b, s, c):
        return non_max_suppression(b, s, c, iou_threshold=0.65, max_detections=300)

    cases = {"30 objects": (30, 0.2), "3 objects, 1 class": (3, 0.0)}
    for name, (num_objects, label_noise) in cases.items():
        inputs = clustered_candidates(
            rng, args.batch, args.candidates, num_objects, label_noise=label_noise
        )
        for mode, fn in compiled(nms).items():
            ms = timed(fn, inputs, args.repeats)
            print(
                f"{backend:10s} {mode:5s} nms {name} K={args.candidates} batch={args.batch}: "
                f"{ms:8.1f} ms"
            )

    raw = realistic_raw(rng, args.batch, args.size)
    settings = {
        "evaluation": {"confidence_threshold": 0.001, "iou_threshold": 0.65, "multi_label": True},
        "detection": {"confidence_threshold": 0.25, "iou_threshold": 0.45, "multi_label": False},
    }
    for name, kwargs in settings.items():

        def post(*levels, kwargs=kwargs):
            return postprocess(
                list(levels), ANCHORS, STRIDES, 80, pre_nms_top_k=args.candidates, **kwargs
            )

        for mode, fn in compiled(post).items():
            ms = timed(fn, raw, args.repeats)
            print(
                f"{backend:10s} {mode:5s} postprocess {name} {args.size}px K={args.candidates} "
                f"batch={args.batch}: {ms:8.1f} ms"
            )


if __name__ == "__main__":
    main()
