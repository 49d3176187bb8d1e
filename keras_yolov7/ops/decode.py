"""Decoding of raw YOLOv7 head outputs into boxes and scores (keras.ops only)."""

from keras import ops


def cell_grid(height, width, dtype="float32"):
    """Cell offsets `(1, height, width, 1, 2)` holding `(x, y)` of each cell's top-left corner."""
    ys = ops.cast(ops.arange(height), dtype)
    xs = ops.cast(ops.arange(width), dtype)
    gy, gx = ops.meshgrid(ys, xs, indexing="ij")
    return ops.reshape(ops.stack([gx, gy], axis=-1), (1, height, width, 1, 2))


def decode_level(raw, anchors, stride):
    """Decode one level of raw logits.

    Args:
        raw: `(batch, height, width, num_anchors, 5 + num_classes)` logits, channels
            `x, y, w, h, objectness, classes...`.
        anchors: `(num_anchors, 2)` anchor widths and heights in pixels.
        stride: the level's stride in pixels.

    Returns:
        `(batch, height, width, num_anchors, 5 + num_classes)`: center_xywh boxes in input-image
        pixels, then sigmoid objectness and sigmoid class probabilities.
    """
    raw = ops.convert_to_tensor(raw)
    shape = ops.shape(raw)
    s = ops.sigmoid(raw)
    grid = cell_grid(shape[1], shape[2], raw.dtype)
    xy = (s[..., :2] * 2.0 - 0.5 + grid) * stride
    wh = (s[..., 2:4] * 2.0) ** 2 * ops.cast(ops.convert_to_tensor(anchors), raw.dtype)
    return ops.concatenate([xy, wh, s[..., 4:]], axis=-1)


def decode_predictions(raw_outputs, anchors, strides):
    """Decode every lead level and flatten them into one list of candidates.

    Args:
        raw_outputs: list of per-level logits `(batch, H_l, W_l, num_anchors, 5 + num_classes)`.
            Extra entries beyond `len(strides)` (auxiliary levels) are ignored.
        anchors: `(num_levels, num_anchors, 2)` anchors in pixels.
        strides: per-level strides in pixels.

    Returns:
        `(batch, N, 5 + num_classes)` with N = sum of H_l * W_l * num_anchors: center_xywh boxes in
        pixels, objectness and class probabilities (both after sigmoid).
    """
    decoded = []
    for level, stride in enumerate(strides):
        d = decode_level(raw_outputs[level], anchors[level], stride)
        shape = ops.shape(d)
        decoded.append(ops.reshape(d, (shape[0], -1, shape[-1])))
    return ops.concatenate(decoded, axis=1)
