"""In-pipeline checks of training targets, so bad labels fail loudly instead of training on garbage."""

import tensorflow as tf


def _targets(element):
    if isinstance(element, dict):
        return element.get("bounding_boxes")
    if isinstance(element, (tuple, list)) and len(element) >= 2:
        return element[1]
    return None


def validate_targets(dataset, num_classes):
    """Adds checks to a tf.data dataset of `(images, y)` (or `{"images", "bounding_boxes"}`) batches.

    Iterating raises `tf.errors.InvalidArgumentError` with a message naming the problem when a label
    is `>= num_classes` or `< -1`, or when a real box (label >= 0) has a NaN or infinite coordinate.
    Elements without targets pass through unchanged.

    Args:
        dataset: a `tf.data.Dataset` of batches whose targets are `{"boxes": (batch, M, 4),
            "labels" (or "classes"): (batch, M)}`, padded with -1.
        num_classes: the model's number of classes.
    """
    targets = _targets(dataset.element_spec)
    if not isinstance(targets, dict) or "boxes" not in targets:
        return dataset
    label_key = "labels" if "labels" in targets else "classes"

    def check(*element):
        element = element[0] if len(element) == 1 else element
        y = _targets(element)
        labels = tf.cast(y[label_key], tf.int64)
        boxes = tf.cast(y["boxes"], tf.float32)
        real = labels >= 0
        finite = tf.reduce_all(tf.math.is_finite(boxes), axis=-1)
        checks = [
            tf.debugging.assert_less(
                labels,
                tf.constant(num_classes, tf.int64),
                message=f"labels must be < num_classes={num_classes} (or -1 for padding)",
            ),
            tf.debugging.assert_greater_equal(
                labels,
                tf.constant(-1, tf.int64),
                message=f"labels must be in 0..{num_classes - 1}, or -1 for padding",
            ),
            tf.debugging.Assert(
                tf.reduce_all(finite | ~real),
                ["boxes of real labels (>= 0) must be finite pixel values; got NaN or inf in", boxes],
                summarize=8,
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.nest.map_structure(tf.identity, element)

    return dataset.map(check, num_parallel_calls=tf.data.AUTOTUNE)
