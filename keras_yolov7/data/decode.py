"""Image decoding and resizing inside the TF graph (tf.data map functions)."""

import tensorflow as tf

PAD_VALUE = 114


def decode_image(path, orientation):
    """Reads and decodes an image file to RGB, applying its EXIF orientation.

    Grayscale, palette and RGBA files become RGB (alpha dropped); 16-bit files are scaled to
    8 bits. The readers have already checked at read time that every file decodes.

    Args:
        path: scalar string tensor.
        orientation: scalar int tensor, EXIF code 1..8 (1 = as stored).

    Returns:
        `(height, width, 3)` uint8.
    """
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    return apply_orientation(image, orientation)


def apply_orientation(image, orientation):
    """Turns `(height, width, 3)` stored pixels upright for an EXIF orientation code 1..8.

    Same result as `PIL.ImageOps.exif_transpose`.
    """
    branches = [
        lambda: image,
        lambda: image[:, ::-1],
        lambda: image[::-1, ::-1],
        lambda: image[::-1],
        lambda: tf.transpose(image, [1, 0, 2]),
        lambda: tf.image.rot90(image, k=3),
        lambda: tf.transpose(image, [1, 0, 2])[::-1, ::-1],
        lambda: tf.image.rot90(image, k=1),
    ]
    index = tf.clip_by_value(tf.cast(orientation, tf.int32) - 1, 0, 7)
    return tf.switch_case(index, branches)


def resize_longest_side(image, size, antialias=False):
    """Resizes `(height, width, 3)` uint8 keeping the aspect ratio so the longer side is `size`.

    Bilinear like the official loader (cv2.INTER_LINEAR); `antialias=True` (for validation
    downscaling, where the official loader uses cv2.INTER_AREA) filters before subsampling.
    Images already at the size are passed through untouched.

    Returns:
        `(resized uint8 image, scale)` with scale = size / max(height, width) (float32).
    """
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = size / tf.maximum(height, width)
    new_height = tf.maximum(tf.cast(tf.round(height * scale), tf.int32), 1)
    new_width = tf.maximum(tf.cast(tf.round(width * scale), tf.int32), 1)

    def resize():
        resized = tf.image.resize(image, [new_height, new_width], antialias=antialias)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    unchanged = tf.logical_and(tf.equal(new_height, shape[0]), tf.equal(new_width, shape[1]))
    return tf.cond(unchanged, lambda: image, resize), scale


def pad_to_square(image, size, top=0, left=0):
    """Places `(h, w, 3)` uint8 at (top, left) in a `(size, size, 3)` canvas filled with 114."""
    shape = tf.shape(image)
    paddings = [[top, size - shape[0] - top], [left, size - shape[1] - left], [0, 0]]
    padded = tf.pad(image, paddings, constant_values=PAD_VALUE)
    return tf.ensure_shape(padded, [size, size, 3])
