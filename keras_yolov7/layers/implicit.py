"""Implicit knowledge (YOLOR): learned per-channel vectors added or multiplied in the head."""

import keras
from keras import ops


class _Implicit(keras.layers.Layer):
    initial_mean = 0.0

    def build(self, input_shape):
        self.implicit = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.RandomNormal(self.initial_mean, 0.02),
            name="implicit",
        )
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_fused(self):
        """A copy with equal weights: the vector has no smaller form on its own (the head folds it)."""
        clone = self.__class__.from_config(self.get_config())
        clone.build((None, self.implicit.shape[0]))
        clone.set_weights(self.get_weights())
        return clone


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
