"""Random perspective (the official random_perspective): matrix, image warp, box warp, box filter.

The transform maps canvas pixels to output pixels: `M = T @ Sh @ R @ P @ C` with C moving the
canvas centre to the origin, P a random perspective, R a random rotation and scale, Sh a random
shear and T a random translation to `(0.5 +/- translate) * out_size`. Images are warped bilinearly
with border value 114; boxes by their four corners, then clipped, then filtered by the official
box candidate rule.
"""

import math

import tensorflow as tf

from keras_yolov7.data.decode import PAD_VALUE

# Pixels of margin around the sampled canvas area, so that bilinear sampling at the window edge
# reads real canvas pixels rather than the fill value.
_WINDOW_MARGIN = 2


def random_matrix(seed, canvas_size, out_size, config):
    """Draws the 3x3 canvas -> output transform and its scale factor.

    Args:
        seed: `(2,)` int stateless seed.
        canvas_size: canvas side in pixels (2S for a mosaic, S for one letterboxed image;
            python int or scalar tensor).
        out_size: output side S in pixels (python int).
        config: an `AugmentationConfig` (degrees, translate, scale, shear, perspective).

    Returns:
        `(matrix (3, 3) float32, scale scalar float32)`.
    """
    u = tf.random.stateless_uniform([8], seed)  # U(0, 1)

    def symmetric(value, limit):  # U(-limit, limit)
        return (2.0 * value - 1.0) * limit

    perspective_x = symmetric(u[0], config.perspective)
    perspective_y = symmetric(u[1], config.perspective)
    angle = symmetric(u[2], config.degrees * math.pi / 180.0)
    scale = (1.0 - config.scale) + u[3] * (0.1 + 2.0 * config.scale)  # U(1 - scale, 1.1 + scale)
    shear_x = tf.tan(symmetric(u[4], config.shear * math.pi / 180.0))
    shear_y = tf.tan(symmetric(u[5], config.shear * math.pi / 180.0))
    translate = (0.5 + symmetric(u[6:8], config.translate)) * float(out_size)

    one, zero = tf.constant(1.0), tf.constant(0.0)
    half = tf.cast(canvas_size, tf.float32) / 2.0
    center = tf.stack([[one, zero, -half], [zero, one, -half], [zero, zero, one]])
    perspective = tf.stack(
        [[one, zero, zero], [zero, one, zero], [perspective_x, perspective_y, one]]
    )
    # cv2.getRotationMatrix2D convention: a positive angle turns the image counter-clockwise.
    a, b = scale * tf.cos(angle), scale * tf.sin(angle)
    rotation = tf.stack([[a, b, zero], [-b, a, zero], [zero, zero, one]])
    shear = tf.stack([[one, shear_x, zero], [shear_y, one, zero], [zero, zero, one]])
    translation = tf.stack(
        [[one, zero, translate[0]], [zero, one, translate[1]], [zero, zero, one]]
    )
    matrix = translation @ shear @ rotation @ perspective @ center
    return matrix, scale


def sampled_window(matrix, canvas_size, out_size):
    """The canvas rectangle the warp reads: `(4,)` int32 `(x0, y0, x1, y1)` inside the canvas.

    It bounds the pre-image of the output square (exact for affine and projective maps), widened
    by a small margin for bilinear sampling, and is never empty because the canvas centre always
    lands inside the output.
    """
    corners = tf.constant(
        [[0.0, 0.0, 1.0], [out_size, 0.0, 1.0], [0.0, out_size, 1.0], [out_size, out_size, 1.0]]
    )
    points = corners @ tf.transpose(tf.linalg.inv(matrix))
    points = points[:, :2] / points[:, 2:3]
    low = tf.floor(tf.reduce_min(points, axis=0)) - _WINDOW_MARGIN
    high = tf.math.ceil(tf.reduce_max(points, axis=0)) + _WINDOW_MARGIN + 1
    canvas_size = tf.cast(canvas_size, tf.float32)
    low = tf.clip_by_value(low, 0.0, canvas_size)
    high = tf.clip_by_value(high, low, canvas_size)
    return tf.cast(tf.concat([low, high], axis=0), tf.int32)


def warp_image(image, matrix, window, out_size, projective=False):
    """Warps a canvas window into the `(out_size, out_size, 3)` uint8 output.

    Args:
        image: `(h, w, 3)` uint8, the canvas pixels inside `window`.
        matrix: `(3, 3)` canvas -> output transform.
        window: `(4,)` int32 `(x0, y0, x1, y1)`: where `image` sits on the canvas.
        out_size: output side in pixels.
        projective: python bool, True when the matrix has a perspective part. Output pixels
            beyond the horizon (no pre-image on the canvas) then get the border value:
            ImageProjectiveTransformV3 writes 0 where the projective denominator nears zero.

    Bilinear, border value 114, pixel indices as coordinates (as cv2.warpAffine /
    cv2.warpPerspective do).
    """
    offset = tf.cast(window[:2], tf.float32)
    shift = tf.stack(
        [
            tf.stack([1.0, 0.0, offset[0]]),
            tf.stack([0.0, 1.0, offset[1]]),
            tf.constant([0.0, 0.0, 1.0]),
        ]
    )
    inverse = tf.linalg.inv(matrix @ shift)  # output pixel -> window pixel
    inverse = inverse / inverse[2, 2]
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=tf.reshape(inverse, [9])[None, :8],
        output_shape=tf.constant([out_size, out_size]),
        fill_value=tf.constant(float(PAD_VALUE)),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]
    if projective:
        grid = tf.cast(tf.range(out_size), tf.float32)
        x, y = grid[None, :], grid[:, None]
        denominator = inverse[2, 0] * x + inverse[2, 1] * y + 1.0
        source_x = (inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]) / denominator
        source_y = (inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]) / denominator
        size = tf.cast(tf.shape(image), tf.float32)
        valid = (
            (denominator > 0)
            & (source_x > -1.0)
            & (source_y > -1.0)
            & (source_x < size[1])
            & (source_y < size[0])
        )
        warped = tf.where(valid[..., None], warped, tf.constant(PAD_VALUE, tf.uint8))
    return tf.ensure_shape(warped, [out_size, out_size, 3])


def warp_boxes(boxes, matrix, out_size):
    """Maps `(n, 4)` xyxy canvas boxes through `matrix` by their corners; clips to the output.

    Returns:
        `(n, 4)` float32 xyxy output pixels (the bounding box of the warped corners).
    """
    x1, y1, x2, y2 = tf.unstack(boxes, axis=1)
    corners = tf.stack(
        [
            tf.stack([x1, y1], 1),
            tf.stack([x2, y2], 1),
            tf.stack([x1, y2], 1),
            tf.stack([x2, y1], 1),
        ],
        1,
    )  # (n, 4 corners, 2)
    homogeneous = tf.concat([corners, tf.ones_like(corners[..., :1])], axis=-1)
    mapped = homogeneous @ tf.transpose(matrix)
    mapped = mapped[..., :2] / mapped[..., 2:3]
    warped = tf.concat([tf.reduce_min(mapped, axis=1), tf.reduce_max(mapped, axis=1)], axis=1)
    return tf.clip_by_value(warped, 0.0, float(out_size))


def box_candidates(before, after, config):
    """The official box filter: which warped boxes stay training targets.

    A box stays when its warped width and height exceed `config.box_min_size` pixels, it keeps
    more than `config.box_min_area_ratio` of its area before the warp (times the warp's scale
    squared: `before` should already be multiplied by the scale), and its aspect ratio (either
    way) is below `config.box_max_aspect_ratio`.

    Args:
        before: `(n, 4)` xyxy boxes before the warp, multiplied by the warp's scale.
        after: `(n, 4)` xyxy boxes after the warp and clipping.

    Returns:
        `(n,)` bool.
    """
    eps = 1e-16
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = tf.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (
        (w2 > config.box_min_size)
        & (h2 > config.box_min_size)
        & (w2 * h2 / (w1 * h1 + eps) > config.box_min_area_ratio)
        & (aspect < config.box_max_aspect_ratio)
    )
