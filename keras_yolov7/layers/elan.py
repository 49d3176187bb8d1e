"""ELAN and E-ELAN, the efficient layer aggregation blocks of YOLOv7's backbone and neck."""

import keras
from keras import ops

from keras_yolov7.layers.block import FusableBlock
from keras_yolov7.layers.conv import Conv
from keras_yolov7.layers.conv import check_activation
from keras_yolov7.layers.repconv import RepConvN

CHAIN_BLOCKS = ("conv", "repconvn")


@keras.saving.register_keras_serializable(package="keras_yolov7")
class ELAN(FusableBlock):
    """Efficient layer aggregation: a CSP split, a chain of 3x3 convs, a tapped concat, a transition.

    `a = cv1(x)`, `b = cv2(x)` (two 1x1 convs), `c_1 = chain_1(b)`, ..., `c_n = chain_n(c_{n-1})`
    (3x3 convs); the concat takes the outputs `[a, b, c_1, ..., c_n]` selected by `taps`, offsets
    counted back from the concat as in the official configs (`-1` is `c_n`, `-(depth + 2)` is `a`),
    in that order; a 1x1 transition conv gives the output.

    Args:
        filters: output channels (transition conv).
        branch_filters: channels of the two 1x1 split convs.
        chain_filters: channels of the 3x3 chain convs.
        depth: number of chain convs.
        taps: concat order, e.g. `(-1, -3, -5, -6)` (backbone) or `(-1, -2, -3, -4, -5, -6)` (neck).
        activation: "silu" or "leaky_relu".
        chain_block: "conv" (official) or "repconvn" (the paper's planned re-parameterised
            conv in place of each 3x3 chain conv; it fuses back to a plain 3x3 conv).
        fused: inference form (BatchNormalization folded, RepConvN merged).

    Input shape: `(batch, height, width, channels)`.
    Output shape: `(batch, height, width, filters)`.

    Example:
    >>> block = ELAN(256, 64, 64, depth=4, taps=(-1, -3, -5, -6))
    >>> block(np.zeros((1, 16, 16, 128))).shape
    (1, 16, 16, 256)
    """

    def __init__(
        self,
        filters,
        branch_filters,
        chain_filters,
        depth,
        taps,
        activation="silu",
        chain_block="conv",
        fused=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.branch_filters = int(branch_filters)
        self.chain_filters = int(chain_filters)
        self.depth = int(depth)
        self.taps = tuple(int(t) for t in taps)
        self.activation = check_activation(activation)
        if chain_block not in CHAIN_BLOCKS:
            raise ValueError(f"chain_block must be one of {CHAIN_BLOCKS}, got {chain_block!r}")
        self.chain_block = chain_block
        self.fused = bool(fused)
        bad = [t for t in self.taps if not -(self.depth + 2) <= t <= -1]
        if bad or not self.taps:
            raise ValueError(
                f"taps must be non-empty offsets in [-{self.depth + 2}, -1] for depth {self.depth}, "
                f"got {self.taps}"
            )
        act, fused = self.activation, self.fused
        self.cv1 = Conv(self.branch_filters, 1, activation=act, fused=fused, name="cv1")
        self.cv2 = Conv(self.branch_filters, 1, activation=act, fused=fused, name="cv2")
        chain_cls = RepConvN if chain_block == "repconvn" else Conv
        self.chain = [
            chain_cls(self.chain_filters, 3, activation=act, fused=fused, name=f"chain_{i}")
            for i in range(self.depth)
        ]
        self.transition = Conv(self.filters, 1, activation=act, fused=fused, name="transition")

    def _tap_channels(self):
        channels = [self.branch_filters] * 2 + [self.chain_filters] * self.depth
        return sum(channels[self.depth + 2 + t] for t in self.taps)

    def build(self, input_shape):
        self.cv1.build(input_shape)
        self.cv2.build(input_shape)
        shape = tuple(input_shape[:-1]) + (self.branch_filters,)
        for layer in self.chain:
            layer.build(shape)
            shape = tuple(input_shape[:-1]) + (self.chain_filters,)
        self.transition.build(tuple(input_shape[:-1]) + (self._tap_channels(),))
        super().build(input_shape)

    def call(self, x, training=None):
        outputs = [self.cv1(x, training=training), self.cv2(x, training=training)]
        y = outputs[-1]
        for layer in self.chain:
            y = layer(y, training=training)
            outputs.append(y)
        y = ops.concatenate([outputs[self.depth + 2 + t] for t in self.taps], axis=-1)
        return self.transition(y, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def fusable_layers(self):
        return [self.cv1, self.cv2, *self.chain, self.transition]

    def official_span(self):
        # cv1, cv2, the chain convs, the Concat, the transition: one official module each.
        return self.depth + 4

    def official_tensors(self, index, form):
        if self.chain_block != "conv":
            raise ValueError(
                f"{self.name}: official checkpoints have plain 3x3 convs in ELAN, this block has "
                f"chain_block={self.chain_block!r} (a model built with "
                f"elan_chain_block={self.chain_block!r})"
            )
        tensors = self.cv1.official_tensors(index, form) + self.cv2.official_tensors(index + 1, form)
        for k, layer in enumerate(self.chain):
            tensors += layer.official_tensors(index + 2 + k, form)
        return tensors + self.transition.official_tensors(index + self.depth + 3, form)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            branch_filters=self.branch_filters,
            chain_filters=self.chain_filters,
            depth=self.depth,
            taps=list(self.taps),
            activation=self.activation,
            chain_block=self.chain_block,
            fused=self.fused,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_yolov7")
class EELAN(FusableBlock):
    """Extended ELAN (yolov7-e6e): two structurally identical ELAN branches on one input, summed.

    This realises E-ELAN's expand / shuffle / merge cardinality without grouped convolutions (which
    break tf2onnx export on the TensorFlow backend). Takes the ELAN arguments.

    Args:
        return_second_branch: also return the second branch's output before the sum (the
            auxiliary heads of yolov7-e6e tap it); the call then returns `(sum, branch)`.

    Input shape: `(batch, height, width, channels)`.
    Output shape: `(batch, height, width, filters)` (twice with `return_second_branch`).
    """

    def __init__(
        self,
        filters,
        branch_filters,
        chain_filters,
        depth,
        taps,
        activation="silu",
        chain_block="conv",
        fused=False,
        return_second_branch=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.elan_args = dict(
            filters=filters,
            branch_filters=branch_filters,
            chain_filters=chain_filters,
            depth=depth,
            taps=taps,
            activation=activation,
            chain_block=chain_block,
            fused=fused,
        )
        self.return_second_branch = bool(return_second_branch)
        self.branch_1 = ELAN(**self.elan_args, name="branch_1")
        self.branch_2 = ELAN(**self.elan_args, name="branch_2")
        self.filters = self.branch_1.filters

    def build(self, input_shape):
        self.branch_1.build(input_shape)
        self.branch_2.build(input_shape)
        super().build(input_shape)

    def call(self, x, training=None):
        second = self.branch_2(x, training=training)
        summed = second + self.branch_1(x, training=training)
        if self.return_second_branch:
            return summed, second
        return summed

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[:-1]) + (self.filters,)
        return (shape, shape) if self.return_second_branch else shape

    def fusable_layers(self):
        return [self.branch_1, self.branch_2]

    def official_span(self):
        # The two ELANs one after the other, then the module that sums them.
        return 2 * self.branch_1.official_span() + 1

    def official_tensors(self, index, form):
        second = index + self.branch_1.official_span()
        return self.branch_1.official_tensors(index, form) + self.branch_2.official_tensors(second, form)

    def get_config(self):
        config = super().get_config()
        elan_config = self.branch_1.get_config()
        config.update({key: elan_config[key] for key in self.elan_args})
        config["return_second_branch"] = self.return_second_branch
        return config
