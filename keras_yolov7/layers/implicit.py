"""Implicit knowledge (YOLOR): learned per-channel vectors added or multiplied in the head."""

import keras
from keras import ops

from keras_yolov7.layers.block import Fusable


class _Implicit(Fusable):
    initial_mean = 0.0

    def build(self, input_shape):
        self.implicit = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.RandomNormal(self.initial_mean, 0.02),
            name="implicit",
        )
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def fused_config(self):
        # The vector has no smaller form on its own (the head folds it): get_fused() is a copy.
        return self.get_config()


@keras.saving.register_keras_serializable(package="keras_yolov7")
class ImplicitAdd(_Implicit):
    """`x + a`, with `a` a learned `(channels,)` vector (YOLOR's ImplicitA), initialised N(0, 0.02).

    Input and output shape: `(batch, height, width, channels)`.
    """

    def call(self, x):
        return x + ops.cast(self.implicit, x.dtype)


@keras.saving.register_keras_serializable(package="keras_yolov7")
class ImplicitMultiply(_Implicit):
    """`x * m`, with `m` a learned `(channels,)` vector (YOLOR's ImplicitM), initialised N(1, 0.02).

    Input and output shape: `(batch, height, width, channels)`.
    """

    initial_mean = 1.0

    def call(self, x):
        return x * ops.cast(self.implicit, x.dtype)
