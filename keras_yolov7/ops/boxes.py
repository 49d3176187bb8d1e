"""Box arithmetic in keras.ops: format changes, pairwise IoU and the CIoU of the YOLOv7 box loss.

Formats used inside the package (the public API accepts every Keras format through
`keras.utils.bounding_boxes.convert_format`):

- `xyxy`: `(x_min, y_min, x_max, y_max)`.
- `center_xywh`: `(x_center, y_center, width, height)`.
"""

import math

from keras import ops


def center_xywh_to_xyxy(boxes):
    """`(..., 4)` center_xywh -> `(..., 4)` xyxy, same units."""
    xy, wh = boxes[..., :2], boxes[..., 2:4]
    return ops.concatenate([xy - wh / 2.0, xy + wh / 2.0], axis=-1)


def xyxy_to_center_xywh(boxes):
    """`(..., 4)` xyxy -> `(..., 4)` center_xywh, same units."""
    lo, hi = boxes[..., :2], boxes[..., 2:4]
    return ops.concatenate([(lo + hi) / 2.0, hi - lo], axis=-1)


def box_area(boxes):
    """Area of `(..., 4)` xyxy boxes; negative extents count as zero."""
    wh = ops.maximum(boxes[..., 2:4] - boxes[..., :2], 0.0)
    return wh[..., 0] * wh[..., 1]


def pairwise_iou(boxes1, boxes2):
    """IoU of every pair: `(..., N, 4)` x `(..., M, 4)` xyxy -> `(..., N, M)`.

    Plain IoU as in the official OTA assigner (no epsilon): an empty union gives NaN, so
    callers mask padded boxes before or after.
    """
    b1 = ops.expand_dims(boxes1, -2)
    b2 = ops.expand_dims(boxes2, -3)
    lo = ops.maximum(b1[..., :2], b2[..., :2])
    hi = ops.minimum(b1[..., 2:4], b2[..., 2:4])
    wh = ops.maximum(hi - lo, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = ops.expand_dims(box_area(boxes1), -1) + ops.expand_dims(box_area(boxes2), -2) - inter
    return inter / union


def complete_iou(boxes1, boxes2, eps=1e-7):
    """Element-wise CIoU of `(..., 4)` center_xywh boxes (arXiv 1911.08287), as YOLOv7 computes it.

    The aspect-ratio trade-off `alpha` carries no gradient, and `eps` enters the heights, the union
    and the enclosing diagonal exactly where the official code puts it, so losses match to float
    precision.
    """
    x1a, y1a = boxes1[..., 0] - boxes1[..., 2] / 2, boxes1[..., 1] - boxes1[..., 3] / 2
    x2a, y2a = boxes1[..., 0] + boxes1[..., 2] / 2, boxes1[..., 1] + boxes1[..., 3] / 2
    x1b, y1b = boxes2[..., 0] - boxes2[..., 2] / 2, boxes2[..., 1] - boxes2[..., 3] / 2
    x2b, y2b = boxes2[..., 0] + boxes2[..., 2] / 2, boxes2[..., 1] + boxes2[..., 3] / 2

    inter = ops.maximum(ops.minimum(x2a, x2b) - ops.maximum(x1a, x1b), 0.0) * ops.maximum(
        ops.minimum(y2a, y2b) - ops.maximum(y1a, y1b), 0.0
    )
    wa, ha = x2a - x1a, y2a - y1a + eps
    wb, hb = x2b - x1b, y2b - y1b + eps
    union = wa * ha + wb * hb - inter + eps
    iou = inter / union

    cw = ops.maximum(x2a, x2b) - ops.minimum(x1a, x1b)
    ch = ops.maximum(y2a, y2b) - ops.minimum(y1a, y1b)
    diag2 = cw**2 + ch**2 + eps
    rho2 = ((x1b + x2b - x1a - x2a) ** 2 + (y1b + y2b - y1a - y2a) ** 2) / 4
    v = (4 / math.pi**2) * (ops.arctan(wb / (hb + eps)) - ops.arctan(wa / (ha + eps))) ** 2
    alpha = ops.stop_gradient(v / (v - iou + (1 + eps)))
    return iou - (rho2 / diag2 + v * alpha)
