"""ImageInput: checks the image shape against the network's stride and scales pixels to [0, 1]."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_yolov7")
class ImageInput(keras.layers.Layer):
    """Validates `(batch, height, width, 3)` RGB images in 0..255 and rescales them to [0, 1].

    Height and width must be multiples of `max_stride` (checked whenever they are known when the
    model is called or traced).

    Args:
        max_stride: the network's largest stride (32 for P5 models, 64 for P6 models).

    Input shape: `(batch, height, width, 3)`, uint8 or float pixel values 0..255.
    Output shape: `(batch, height, width, 3)` in the compute dtype, values in [0, 1].
    """

    def __init__(self, max_stride=32, **kwargs):
        super().__init__(**kwargs)
        self.max_stride = int(max_stride)

    def _check(self, shape):
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(
                f"images must have shape (batch, height, width, 3) (RGB), got {tuple(shape)}"
            )
        for axis, size in (("height", shape[1]), ("width", shape[2])):
            if isinstance(size, int) and size % self.max_stride:
                raise ValueError(
                    f"image {axis} {size} is not a multiple of the model's largest stride "
                    f"{self.max_stride}; use e.g. {max(1, round(size / self.max_stride)) * self.max_stride}"
                )

    def build(self, input_shape):
        self._check(input_shape)
        self.built = True

    def call(self, images):
        self._check(tuple(images.shape))
        return ops.cast(images, self.compute_dtype) / 255.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["max_stride"] = self.max_stride
        return config
