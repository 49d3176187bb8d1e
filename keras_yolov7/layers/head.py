"""Detection heads: the lead head with implicit knowledge (IDetect) and the auxiliary head."""

import dataclasses
import functools
import math

import keras
import numpy as np
from keras import ops

from keras_yolov7.layers import official
from keras_yolov7.layers.block import Fusable
from keras_yolov7.layers.implicit import ImplicitAdd
from keras_yolov7.layers.implicit import ImplicitMultiply


def prior_bias(num_anchors, num_classes, stride):
    """Initial head bias: objectness for ~8 objects per 640 image, class priors of 0.6 / num_classes."""
    bias = np.zeros((num_anchors, 5 + num_classes), np.float32)
    bias[:, 4] += math.log(8 / (640 / stride) ** 2)
    bias[:, 5:] += math.log(0.6 / (num_classes - 0.99))
    return bias.reshape(-1)


def _to_anchor_layout(y, num_anchors):
    shape = ops.shape(y)
    y = ops.reshape(y, (shape[0], shape[1], shape[2], num_anchors, shape[3] // num_anchors))
    return ops.cast(y, "float32")


class _Head(Fusable):
    def __init__(self, num_classes, num_anchors=3, strides=(8, 16, 32), **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.num_anchors = int(num_anchors)
        self.strides = tuple(int(s) for s in strides)
        self.outputs_per_anchor = 5 + self.num_classes
        self.convs = [
            keras.layers.Conv2D(self.num_anchors * self.outputs_per_anchor, 1, name=f"conv_{level}")
            for level in range(len(self.strides))
        ]

    def _check_levels(self, input_shape):
        if len(input_shape) != len(self.strides):
            raise ValueError(
                f"{self.__class__.__name__} expects {len(self.strides)} feature maps (strides "
                f"{self.strides}), got {len(input_shape)}"
            )

    def _build_convs(self, input_shape):
        for conv, shape, stride in zip(self.convs, input_shape, self.strides):
            conv.build(shape)
            conv.bias.assign(prior_bias(self.num_anchors, self.num_classes, stride))

    def compute_output_shape(self, input_shape):
        return [
            tuple(shape[:3]) + (self.num_anchors, self.outputs_per_anchor) for shape in input_shape
        ]

    def _official_convs(self, prefix, value=None):
        """`{prefix}.{level}.weight` and `.bias` of each level's conv; `value(level, k)` gives the
        exported value of weight k when it is not the variable's own."""
        tensors = []
        for level, conv in enumerate(self.convs):
            for k, (suffix, variable) in enumerate((("weight", conv.kernel), ("bias", conv.bias))):
                make = official.kernel if suffix == "weight" else official.vector
                tensor = make(f"{prefix}.{level}.{suffix}", variable)
                if value is not None:
                    tensor = dataclasses.replace(tensor, value=functools.partial(value, level, k))
                tensors.append(tensor)
        return tensors

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes, num_anchors=self.num_anchors, strides=list(self.strides)
        )
        return config


@keras.saving.register_keras_serializable(package="keras_yolov7")
class YOLOv7Head(_Head):
    """Lead detection head (IDetect): per level `ImplicitMultiply(conv1x1(ImplicitAdd(x)))`.

    Each level's 1x1 conv (with bias) predicts `num_anchors * (5 + num_classes)` channels, channel
    `anchor * (5 + num_classes) + k` with k = x, y, w, h, objectness, classes; the output is reshaped
    to put anchors on their own axis. `get_fused()` folds the implicit vectors into the conv:
    `b' = (b + W a) * m`, `W' = W * m`.

    Args:
        num_classes: number of classes.
        num_anchors: anchors per level.
        strides: stride of each level, in pixels (sets the initial objectness bias).
        fused: inference form without implicit layers.

    Input shape: list of `(batch, H_l, W_l, channels_l)`, one per level.
    Output shape: list of `(batch, H_l, W_l, num_anchors, 5 + num_classes)` raw logits (float32).
    """

    def __init__(self, num_classes, num_anchors=3, strides=(8, 16, 32), fused=False, **kwargs):
        super().__init__(num_classes, num_anchors, strides, **kwargs)
        self.fused = bool(fused)
        levels = range(len(self.strides))
        if not self.fused:
            self.implicit_add = [ImplicitAdd(name=f"implicit_add_{i}") for i in levels]
            self.implicit_multiply = [ImplicitMultiply(name=f"implicit_multiply_{i}") for i in levels]

    def build(self, input_shape):
        self._check_levels(input_shape)
        self._build_convs(input_shape)
        if not self.fused:
            for layer, shape in zip(self.implicit_add, input_shape):
                layer.build(shape)
            for layer, conv in zip(self.implicit_multiply, self.convs):
                layer.build((None, conv.filters))
        super().build([tuple(s) for s in input_shape])

    def call(self, features):
        outputs = []
        for level, x in enumerate(features):
            if self.fused:
                y = self.convs[level](x)
            else:
                y = self.implicit_multiply[level](self.convs[level](self.implicit_add[level](x)))
            outputs.append(_to_anchor_layout(y, self.num_anchors))
        return outputs

    def fused_weights(self):
        """`[kernel_0, bias_0, kernel_1, ...]` with the implicit vectors folded into the convs:
        `b' = (b + W a) * m`, `W' = W * m`."""
        weights = []
        for level, conv in enumerate(self.convs):
            kernel, bias = (ops.convert_to_numpy(w).astype(np.float64) for w in conv.weights)
            if not self.fused:
                add = ops.convert_to_numpy(self.implicit_add[level].implicit).astype(np.float64)
                mul = ops.convert_to_numpy(self.implicit_multiply[level].implicit).astype(np.float64)
                bias = (bias + add @ kernel[0, 0]) * mul
                kernel = kernel * mul
            weights += [kernel.astype(np.float32), bias.astype(np.float32)]
        return weights

    def official_tensors(self, index, form, auxiliary_head=None):
        """The official head module `model.{index}`: the `anchors` (grid units) and `anchor_grid`
        (pixels) buffers, then per level `m.{l}.{weight,bias}`; in the training form also the
        auxiliary head's `m2.*` (IAuxDetect, when `auxiliary_head` is given), `ia.{l}.implicit`
        and `im.{l}.implicit`. The deploy form's `m` has the implicit vectors folded in."""
        official.check_form(self, form)
        prefix = f"model.{index}"
        levels = len(self.strides)
        tensors = [
            official.OfficialTensor(f"{prefix}.anchors", (levels, self.num_anchors, 2), kind="anchors"),
            official.OfficialTensor(
                f"{prefix}.anchor_grid", (levels, 1, self.num_anchors, 1, 1, 2), kind="anchor_grid"
            ),
        ]
        if form != "training":
            folded = self._folded_weight if form == "deploy" else None
            return tensors + self._official_convs(f"{prefix}.m", folded)
        tensors += self._official_convs(f"{prefix}.m")
        if auxiliary_head is not None:
            tensors += auxiliary_head.official_tensors(index, form)
        tensors += [
            official.implicit(f"{prefix}.ia.{level}.implicit", layer.implicit)
            for level, layer in enumerate(self.implicit_add)
        ]
        return tensors + [
            official.implicit(f"{prefix}.im.{level}.implicit", layer.implicit)
            for level, layer in enumerate(self.implicit_multiply)
        ]

    def _folded_weight(self, level, k):
        return self.fused_weights()[2 * level + k]

    def official_defaults(self, form):
        """The deploy form's convs already hold the implicit vectors: add 0, multiply 1."""
        if form != "deploy":
            return []
        neutral = [(layer, 0.0) for layer in self.implicit_add]
        neutral += [(layer, 1.0) for layer in self.implicit_multiply]
        return [
            (layer.implicit, np.full(tuple(layer.implicit.shape), value, np.float32))
            for layer, value in neutral
        ]

    def get_config(self):
        config = super().get_config()
        config["fused"] = self.fused
        return config


@keras.saving.register_keras_serializable(package="keras_yolov7")
class AuxiliaryHead(_Head):
    """Auxiliary head of the P6 models (training only): a plain 1x1 conv with bias per level.

    Its outputs get the coarse label assignment, guided by the lead head's predictions.

    Args:
        num_classes: number of classes.
        num_anchors: anchors per level.
        strides: stride of each level, in pixels.

    Input shape: list of `(batch, H_l, W_l, channels_l)`, one per level.
    Output shape: list of `(batch, H_l, W_l, num_anchors, 5 + num_classes)` raw logits (float32).
    """

    def build(self, input_shape):
        self._check_levels(input_shape)
        self._build_convs(input_shape)
        super().build([tuple(s) for s in input_shape])

    def call(self, features):
        return [
            _to_anchor_layout(conv(x), self.num_anchors) for conv, x in zip(self.convs, features)
        ]

    def fused_config(self):
        # Nothing to fold: get_fused() is a copy (fused models drop this head altogether).
        return self.get_config()

    def official_tensors(self, index, form):
        """`m2.{l}.{weight,bias}` inside the lead head's module `model.{index}` (IAuxDetect); only
        the training form has an auxiliary head."""
        if form != "training":
            raise ValueError(f"only the official training form has an auxiliary head, not {form!r}")
        return self._official_convs(f"model.{index}.m2")
