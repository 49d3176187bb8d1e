"""The validation pipeline (letterbox only) and the mapping of boxes back to original pixels."""

import logging

import numpy as np
import tensorflow as tf

from keras_yolov7.data.decode import decode_image
from keras_yolov7.data.decode import pad_to_square
from keras_yolov7.data.tables import RecordTable
from keras_yolov7.data.targets import check_box_format
from keras_yolov7.data.targets import pad_targets

logger = logging.getLogger("keras_yolov7.data")


def make_val_dataset(
    dataset, image_size=640, batch_size=16, max_boxes=200, bounding_box_format="xyxy", stride=32
):
    """Builds the validation `tf.data.Dataset`: every image letterboxed, in dataset order.

    The official evaluation letterbox: resize keeping the aspect ratio so the longer side is S
    (area filtering when shrinking, bilinear when enlarging), pad to S x S with 114, centred.
    Each image's scale and padding are returned so detections map back to original pixels with
    `boxes_to_original` (`x_orig = (x - pad_x) / scale`).

    Args:
        dataset: a `DetectionDataset`. Crowd / difficult boxes are left out of the targets (COCO
            evaluation reads them from the dataset itself).
        image_size: S, a multiple of `stride`.
        batch_size: images per batch (the last batch may be smaller).
        max_boxes: M. Images with more boxes keep the M largest; reported once, here, when the
            dataset is read.
        bounding_box_format: format of the target boxes, any Keras name.
        stride: the model's largest stride.

    Returns:
        A `tf.data.Dataset` of `(images, targets)`: images `(B, S, S, 3)` uint8; targets
        `{"boxes": (B, M, 4) float32 letterboxed pixels in bounding_box_format, "labels": (B, M)
        int32` (padded with -1), `"image_id": (B,) int64, "scale": (B,) float32` (original ->
        letterboxed), `"pad": (B, 2) float32` (x, y offset added after scaling) and
        `"original_size": (B, 2) int32` (height, width)}.
    """
    if image_size % stride:
        raise ValueError(f"image_size {image_size} is not a multiple of the stride {stride}")
    check_box_format(bounding_box_format)
    table = RecordTable.from_dataset(dataset)
    if table.max_boxes_per_image > max_boxes:
        too_many = sum(int((~r.crowd).sum()) > max_boxes for r in dataset.records)
        logger.warning(
            "%d validation images have more than max_boxes=%d boxes (up to %d): their %d largest "
            "are kept in the targets",
            too_many,
            max_boxes,
            table.max_boxes_per_image,
            max_boxes,
        )

    def load(index):
        image = decode_image(table.paths[index], table.orientations[index])
        original = table.sizes[index]
        scale = image_size / tf.cast(tf.reduce_max(original), tf.float32)
        new_size = tf.maximum(tf.cast(tf.round(tf.cast(original, tf.float32) * scale), tf.int32), 1)

        def resize():
            resized = tf.image.resize(image, new_size, antialias=True)
            return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

        unchanged = tf.reduce_all(tf.equal(tf.shape(image)[:2], new_size))
        resized = tf.cond(unchanged, lambda: image, resize)
        top, left = (image_size - new_size[0]) // 2, (image_size - new_size[1]) // 2
        pad = tf.cast(tf.stack([left, top]), tf.float32)
        boxes, labels = table.boxes_of(index)
        boxes = boxes * scale + tf.tile(pad, [2])
        boxes, labels = pad_targets(boxes, labels, max_boxes, image_size, bounding_box_format)
        targets = {
            "boxes": boxes,
            "labels": labels,
            "image_id": table.image_ids[index],
            "scale": scale,
            "pad": pad,
            "original_size": original,
        }
        return pad_to_square(resized, image_size, top, left), targets

    return (
        tf.data.Dataset.range(len(table))
        .map(tf.autograph.experimental.do_not_convert(load), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def boxes_to_original(boxes, scale, pad, original_size=None):
    """Maps xyxy boxes from letterboxed pixels back to original-image pixels (numpy).

    `x_orig = (x - pad_x) / scale`, `y_orig = (y - pad_y) / scale`, then clipped to the image
    when `original_size` is given.

    Args:
        boxes: `(..., N, 4)` xyxy letterboxed pixels (one image, or a batch with leading dims).
        scale: scalar or `(...)` per-image scale from the validation targets.
        pad: `(2,)` or `(..., 2)` per-image (x, y) padding.
        original_size: optional `(2,)` or `(..., 2)` (height, width) to clip to.

    Returns:
        float32 array shaped like `boxes`, xyxy original pixels.
    """
    boxes = np.asarray(boxes, np.float32)
    scale = np.asarray(scale, np.float32)[..., None, None]
    pad = np.asarray(pad, np.float32)
    offset = np.concatenate([pad, pad], axis=-1)[..., None, :]
    mapped = (boxes - offset) / scale
    if original_size is not None:
        height_width = np.asarray(original_size, np.float32)
        limit = np.stack([height_width[..., 1], height_width[..., 0]] * 2, axis=-1)[..., None, :]
        mapped = np.clip(mapped, 0.0, limit)
    return mapped
