"""Mosaic layouts (4 and 9 images, as the official loader places them) and the canvas composer.

Tiles are images resized so their longer side is the network size S and stored top-left in an
`(S, S, 3)` array (the rest is padding), so a pool of them stacks into one tensor. A layout gives
each tile's top-left corner on a canvas; `compose` pastes the tiles there and fills the rest with
114. Only a window of the canvas is built: the part the following warp actually samples.
"""

import tensorflow as tf

from keras_yolov7.data.decode import PAD_VALUE


def mosaic4_offsets(sizes, center):
    """Top-left corners of 4 tiles meeting at `center` on a `2S x 2S` canvas.

    Tile 0 ends at the centre (top-left quadrant), tile 1 starts right of it, tile 2 below it,
    tile 3 at it; the official loader draws the centre from U(S/2, 3S/2).

    Args:
        sizes: `(4, 2)` int32 `(height, width)` of each tile's content.
        center: `(2,)` int32 `(x, y)` on the canvas.

    Returns:
        `(4, 2)` int32 `(x, y)` corners (may be negative: the composer clips).
    """
    h, w = sizes[:, 0], sizes[:, 1]
    xc, yc = center[0], center[1]
    return tf.stack(
        [
            tf.stack([xc - w[0], yc - h[0]]),
            tf.stack([xc, yc - h[1]]),
            tf.stack([xc - w[2], yc]),
            tf.stack([xc, yc]),
        ]
    )


def mosaic9_offsets(sizes, size, window):
    """Top-left corners of 9 tiles around a centre tile, shifted into a `2S x 2S` window.

    The official 9-mosaic places tile 0 at `(S, S)` on a `3S x 3S` canvas and the others around
    it clockwise from the top (top, top-right, right, bottom-right, bottom, bottom-left, left,
    top-left), each touching its predecessor; then it keeps the `2S x 2S` window starting at
    `window` (drawn from U(0, S)).

    Args:
        sizes: `(9, 2)` int32 `(height, width)` of each tile's content.
        size: S (python int).
        window: `(2,)` int32 `(x, y)` top-left corner of the kept window on the `3S` canvas.

    Returns:
        `(9, 2)` int32 `(x, y)` corners in window coordinates.
    """
    h, w = tf.unstack(sizes[:, 0]), tf.unstack(sizes[:, 1])
    s = size
    corners = [
        (s, s),
        (s, s - h[1]),
        (s + w[1], s - h[2]),
        (s + w[0], s),
        (s + w[0], s + h[3]),
        (s + w[0] - w[5], s + h[0]),
        (s + w[0] - w[5] - w[6], s + h[0]),
        (s - w[7], s + h[0] - h[7]),
        (s - w[8], s + h[0] - h[7] - h[8]),
    ]
    corners = tf.stack([tf.stack([tf.cast(x, tf.int32), tf.cast(y, tf.int32)]) for x, y in corners])
    return corners - window[None, :]


def compose(tiles, sizes, indices, offsets, window):
    """Pastes non-overlapping tiles on a canvas of 114 and returns one window of it.

    Args:
        tiles: `(pool, S, S, 3)` uint8, content top-left.
        sizes: `(pool, 2)` int32 `(height, width)` of each tile's content.
        indices: `(n,)` int32, the tiles to paste.
        offsets: `(n, 2)` int32 `(x, y)` canvas corner of each pasted tile.
        window: `(4,)` int32 `(x0, y0, x1, y1)`, the canvas rectangle to build; it must lie inside
            the canvas so that pixels outside every tile but inside the canvas read 114.

    Returns:
        `(y1 - y0, x1 - x0, 3)` uint8.
    """
    x0, y0, x1, y1 = tf.unstack(window)
    height, width = y1 - y0, x1 - x0

    # The tiles never overlap, so adding each tile minus 114 (wrapping uint8 arithmetic) onto
    # zeros and adding 114 back reproduces every tile pixel exactly and 114 elsewhere.
    def paste(k, canvas):
        index = indices[k]
        ox, oy = offsets[k, 0], offsets[k, 1]
        left = tf.clip_by_value(ox, x0, x1)
        right = tf.clip_by_value(ox + sizes[index, 1], left, x1)
        top = tf.clip_by_value(oy, y0, y1)
        bottom = tf.clip_by_value(oy + sizes[index, 0], top, y1)
        crop = tiles[index, top - oy : bottom - oy, left - ox : right - ox]
        crop = crop - tf.constant(PAD_VALUE, tf.uint8)
        return k + 1, canvas + _place(crop, top - y0, left - x0, height, width)

    canvas = tf.zeros(tf.stack([height, width, 3]), tf.uint8)
    _, canvas = tf.while_loop(
        lambda k, _: k < tf.shape(indices)[0], paste, (tf.constant(0), canvas)
    )
    return canvas + tf.constant(PAD_VALUE, tf.uint8)


def shift_boxes(boxes, labels, counts, indices, offsets, canvas_size):
    """Moves each pasted tile's boxes onto the canvas and clips them to it.

    Args:
        boxes: `(pool, K, 4)` float32 xyxy tile pixels (rows past `counts` are padding).
        labels: `(pool, K)` int32.
        counts: `(pool,)` int32 boxes per tile.
        indices, offsets: as for `compose`.
        canvas_size: the canvas side in pixels (scalar).

    Returns:
        `(boxes (m, 4) float32 xyxy canvas pixels, labels (m,) int32)`.
    """
    moved = tf.gather(boxes, indices) + tf.cast(tf.tile(offsets, [1, 2]), tf.float32)[:, None, :]
    valid = tf.range(tf.shape(boxes)[1])[None, :] < tf.gather(counts, indices)[:, None]
    moved = tf.clip_by_value(tf.boolean_mask(moved, valid), 0.0, tf.cast(canvas_size, tf.float32))
    return moved, tf.boolean_mask(tf.gather(labels, indices), valid)


def _place(crop, top, left, height, width):
    """`crop` at (top, left) in a `(height, width, 3)` array of zeros (fill + concat: no tf.pad,
    which is several times slower on uint8 images)."""
    crop_height, crop_width = tf.shape(crop)[0], tf.shape(crop)[1]

    def zeros(h, w):
        return tf.zeros(tf.stack([h, w, 3]), tf.uint8)

    band = tf.concat(
        [zeros(crop_height, left), crop, zeros(crop_height, width - left - crop_width)], axis=1
    )
    return tf.concat([zeros(top, width), band, zeros(height - top - crop_height, width)], axis=0)
