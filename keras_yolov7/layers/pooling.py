"""Pooling and down-sampling blocks: SPPCSPC (and its tiny form), the MP transition, DownC, ReOrg."""

import keras
from keras import ops

from keras_yolov7.layers.block import Fusable
from keras_yolov7.layers.block import FusableBlock
from keras_yolov7.layers.conv import Conv
from keras_yolov7.layers.conv import check_activation


def _max_pool(size, strides=1):
    padding = "same" if strides == 1 else "valid"
    return keras.layers.MaxPooling2D(size, strides=strides, padding=padding, name=f"max_pool_{size}")


def _with_channels(shape, channels, scale=1):
    batch, height, width = shape[:3]
    if scale != 1:
        height = None if height is None else height // scale
        width = None if width is None else width // scale
    return (batch, height, width, channels)


@keras.saving.register_keras_serializable(package="keras_yolov7")
class SPPCSPC(FusableBlock):
    """Spatial pyramid pooling in a cross-stage-partial block (the YOLOv7 neck entry).

    `x1 = cv4(cv3(cv1(x)))`; `y1 = cv6(cv5(concat[x1, maxpool5(x1), maxpool9(x1), maxpool13(x1)]))`;
    `y2 = cv2(x)`; output `cv7(concat[y1, y2])`. cv3 and cv6 are 3x3, the others 1x1; the max pools
    have stride 1 and "same" padding. Hidden width equals `filters`.

    Args:
        filters: output channels (and hidden channels).
        pool_sizes: the three max-pool sizes.
        activation: "silu" or "leaky_relu".
        fused: inference form.

    Input shape: `(batch, height, width, channels)`.
    Output shape: `(batch, height, width, filters)`.
    """

    def __init__(self, filters, pool_sizes=(5, 9, 13), activation="silu", fused=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.pool_sizes = tuple(int(p) for p in pool_sizes)
        self.activation = check_activation(activation)
        self.fused = bool(fused)
        c, act = self.filters, self.activation
        kernels = {"cv1": 1, "cv2": 1, "cv3": 3, "cv4": 1, "cv5": 1, "cv6": 3, "cv7": 1}
        self.convs = {
            name: Conv(c, k, activation=act, fused=self.fused, name=name) for name, k in kernels.items()
        }
        self.pools = [_max_pool(p) for p in self.pool_sizes]

    def build(self, input_shape):
        c = self.filters
        hidden = _with_channels(input_shape, c)
        inputs = {
            "cv1": input_shape,
            "cv2": input_shape,
            "cv3": hidden,
            "cv4": hidden,
            "cv5": _with_channels(input_shape, c * (len(self.pool_sizes) + 1)),
            "cv6": hidden,
            "cv7": _with_channels(input_shape, 2 * c),
        }
        for name, conv in self.convs.items():
            conv.build(inputs[name])
        super().build(input_shape)

    def call(self, x, training=None):
        cv = self.convs
        x1 = cv["cv4"](cv["cv3"](cv["cv1"](x, training=training), training=training), training=training)
        y1 = ops.concatenate([x1] + [pool(x1) for pool in self.pools], axis=-1)
        y1 = cv["cv6"](cv["cv5"](y1, training=training), training=training)
        y2 = cv["cv2"](x, training=training)
        return cv["cv7"](ops.concatenate([y1, y2], axis=-1), training=training)

    def compute_output_shape(self, input_shape):
        return _with_channels(input_shape, self.filters)

    def fusable_layers(self):
        return list(self.convs.values())

    def official_tensors(self, index, form):
        tensors = []
        for name, conv in self.convs.items():
            tensors += conv.official_tensors_under(f"model.{index}.{name}", form)
        return tensors

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            pool_sizes=list(self.pool_sizes),
            activation=self.activation,
            fused=self.fused,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_yolov7")
class SPPCSPCTiny(FusableBlock):
    """yolov7-tiny's light SPPCSPC: pools in parallel on one branch, all convs 1x1.

    `a = cv1(x)`; `b = cv2(x)`; `y = cv3(concat[maxpool13(b), maxpool9(b), maxpool5(b), b])`;
    output `cv4(concat[y, a])`.

    Args:
        filters: output channels (and hidden channels).
        pool_sizes: the three max-pool sizes, smallest first.
        activation: "leaky_relu" in yolov7-tiny.
        fused: inference form.

    Input shape: `(batch, height, width, channels)`.
    Output shape: `(batch, height, width, filters)`.
    """

    def __init__(self, filters, pool_sizes=(5, 9, 13), activation="leaky_relu", fused=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.pool_sizes = tuple(int(p) for p in pool_sizes)
        self.activation = check_activation(activation)
        self.fused = bool(fused)
        c, act = self.filters, self.activation
        self.convs = [Conv(c, 1, activation=act, fused=self.fused, name=f"cv{i}") for i in range(1, 5)]
        self.pools = [_max_pool(p) for p in self.pool_sizes]

    def build(self, input_shape):
        c = self.filters
        self.convs[0].build(input_shape)
        self.convs[1].build(input_shape)
        self.convs[2].build(_with_channels(input_shape, c * (len(self.pool_sizes) + 1)))
        self.convs[3].build(_with_channels(input_shape, 2 * c))
        super().build(input_shape)

    def call(self, x, training=None):
        cv1, cv2, cv3, cv4 = self.convs
        a = cv1(x, training=training)
        b = cv2(x, training=training)
        y = ops.concatenate([pool(b) for pool in reversed(self.pools)] + [b], axis=-1)
        y = cv3(y, training=training)
        return cv4(ops.concatenate([y, a], axis=-1), training=training)

    def compute_output_shape(self, input_shape):
        return _with_channels(input_shape, self.filters)

    def fusable_layers(self):
        return list(self.convs)

    # Officially nine modules: cv1, cv2, the three pools, their Concat, cv3, the Concat, cv4.
    _official_offsets = (0, 1, 6, 8)

    def official_span(self):
        return 9

    def official_tensors(self, index, form):
        tensors = []
        for conv, offset in zip(self.convs, self._official_offsets, strict=True):
            tensors += conv.official_tensors(index + offset, form)
        return tensors

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            pool_sizes=list(self.pool_sizes),
            activation=self.activation,
            fused=self.fused,
        )
        return config


class _TwoBranchDown(FusableBlock):
    """Shared body of MPTransition and DownC: `concat[cv3x3_s2(cv1x1(x)), cv1x1(maxpool2(x))]`."""

    def __init__(self, filters, activation="silu", fused=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.activation = check_activation(activation)
        self.fused = bool(fused)
        self.pool = _max_pool(2, strides=2)

    def _make_convs(self, hidden, branch):
        act, fused = self.activation, self.fused
        self.pool_conv = Conv(branch, 1, activation=act, fused=fused, name="pool_conv")
        self.reduce_conv = Conv(hidden, 1, activation=act, fused=fused, name="reduce_conv")
        self.down_conv = Conv(branch, 3, strides=2, activation=act, fused=fused, name="down_conv")

    def build(self, input_shape):
        x_shape = input_shape[0] if isinstance(input_shape[0], (list, tuple)) else input_shape
        self.pool_conv.build(x_shape)
        self.reduce_conv.build(x_shape)
        self.down_conv.build(_with_channels(x_shape, self.reduce_conv.filters))
        super().build(input_shape)

    def call(self, inputs, training=None):
        x, skips = (inputs[0], list(inputs[1:])) if isinstance(inputs, (list, tuple)) else (inputs, [])
        down = self.down_conv(self.reduce_conv(x, training=training), training=training)
        pooled = self.pool_conv(self.pool(x), training=training)
        return ops.concatenate([down, pooled] + skips, axis=-1)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape[0], (list, tuple)):
            x_shape, skips = input_shape[0], input_shape[1:]
        else:
            x_shape, skips = input_shape, []
        channels = 2 * self.pool_conv.filters + sum(s[-1] for s in skips)
        return _with_channels(x_shape, channels, scale=2)

    def fusable_layers(self):
        return [self.reduce_conv, self.down_conv, self.pool_conv]

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, activation=self.activation, fused=self.fused)
        return config


@keras.saving.register_keras_serializable(package="keras_yolov7")
class MPTransition(_TwoBranchDown):
    """YOLOv7's MP down-sampling transition: a max-pool branch beside a strided-conv branch.

    Output `concat[conv3x3_s2(conv1x1(x)), conv1x1(maxpool2(x)), *skips]`, each branch `filters`
    channels. Called on a list `[x, skip, ...]`, it appends the skips (feature maps already at the
    output resolution) to the concat, as the official neck does.

    Args:
        filters: channels of each branch (the output has twice as many, plus the skips).
        activation: "silu" or "leaky_relu".
        fused: inference form.

    Input shape: `(batch, height, width, channels)` or a list of it and skips
        `(batch, height / 2, width / 2, skip_channels)`.
    Output shape: `(batch, height / 2, width / 2, 2 * filters + skip channels)`.
    """

    def __init__(self, filters, activation="silu", fused=False, **kwargs):
        super().__init__(filters, activation=activation, fused=fused, **kwargs)
        self._make_convs(self.filters, self.filters)

    def official_span(self):
        # Officially five modules: MP, the pool branch's conv, the reduce conv, the strided conv,
        # the Concat.
        return 5

    def official_tensors(self, index, form):
        return (
            self.pool_conv.official_tensors(index + 1, form)
            + self.reduce_conv.official_tensors(index + 2, form)
            + self.down_conv.official_tensors(index + 3, form)
        )


@keras.saving.register_keras_serializable(package="keras_yolov7")
class DownC(_TwoBranchDown):
    """Down-sampling block of yolov7-e6 / d6 / e6e.

    Output `concat[conv3x3_s2(conv1x1(x)), conv1x1(maxpool2(x))]`; the 1x1 reduce conv keeps the
    input width, each branch has `filters // 2` channels.

    Args:
        filters: output channels (even).
        activation: "silu" or "leaky_relu".
        fused: inference form.

    Input shape: `(batch, height, width, channels)`.
    Output shape: `(batch, height / 2, width / 2, filters)`.
    """

    def __init__(self, filters, activation="silu", fused=False, **kwargs):
        super().__init__(filters, activation=activation, fused=fused, **kwargs)
        if self.filters % 2:
            raise ValueError(f"DownC filters must be even, got {self.filters}")

    def build(self, input_shape):
        self._make_convs(input_shape[-1], self.filters // 2)
        super().build(input_shape)

    def official_tensors(self, index, form):
        """One official module: `cv1` (the reduce conv), `cv2` (strided), `cv3` (pool branch)."""
        prefix = f"model.{index}"
        return (
            self.reduce_conv.official_tensors_under(f"{prefix}.cv1", form)
            + self.down_conv.official_tensors_under(f"{prefix}.cv2", form)
            + self.pool_conv.official_tensors_under(f"{prefix}.cv3", form)
        )


@keras.saving.register_keras_serializable(package="keras_yolov7")
class ReOrg(Fusable):
    """Space-to-depth stem of the P6 models: `concat[x[::2, ::2], x[1::2, ::2], x[::2, 1::2],
    x[1::2, 1::2]]` over (row, column), which is not `tf.nn.space_to_depth`'s channel order.

    Input shape: `(batch, height, width, channels)`, height and width even.
    Output shape: `(batch, height / 2, width / 2, 4 * channels)`.
    """

    def call(self, x):
        return ops.concatenate(
            [x[:, ::2, ::2], x[:, 1::2, ::2], x[:, ::2, 1::2], x[:, 1::2, 1::2]], axis=-1
        )

    def compute_output_shape(self, input_shape):
        return _with_channels(input_shape, 4 * input_shape[-1], scale=2)

    def fused_config(self):
        return self.get_config()
