"""Conv: the YOLOv7 convolution unit, Conv2D + BatchNormalization + activation."""

import keras
import numpy as np
from keras import ops

from keras_yolov7.layers import official
from keras_yolov7.layers import tensorflow_activation
from keras_yolov7.layers.batch_norm import BatchNorm
from keras_yolov7.layers.block import Fusable

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.97

ACTIVATIONS = ("silu", "leaky_relu", "linear")


def check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return activation


def apply_activation(x, activation, training=None):
    """The unit's activation; on TensorFlow in training, SiLU with a one-pass gradient (same
    values, `layers/tensorflow_activation.py`)."""
    if activation == "silu":
        if training and keras.backend.backend() == "tensorflow":
            return tensorflow_activation.training_silu(x)
        return ops.silu(x)
    if activation == "leaky_relu":
        return ops.leaky_relu(x, negative_slope=0.1)
    return x


def conv2d(filters, kernel_size, strides, use_bias, name):
    """A Conv2D padded like PyTorch's `padding=k//2`.

    Keras "same" pads a stride-2 convolution asymmetrically (0 before, 1 after), PyTorch pads k//2 on
    every side; explicit padding + "valid" keeps the sampling grid of the official network.
    """
    padded = strides > 1 and kernel_size > 1
    conv = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid" if padded else "same",
        use_bias=use_bias,
        name=name,
    )
    if padded:
        return [keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad"), conv]
    return [conv]


def batch_norm(name):
    return BatchNorm(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def fold_batch_norm(kernel, bn):
    """Fold a BatchNormalization into the preceding conv's kernel; returns `(kernel, bias)` numpy."""
    gamma = ops.convert_to_numpy(bn.gamma).astype(np.float64)
    beta = ops.convert_to_numpy(bn.beta).astype(np.float64)
    mean = ops.convert_to_numpy(bn.moving_mean).astype(np.float64)
    var = ops.convert_to_numpy(bn.moving_variance).astype(np.float64)
    scale = gamma / np.sqrt(var + bn.epsilon)
    kernel = np.asarray(kernel, np.float64) * scale
    return kernel.astype(np.float32), (beta - mean * scale).astype(np.float32)


@keras.saving.register_keras_serializable(package="keras_yolov7")
class Conv(Fusable):
    """Conv2D (no bias) + BatchNormalization + activation, the unit every YOLOv7 block is made of.

    Args:
        filters: output channels.
        kernel_size: square kernel size (odd).
        strides: 1 or 2.
        activation: "silu" (YOLOv7), "leaky_relu" (slope 0.1, yolov7-tiny) or "linear".
        fused: inference form, a single Conv2D with bias and the BatchNormalization folded in.

    Input shape: `(batch, height, width, channels)`.
    Output shape: `(batch, height / strides, width / strides, filters)`.

    Example:
    >>> layer = Conv(64, 3, strides=2)
    >>> layer(np.zeros((1, 32, 32, 3))).shape
    (1, 16, 16, 64)
    """

    def __init__(self, filters, kernel_size=1, strides=1, activation="silu", fused=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.activation = check_activation(activation)
        self.fused = bool(fused)
        self.convs = conv2d(self.filters, self.kernel_size, self.strides, self.fused, "conv")
        self.conv = self.convs[-1]
        self.bn = None if self.fused else batch_norm("bn")

    def build(self, input_shape):
        shape = input_shape
        for layer in self.convs:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        if self.bn is not None:
            self.bn.build(shape)
        super().build(input_shape)

    def call(self, x, training=None):
        for layer in self.convs:
            x = layer(x)
        if self.bn is not None:
            x = self.bn(x, training=training)
        return apply_activation(x, self.activation, training)

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for layer in self.convs:
            shape = layer.compute_output_shape(shape)
        return shape

    def fused_weights(self):
        """`[kernel (k, k, in, out), bias (out,)]` of the equivalent single conv, as numpy."""
        kernel = ops.convert_to_numpy(self.conv.kernel)
        if self.fused:
            return [kernel, ops.convert_to_numpy(self.conv.bias)]
        return list(fold_batch_norm(kernel, self.bn))

    def official_tensors(self, index, form):
        return self.official_tensors_under(f"model.{index}", form)

    def official_tensors_under(self, prefix, form):
        """The official tensors of a Conv module named `prefix` (`model.4`, `model.11.cv1`):
        `conv.weight` and `bn.*`, or `conv.weight` and `conv.bias` when fused."""
        official.check_form(self, form)
        tensors = [official.kernel(f"{prefix}.conv.weight", self.conv.kernel)]
        if self.fused:
            return tensors + [official.vector(f"{prefix}.conv.bias", self.conv.bias)]
        return tensors + official.batch_norm(f"{prefix}.bn", self.bn)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            activation=self.activation,
            fused=self.fused,
        )
        return config
