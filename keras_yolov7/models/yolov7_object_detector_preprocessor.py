"""YOLOv7ObjectDetectorPreprocessor: the image contract saved with a detector."""

import keras
import keras_hub

from keras_yolov7.models.yolov7_backbone import YOLOv7Backbone
from keras_yolov7.models.yolov7_image_converter import YOLOv7ImageConverter


@keras.saving.register_keras_serializable(package="keras_yolov7")
class YOLOv7ObjectDetectorPreprocessor(keras_hub.models.ObjectDetectorPreprocessor):
    """What a YOLOv7 detector expects of its images, saved with it: the network size (the size it
    was trained at), the letterbox that brings images of any size to it and maps boxes to the
    network and back, and the class names.

    Args:
        image_converter: a `YOLOv7ImageConverter` (default: 640 x 640).
        class_names: the name of each class, in label order, or None.

    Call: `preprocessor(x, y=None, sample_weight=None)` with `x` images `(batch, height, width, 3)`
    of one size, `y` `{"boxes": (batch, M, 4) pixels, "labels" (or "classes"): (batch, M)}`:
    returns the letterboxed images (and targets in network pixels), packed like
    `keras.utils.pack_x_y_sample_weight`.

    Example:
    >>> preprocessor = YOLOv7ObjectDetectorPreprocessor(
    ...     YOLOv7ImageConverter(image_size=(320, 320)), class_names=["cat", "dog"])
    >>> image, scale, pad = preprocessor.letterbox(np.zeros((480, 640, 3), "uint8"))
    >>> image.shape, scale, pad.tolist()
    ((320, 320, 3), 0.5, [0.0, 40.0])
    """

    backbone_cls = YOLOv7Backbone
    image_converter_cls = YOLOv7ImageConverter

    def __init__(self, image_converter=None, class_names=None, **kwargs):
        if image_converter is None:
            image_converter = YOLOv7ImageConverter()
        super().__init__(image_converter=image_converter, **kwargs)
        if class_names is not None:
            if isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__iter__"):
                raise ValueError(f"class_names must be a list of names, got {class_names!r}")
            class_names = [str(name) for name in class_names]
        self.class_names = class_names
        # Nothing to build (no weights); Keras' JAX predict otherwise calls the detector on a
        # sample batch to build it, which a `(images, metadata)` batch cannot be.
        self.built = True

    def letterbox(self, image):
        """One `(height, width, 3)` image of any size -> `(letterboxed, scale, pad)` numpy: the
        network-size image, the resize factor and the `(x, y)` offset (a point `p` of the image is
        at `p * scale + pad` in the network input)."""
        return self.image_converter.letterbox(image)

    def get_config(self):
        config = super().get_config()
        config["class_names"] = self.class_names
        return config
