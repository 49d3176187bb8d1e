"""Run a detector over validation batches and evaluate it: model -> postprocess -> COCO metrics."""

import os

import keras
import numpy as np

from keras_yolov7.evaluation.coco import evaluate_detections
from keras_yolov7.ops.postprocess import EVALUATION_SETTINGS
from keras_yolov7.ops.postprocess import postprocess


def compile_detect_function(model, **settings):
    """`fn(images, scale, pad, original_size) -> detections dict`, compiled for the backend.

    The function calls `model(images, training=False)` and `postprocess` with `settings`
    (keyword arguments of `keras_yolov7.ops.postprocess`; boxes come back in xyxy
    original-image pixels). TensorFlow runs it as a `tf.function`, JAX under `jax.jit` (through
    `model.stateless_call`), PyTorch eagerly without autograd: the backend-specific part of
    evaluation, kept here.
    """
    settings = {**settings, "bounding_box_format": "xyxy"}

    def detect(raw, scale, pad, original_size):
        return postprocess(
            raw,
            model.anchors,
            model.strides,
            model.num_classes,
            scale=scale,
            pad=pad,
            original_size=original_size,
            **settings,
        )

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def tf_forward(images, scale, pad, original_size):
            return detect(model(images, training=False), scale, pad, original_size)

        return tf_forward
    if backend == "jax":
        import jax

        @jax.jit
        def jax_forward(trainable, non_trainable, images, scale, pad, original_size):
            raw, _ = model.stateless_call(trainable, non_trainable, images, training=False)
            return detect(raw, scale, pad, original_size)

        def call_jax(images, scale, pad, original_size):
            return jax_forward(
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                images,
                scale,
                pad,
                original_size,
            )

        return call_jax
    if backend == "torch":
        import torch

        def torch_forward(images, scale, pad, original_size):
            with torch.no_grad():
                return detect(model(images, training=False), scale, pad, original_size)

        return torch_forward
    raise ValueError(f"unsupported Keras backend {backend!r}")


def _numpy_batches(data):
    """(images, targets) batches of NumPy arrays from a tf.data.Dataset or any iterable."""
    iterator = data.as_numpy_iterator() if hasattr(data, "as_numpy_iterator") else iter(data)
    for batch in iterator:
        images, targets = batch[0], batch[1]
        yield np.asarray(images), {k: np.asarray(v) for k, v in targets.items()}


def _num_batches(data):
    try:
        n = len(data)
    except TypeError:
        return None
    return n if n >= 0 else None


def _check_targets(targets):
    missing = [k for k in ("image_id", "scale", "pad", "original_size") if k not in targets]
    if missing:
        raise ValueError(
            f"validation targets lack {missing}; expected the validation pipeline's targets "
            "with image_id, scale, pad and original_size per image"
        )


def predict_dataset(model, data, verbose=1, detect_fn=None, on_batch=None, **settings):
    """Detections of a model over validation batches, in original-image pixels.

    Args:
        model: a `YOLOv7ObjectDetector` (anything with `anchors`, `strides`, `num_classes` whose call
            returns raw per-level outputs).
        data: batches `(images, targets)`: images `(batch, size, size, 3)` letterboxed RGB
            0..255; targets a dict with per-image `"image_id"` `(batch,)`, `"scale"`
            `(batch,)`, `"pad"` `(batch, 2)` `(x, y)` and `"original_size"` `(batch, 2)`
            `(height, width)` (a `tf.data.Dataset` or any iterable of such batches).
        verbose: show a progress bar.
        detect_fn: optional function from `compile_detect_function`, reused across calls so
            repeated evaluations compile once (the callback does this); `settings` then unused.
        on_batch: optional `fn(step, images, targets, detections)` called after each batch with
            NumPy arrays (`detections` as returned by `postprocess`, original pixels).
        **settings: `postprocess` keyword arguments; default `EVALUATION_SETTINGS`.

    Returns:
        list of dicts `{"image_id", "boxes" (N, 4) xyxy original pixels, "scores" (N,),
        "labels" (N,)}`, one per image, the input of `evaluate_detections`.
    """
    detect = detect_fn or compile_detect_function(model, **{**EVALUATION_SETTINGS, **settings})
    progress = keras.utils.Progbar(_num_batches(data), verbose=verbose, unit_name="batch")
    detections = []
    for step, (images, targets) in enumerate(_numpy_batches(data)):
        _check_targets(targets)
        out = detect(
            images,
            targets["scale"].astype("float32"),
            targets["pad"].astype("float32"),
            targets["original_size"].astype("int32"),
        )
        out = {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}
        if on_batch is not None:
            on_batch(step, images, targets, out)
        for i, image_id in enumerate(targets["image_id"].reshape(-1)):
            n = int(out["num_detections"][i])
            detections.append(
                {
                    "image_id": int(image_id),
                    "boxes": out["boxes"][i, :n],
                    "scores": out["confidence"][i, :n],
                    "labels": out["labels"][i, :n],
                }
            )
        progress.update(step + 1)
    return detections


def evaluate_model(
    model,
    data,
    dataset,
    verbose=1,
    plot_dir=None,
    num_plot_batches=3,
    coco_backend="auto",
    detect_fn=None,
    results_file=None,
    **settings,
):
    """COCO metrics of a model on a validation set (the official test.py procedure).

    Args:
        model: a `YOLOv7ObjectDetector`.
        data: validation batches (see `predict_dataset`).
        dataset: the `DetectionDataset` the batches were made from (ground truth in original
            pixels; its `category_ids` map labels back to COCO ids).
        verbose: 0 silent, 1 progress bar, 2 also COCO's tables.
        plot_dir: optional folder for PR_curve.png, F1_curve.png, confusion_matrix.png and
            val_batch{i}.png (labels beside predictions of the first `num_plot_batches`).
        coco_backend: see `evaluate_detections`.
        detect_fn: see `predict_dataset`.
        results_file: optional path; the detections are written there as COCO results JSON.
        **settings: `postprocess` keyword arguments; default `EVALUATION_SETTINGS`
            (conf 0.001, IoU 0.65, multi-label, 300 detections).

    Returns:
        the dict of `evaluate_detections` (`mAP`, `mAP50`, `mAP75`, ...).
    """
    plotted = []

    def keep_for_plots(step, images, targets, detections):
        if plot_dir is not None and step < num_plot_batches:
            plotted.append((images, targets, detections))

    detections = predict_dataset(
        model, data, verbose=verbose, detect_fn=detect_fn, on_batch=keep_for_plots, **settings
    )
    result = evaluate_detections(
        dataset,
        detections,
        results_file=results_file,
        coco_backend=coco_backend,
        verbose=verbose >= 2,
        plot_dir=plot_dir,
    )
    for step, (images, targets, detections) in enumerate(plotted):
        plot_batch(images, targets, detections, dataset.class_names, plot_dir, step)
    return result


def plot_batch(images, targets, detections, class_names, plot_dir, step):
    """Write val_batch{step}.png: labels beside predictions with confidence >= 0.25.

    As in the official test.py, the pictures show the evaluation detections (drawn from 0.25,
    the detection threshold); they are moved from original-image pixels back onto the
    letterboxed network input the images are.
    """
    from keras_yolov7.evaluation import plots

    scale = targets["scale"].reshape(-1, 1, 1)
    offset = np.tile(targets["pad"], 2)[:, None, :]
    found = detections["labels"][..., None] >= 0
    boxes = np.where(found, detections["boxes"] * scale + offset, -1.0)
    plots.plot_predictions(
        images,
        {"boxes": targets["boxes"], "labels": targets["labels"]},
        {**detections, "boxes": boxes},
        class_names,
        os.path.join(plot_dir, f"val_batch{step}.png"),
    )
