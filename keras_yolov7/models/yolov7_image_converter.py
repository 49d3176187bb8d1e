"""YOLOv7ImageConverter: the letterbox (images of any size -> the network size, and boxes both ways).

This is the package's one letterbox. It runs TensorFlow image ops, like KerasHub's own image
converters, because preprocessing runs inside tf.data pipelines (training, validation,
calibration) as well as eagerly in `predict()`; every backend therefore sees the same pixels.
"""

import keras
import keras_hub
import numpy as np
from keras_hub.src.utils.tensor_utils import preprocessing_function

from keras_yolov7.models.yolov7_backbone import YOLOv7Backbone

PAD_VALUE = 114
"""Gray of the letterbox borders (the official value)."""


def _tf():
    import tensorflow as tf

    return tf


def letterbox_geometry(height, width, size):
    """Scale and placement of a `height` x `width` image letterboxed into `size` (TF or numpy).

    The image is resized by `scale = min(size_h / height, size_w / width)` to
    `new = max(1, round(side * scale))` and placed at `(top, left) = ((size - new) // 2)`.

    Returns:
        `(scale, new_height, new_width, top, left)`.
    """
    tf = _tf()
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    scale = tf.minimum(size[0] / height, size[1] / width)
    new_height = tf.clip_by_value(tf.cast(tf.round(height * scale), tf.int32), 1, size[0])
    new_width = tf.clip_by_value(tf.cast(tf.round(width * scale), tf.int32), 1, size[1])
    top = (size[0] - new_height) // 2
    left = (size[1] - new_width) // 2
    return scale, new_height, new_width, top, left


def square_input_size(model, requested=None):
    """The square network size to run or export `model` at: `requested`, else the size the
    model was trained at (its preprocessor's, or its static input shape; the larger side when
    they differ, which letterboxes every image into it), else its preset's training size.

    Args:
        model: a `YOLOv7ObjectDetector`.
        requested: None, an int, or a `(size, size)` pair.

    Raises:
        ValueError: a non-square pair, or a size that is not a positive multiple of the model's
            largest stride (the message suggests the nearest that is).
    """
    from keras_yolov7.models.builder import resolve_architecture

    size = requested
    if isinstance(size, (tuple, list)):
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"image size must be one int (a square input), got {tuple(size)}")
        size = size[0]
    if size is None and model.image_size is not None:
        size = max(model.image_size)
    if size is None:
        size = resolve_architecture(model.architecture).get("input_size", 640)
    size, stride = int(size), max(model.strides)
    if size < stride or size % stride:
        raise ValueError(
            f"image size {size} is not a positive multiple of the model's largest stride "
            f"{stride}; use e.g. {max(1, round(size / stride)) * stride}"
        )
    return size


def letterbox_images(images, size, pad_value=PAD_VALUE):
    """Letterboxes images of one size into `size` (TensorFlow ops; eager or in tf.data).

    Resize keeping the aspect ratio (bilinear, antialiased when shrinking), then pad centred with
    `pad_value`. uint8 images stay uint8 (rounded); float images stay float32 (0..255).

    Args:
        images: `(height, width, 3)` or `(batch, height, width, 3)`, all of one size.
        size: `(height, width)` of the network input.
        pad_value: border gray.

    Returns:
        `(letterboxed, scale, pad)`: images `(..., size_h, size_w, 3)`, `scale` (scalar float32,
        original -> network) and `pad` `(2,)` float32 `(x, y)` offsets: a point `p` of the original
        image is at `p * scale + pad` in the network input.
    """
    tf = _tf()
    images = tf.convert_to_tensor(images)
    unbatched = images.shape.rank == 3
    if unbatched:
        images = images[None]
    dtype = images.dtype
    shape = tf.shape(images)
    scale, new_height, new_width, top, left = letterbox_geometry(shape[1], shape[2], size)
    unchanged = tf.logical_and(tf.equal(new_height, shape[1]), tf.equal(new_width, shape[2]))

    def resize():
        resized = tf.image.resize(
            tf.cast(images, tf.float32), tf.stack([new_height, new_width]), antialias=True
        )
        if dtype == tf.uint8:
            return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
        return resized

    out_dtype = tf.uint8 if dtype == tf.uint8 else tf.float32
    resized = tf.cond(unchanged, lambda: tf.cast(images, out_dtype), resize)
    paddings = [
        [0, 0],
        [top, size[0] - new_height - top],
        [left, size[1] - new_width - left],
        [0, 0],
    ]
    padded = tf.pad(resized, paddings, constant_values=tf.cast(pad_value, out_dtype))
    padded = tf.ensure_shape(padded, [None, size[0], size[1], images.shape[-1]])
    pad = tf.cast(tf.stack([left, top]), tf.float32)
    return (padded[0] if unbatched else padded), scale, pad


def boxes_to_network(boxes, scale, pad):
    """xyxy pixel boxes of the original image -> of the letterboxed image (`p * scale + pad`)."""
    tf = _tf()
    boxes = tf.cast(boxes, tf.float32)
    return boxes * scale + tf.tile(tf.cast(pad, tf.float32), [2])


@keras.saving.register_keras_serializable(package="keras_yolov7")
class YOLOv7ImageConverter(keras_hub.layers.ImageConverter):
    """Letterboxes images of any size to the network size, and maps boxes with them.

    The official YOLOv7 letterbox: resize keeping the aspect ratio so the image fits the network
    size (bilinear, antialiased when shrinking), pad centred with gray 114. Pixels stay 0..255 (the
    network rescales them itself), uint8 stays uint8.

    Args:
        image_size: `(height, width)` of the network input: the size the model was trained at.
        pad_value: the border gray.
        bounding_box_format: the format of boxes passed with the images (`{"images",
            "bounding_boxes"}` input), pixels.

    Input: `(batch, height, width, 3)` images of one size (or one `(height, width, 3)` image), or a
    dict `{"images": ..., "bounding_boxes": {"boxes": (batch, M, 4), "labels": (batch, M)}}`
    ("classes" is accepted for "labels").
    Output: images `(batch, *image_size, 3)` (and the dict with boxes in network pixels).
    """

    backbone_cls = YOLOv7Backbone

    def __init__(self, image_size=(640, 640), pad_value=PAD_VALUE, bounding_box_format="xyxy", **kwargs):
        for unused in ("scale", "offset", "crop_to_aspect_ratio", "pad_to_aspect_ratio",
                       "interpolation", "antialias"):
            kwargs.pop(unused, None)
        image_size = _checked_size(image_size)
        super().__init__(
            image_size=image_size,
            crop_to_aspect_ratio=False,
            antialias=True,
            bounding_box_format=bounding_box_format,
            **kwargs,
        )
        self.pad_value = int(pad_value)
        # KerasHub's Resizing sublayer is never called (the letterbox is this class's own) and has
        # no weights: built, so that it does not count as a layer left to build.
        self.resizing.built = True

    @property
    def image_size(self):
        return super().image_size

    @image_size.setter
    def image_size(self, value):
        value = _checked_size(value)
        self.resizing.height, self.resizing.width = value

    def letterbox(self, image):
        """One image of any size -> `(letterboxed, scale, pad)` as numpy (see
        `letterbox_images`)."""
        padded, scale, pad = letterbox_images(image, self.image_size, self.pad_value)
        return np.asarray(padded), float(scale), np.asarray(pad, np.float32)

    @preprocessing_function
    def call(self, inputs):
        tf = _tf()
        if isinstance(inputs, dict):
            images = _as_tf(inputs["images"])
            padded, scale, pad = letterbox_images(images, self.image_size, self.pad_value)
            targets = dict(inputs.get("bounding_boxes") or {})
            if "boxes" in targets:
                boxes = _as_tf(targets["boxes"])
                height, width = tf.shape(images)[-3], tf.shape(images)[-2]
                xyxy = keras.utils.bounding_boxes.convert_format(
                    boxes, source=self.bounding_box_format, target="xyxy",
                    height=height, width=width,
                ) if self.bounding_box_format != "xyxy" else tf.cast(boxes, tf.float32)
                mapped = boxes_to_network(xyxy, scale, pad)
                if self.bounding_box_format != "xyxy":
                    mapped = keras.utils.bounding_boxes.convert_format(
                        mapped, source="xyxy", target=self.bounding_box_format,
                        height=self.image_size[0], width=self.image_size[1],
                    )
                labels = targets.get("labels", targets.get("classes"))
                real = tf.expand_dims(tf.cast(labels, tf.float32) >= 0, -1)
                targets = {"boxes": tf.where(real, mapped, -1.0), "labels": labels}
            return {"images": padded, "bounding_boxes": targets}
        padded, _, _ = letterbox_images(_as_tf(inputs), self.image_size, self.pad_value)
        return padded

    def get_config(self):
        config = super().get_config()
        for unused in ("scale", "offset", "crop_to_aspect_ratio", "pad_to_aspect_ratio",
                       "interpolation", "antialias"):
            config.pop(unused, None)
        config.update(image_size=list(self.image_size), pad_value=self.pad_value)
        return config


def _checked_size(size):
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be an int or (height, width), got {size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {(height, width)}")
    return height, width


def _as_tf(value):
    tf = _tf()
    if isinstance(value, tf.Tensor):
        return value
    return tf.convert_to_tensor(keras.ops.convert_to_numpy(value))
