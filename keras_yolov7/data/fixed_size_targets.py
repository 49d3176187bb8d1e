"""Fixed-size training targets: truncation to max_boxes, box format, padding with -1."""

import keras
import numpy as np
import tensorflow as tf


def check_box_format(bounding_box_format):
    """Raises a ValueError naming the supported formats when Keras does not know the name."""
    try:
        keras.utils.bounding_boxes.convert_format(
            np.zeros((1, 4), "float32"), "xyxy", bounding_box_format, height=1, width=1
        )
    except ValueError as error:
        raise ValueError(f"bounding_box_format={bounding_box_format!r}: {error}") from error


def pad_targets(boxes, labels, max_boxes, image_size, bounding_box_format, on_truncate=None):
    """Turns a variable number of boxes into fixed-size targets.

    When there are more than `max_boxes` boxes, the `max_boxes` largest (by area) are kept, in
    their original order, and `on_truncate(n)` (a python callable, optional) is called once per
    truncated sample with the number of boxes before truncation.

    Args:
        boxes: `(n, 4)` float32 xyxy pixels of the `image_size x image_size` image.
        labels: `(n,)` int32.
        max_boxes: python int M.
        image_size: python int, needed by the relative (`rel_*`) formats.
        bounding_box_format: any Keras box format name ("xyxy", "center_xywh", "rel_yxyx", ...).
        on_truncate: python callable, run through `tf.py_function` only on truncation (rare), so
            the hot path stays in the graph.

    Returns:
        `(boxes (M, 4) float32 in bounding_box_format, labels (M,) int32)`, padded with -1.
    """
    count = tf.shape(boxes)[0]

    def truncate():
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = tf.sort(tf.math.top_k(area, k=max_boxes).indices)
        dependencies = []
        if on_truncate is not None:
            dependencies.append(tf.py_function(on_truncate, [count], tf.int32))
        with tf.control_dependencies(dependencies):
            return tf.gather(boxes, keep), tf.gather(labels, keep)

    boxes, labels = tf.cond(count > max_boxes, truncate, lambda: (boxes, labels))
    padding = max_boxes - tf.shape(boxes)[0]
    valid = tf.pad(tf.ones_like(labels, tf.bool), [[0, padding]])
    boxes = tf.pad(boxes, [[0, padding], [0, 0]])
    labels = tf.pad(tf.cast(labels, tf.int32), [[0, padding]], constant_values=-1)
    if bounding_box_format.lower() != "xyxy":
        boxes = keras.utils.bounding_boxes.convert_format(
            boxes, "xyxy", bounding_box_format, height=image_size, width=image_size
        )
    boxes = tf.where(valid[:, None], tf.cast(boxes, tf.float32), -1.0)
    return tf.ensure_shape(boxes, [max_boxes, 4]), tf.ensure_shape(labels, [max_boxes])
