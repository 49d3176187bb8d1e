"""The validation pipeline: every image letterboxed (the preprocessor's letterbox), with its metadata."""

import logging

import tensorflow as tf

from keras_yolov7.data.decode import decode_image
from keras_yolov7.data.tables import RecordTable
from keras_yolov7.data.fixed_size_targets import check_box_format
from keras_yolov7.data.fixed_size_targets import pad_targets
from keras_yolov7.data.pipeline_options import pipeline_options
from keras_yolov7.models.yolov7_image_converter import boxes_to_network
from keras_yolov7.models.yolov7_image_converter import letterbox_images

logger = logging.getLogger("keras_yolov7.data")


def make_val_dataset(
    dataset, image_size=640, batch_size=16, max_boxes=200, bounding_box_format="xyxy", stride=32
):
    """Builds the validation `tf.data.Dataset`: every image letterboxed, in dataset order.

    The official evaluation letterbox (`YOLOv7ImageConverter`'s): resize keeping the aspect ratio
    so the longer side is S (antialiased when shrinking, bilinear when enlarging), pad to S x S
    with 114, centred. Each image's scale and padding are returned so detections map back to
    original pixels (`keras_yolov7.ops.boxes_to_original`: `x_orig = (x - pad_x) / scale`).

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
        letterboxed, scale, pad = letterbox_images(image, (image_size, image_size))
        boxes, labels = table.boxes_of(index)
        boxes = boxes_to_network(boxes, scale, pad)
        boxes, labels = pad_targets(boxes, labels, max_boxes, image_size, bounding_box_format)
        targets = {
            "boxes": boxes,
            "labels": labels,
            "image_id": table.image_ids[index],
            "scale": scale,
            "pad": pad,
            "original_size": table.sizes[index],
        }
        return letterboxed, targets

    return (
        tf.data.Dataset.range(len(table))
        .map(tf.autograph.experimental.do_not_convert(load), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(pipeline_options())
    )
