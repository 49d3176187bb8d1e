"""Ground-truth targets of the YOLOv7 loss: the eager validator and the in-graph sanitiser.

Targets are `{"boxes": (batch, max_boxes, 4), "labels": (batch, max_boxes)}`: xyxy boxes in pixels of
the network input image and integer class indices, padded to a fixed `max_boxes` with -1 (box and
label). `check_targets` rejects malformed data loudly before training; `sanitize_targets` is the
in-graph counterpart that masks whatever cannot be a box so the loss never sees NaN.
"""

import numpy as np
from keras import ops


def check_targets(boxes, labels, num_classes):
    """Raise a `ValueError` naming the first problem found in a batch of padded targets (eager, numpy).

    Args:
        boxes: `(batch, max_boxes, 4)` xyxy boxes in pixels, padded with -1.
        labels: `(batch, max_boxes)` class indices in `[0, num_classes)`, padded with -1.
        num_classes: number of classes of the model.

    Checks the shapes, that labels are whole numbers in `[-1, num_classes)` and that the coordinates
    of every real (label >= 0) box are finite. Empty or degenerate boxes are allowed: the loss
    ignores them like padding.
    """
    boxes = np.asarray(boxes)
    labels = np.asarray(labels)
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (batch, max_boxes, 4), got {boxes.shape}")
    if labels.shape != boxes.shape[:2]:
        raise ValueError(
            f"labels must have shape (batch, max_boxes) = {boxes.shape[:2]} to match boxes, "
            f"got {labels.shape}"
        )
    if labels.size == 0:
        return
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)):
            raise ValueError(f"labels contain {labels[~np.isfinite(labels)].flat[0]}; expected integers")
        fractional = labels != np.round(labels)
        if np.any(fractional):
            raise ValueError(f"labels contain {labels[fractional].flat[0]}; expected integers")
    if labels.max() >= num_classes:
        raise ValueError(
            f"labels contain {labels.max():g} but num_classes is {num_classes} "
            f"(expected 0..{num_classes - 1}, or -1 for padding)"
        )
    if labels.min() < -1:
        raise ValueError(f"labels contain {labels.min():g}; expected 0..{num_classes - 1}, or -1 for padding")
    real = labels >= 0
    bad = real[..., None] & ~np.isfinite(boxes)
    if np.any(bad):
        image, box, coordinate = np.argwhere(bad)[0]
        raise ValueError(
            f"boxes[{image}, {box}] (label {labels[image, box]:g}) has coordinate "
            f"{boxes[image, box, coordinate]} at index {coordinate}; expected finite pixel values"
        )


def sanitize_targets(boxes, labels, num_classes, image_height, image_width, clip=True):
    """Clip boxes to the image and flag the usable ones (keras.ops, fixed shapes).

    Args:
        boxes: `(batch, max_boxes, 4)` xyxy boxes in pixels, padded with -1.
        labels: `(batch, max_boxes)` class indices, padded with -1.
        num_classes: number of classes.
        image_height, image_width: size of the network input in pixels.
        clip: clip the boxes to the image (the official loss takes boxes as they come; its data
            pipeline clips them before).

    Returns:
        `(boxes, labels, valid)`: `(batch, max_boxes, 4)` float32 center_xywh boxes in pixels,
        clipped to the image; `(batch, max_boxes)` int32 labels; `(batch, max_boxes)` bool, true
        for boxes with a label in `[0, num_classes)`, finite coordinates and a positive width and
        height (after clipping). Rows that are not valid hold zeros, so nothing downstream sees NaN.
    """
    boxes = ops.cast(boxes, "float32")
    labels = ops.cast(labels, "int32")
    finite = ops.all(ops.isfinite(boxes), axis=-1)
    boxes = ops.where(finite[..., None], boxes, 0.0)
    if clip:
        limit = ops.cast(ops.stack([image_width, image_height, image_width, image_height]), "float32")
        boxes = ops.minimum(ops.maximum(boxes, 0.0), limit)
    wh = boxes[..., 2:4] - boxes[..., :2]
    valid = finite & (labels >= 0) & (labels < num_classes) & (wh[..., 0] > 0) & (wh[..., 1] > 0)
    center = (boxes[..., :2] + boxes[..., 2:4]) / 2.0
    boxes = ops.where(valid[..., None], ops.concatenate([center, wh], axis=-1), 0.0)
    labels = ops.where(valid, labels, 0)
    return boxes, labels, valid
