"""Starting a detector from another one's weights (fine-tuning on another class count)."""

import keras
import numpy as np


def transfer_weights(source, target):
    """Copies `source`'s weights into `target`, a detector of the same architecture.

    Weights whose path and shape match are copied whole (the official `intersect_dicts`). With
    another class count, the head weights that hold per-anchor outputs (the lead and auxiliary
    convs' kernels and biases, the implicit multiply vectors) keep their box and objectness
    channels from `source`; only the class channels keep `target`'s fresh initialisation.

    Returns:
        `(copied, total)`: how many of `target`'s weights were copied whole or in part, and how
        many it has.
    """
    by_path = {weight.path: weight for weight in source.weights}
    copied = 0
    for weight in target.weights:
        match = by_path.get(weight.path)
        if match is None:
            continue
        if tuple(match.shape) == tuple(weight.shape):
            weight.assign(keras.ops.convert_to_numpy(match))
            copied += 1
        elif _is_per_anchor(match, weight, source, target):
            weight.assign(_merge_box_channels(match, weight, source, target))
            copied += 1
    return copied, len(target.weights)


def _is_per_anchor(match, weight, source, target):
    anchors = len(source.anchors[0])
    old, new = anchors * (source.num_classes + 5), anchors * (target.num_classes + 5)
    return (
        tuple(match.shape[:-1]) == tuple(weight.shape[:-1])
        and match.shape[-1] == old
        and weight.shape[-1] == new
    )


def _merge_box_channels(match, weight, source, target):
    """`weight` with the box and objectness channels (x, y, w, h, obj of every anchor) of
    `match`; the last axis is `anchor * (5 + num_classes) + k`."""
    anchors = len(source.anchors[0])
    old = np.asarray(keras.ops.convert_to_numpy(match))
    new = np.array(keras.ops.convert_to_numpy(weight))
    old = old.reshape(old.shape[:-1] + (anchors, source.num_classes + 5))
    merged = new.reshape(new.shape[:-1] + (anchors, target.num_classes + 5))
    merged[..., :5] = old[..., :5]
    return merged.reshape(new.shape)
