"""RepConv and RepConvN: multi-branch training convs that re-parameterise into one 3x3 conv."""

import keras
import numpy as np
from keras import ops

from keras_yolov7.layers import official
from keras_yolov7.layers.block import Fusable
from keras_yolov7.layers.conv import apply_activation
from keras_yolov7.layers.conv import batch_norm
from keras_yolov7.layers.conv import check_activation
from keras_yolov7.layers.conv import conv2d
from keras_yolov7.layers.conv import fold_batch_norm


@keras.saving.register_keras_serializable(package="keras_yolov7")
class RepConv(Fusable):
    """RepVGG-style conv of the YOLOv7 head: `act(BN(conv3x3(x)) + BN(conv1x1(x)) [+ BN(x)])`.

    The identity branch exists only when input and output channels are equal and the stride is 1.
    `get_fused()` folds each BatchNormalization into its branch, pads the 1x1 kernel (and the identity,
    as a centred 1) to 3x3 and sums them into one conv with bias.

    Args:
        filters: output channels.
        kernel_size: size of the dense branch (3).
        strides: 1 or 2, shared by the branches.
        activation: "silu", "leaky_relu" or "linear".
        fused: inference form, a single conv with bias.

    Input shape: `(batch, height, width, channels)`.
    Output shape: `(batch, height / strides, width / strides, filters)`.

    Example:
    >>> layer = RepConv(64)
    >>> layer(np.zeros((1, 16, 16, 32))).shape
    (1, 16, 16, 64)
    """

    identity_allowed = True

    def __init__(self, filters, kernel_size=3, strides=1, activation="silu", fused=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.activation = check_activation(activation)
        self.fused = bool(fused)
        self.identity_bn = None

    def build(self, input_shape):
        channels = input_shape[-1]
        if self.fused:
            self.convs = conv2d(self.filters, self.kernel_size, self.strides, True, "conv")
            self._build_chain(self.convs, input_shape)
        else:
            self.dense_convs = conv2d(self.filters, self.kernel_size, self.strides, False, "dense_conv")
            self.dense_bn = batch_norm("dense_bn")
            self.pointwise_conv = keras.layers.Conv2D(
                self.filters, 1, strides=self.strides, use_bias=False, name="pointwise_conv"
            )
            self.pointwise_bn = batch_norm("pointwise_bn")
            shape = self._build_chain(self.dense_convs, input_shape)
            self.dense_bn.build(shape)
            self.pointwise_conv.build(input_shape)
            self.pointwise_bn.build(shape)
            if self.identity_allowed and channels == self.filters and self.strides == 1:
                self.identity_bn = batch_norm("identity_bn")
                self.identity_bn.build(input_shape)
        super().build(input_shape)

    @staticmethod
    def _build_chain(layers, shape):
        for layer in layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        return shape

    def call(self, x, training=None):
        if self.fused:
            y = x
            for layer in self.convs:
                y = layer(y)
            return apply_activation(y, self.activation)
        y = x
        for layer in self.dense_convs:
            y = layer(y)
        y = self.dense_bn(y, training=training)
        y = y + self.pointwise_bn(self.pointwise_conv(x), training=training)
        if self.identity_bn is not None:
            y = y + self.identity_bn(x, training=training)
        return apply_activation(y, self.activation, training)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if height is not None:
            height = (height + 2 * (self.kernel_size // 2) - self.kernel_size) // self.strides + 1
        if width is not None:
            width = (width + 2 * (self.kernel_size // 2) - self.kernel_size) // self.strides + 1
        return (batch, height, width, self.filters)

    def fused_weights(self):
        """`[kernel (k, k, in, out), bias (out,)]` of the equivalent single conv, as numpy: each
        BatchNormalization folded into its branch, the 1x1 kernel (and the identity, as a centred
        1) padded to k x k, summed."""
        if self.fused:
            return [ops.convert_to_numpy(w) for w in self.convs[-1].weights]
        k = self.kernel_size
        kernel, bias = fold_batch_norm(ops.convert_to_numpy(self.dense_convs[-1].kernel), self.dense_bn)
        pointwise, pointwise_bias = fold_batch_norm(
            ops.convert_to_numpy(self.pointwise_conv.kernel), self.pointwise_bn
        )
        kernel = kernel.copy()
        kernel[k // 2, k // 2] += pointwise[0, 0]
        bias = bias + pointwise_bias
        if self.identity_bn is not None:
            eye = np.eye(self.filters, dtype=np.float32)[None, None]
            identity, identity_bias = fold_batch_norm(eye, self.identity_bn)
            kernel[k // 2, k // 2] += identity[0, 0]
            bias = bias + identity_bias
        return [kernel, bias]

    def official_tensors(self, index, form):
        """`rbr_identity.*` (when present), `rbr_dense.{0,1}.*`, `rbr_1x1.{0,1}.*`; fused:
        `rbr_reparam.{weight,bias}`."""
        official.check_form(self, form)
        prefix = f"model.{index}"
        if self.fused:
            conv = self.convs[-1]
            return [
                official.kernel(f"{prefix}.rbr_reparam.weight", conv.kernel),
                official.vector(f"{prefix}.rbr_reparam.bias", conv.bias),
            ]
        tensors = []
        if self.identity_bn is not None:
            tensors += official.batch_norm(f"{prefix}.rbr_identity", self.identity_bn)
        tensors.append(official.kernel(f"{prefix}.rbr_dense.0.weight", self.dense_convs[-1].kernel))
        tensors += official.batch_norm(f"{prefix}.rbr_dense.1", self.dense_bn)
        tensors.append(official.kernel(f"{prefix}.rbr_1x1.0.weight", self.pointwise_conv.kernel))
        tensors += official.batch_norm(f"{prefix}.rbr_1x1.1", self.pointwise_bn)
        return tensors

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


@keras.saving.register_keras_serializable(package="keras_yolov7")
class RepConvN(RepConv):
    """RepConv without the identity branch: the paper's planned re-parameterised conv (RepConvN).

    An identity branch destroys the residual or concatenation already around a conv inside ELAN, so
    the paper plans RepConvN, `act(BN(conv3x3(x)) + BN(conv1x1(x)))`, for such places. Same
    arguments and shapes as `RepConv`.
    """

    identity_allowed = False
