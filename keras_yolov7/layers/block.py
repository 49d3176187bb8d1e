"""Base classes of the YOLOv7 layers: the shared `get_fused()` machinery."""

import keras
from keras import ops


class Fusable(keras.layers.Layer):
    """A layer with an inference form (`get_fused()`) whose outputs equal its own.

    Leaf layers implement `fused_weights()`: the weights of their fused form, in the order of that
    form's `weights`, computed without building it. `fused_config()` is the fused form's config.
    Subclasses that override `build` call `super().build(input_shape)` at its end.
    """

    def build(self, input_shape):
        self.build_input_shape = input_shape
        self.built = True

    def fused_config(self):
        return {**self.get_config(), "fused": True}

    def fused_weights(self):
        """Weights of the fused form as numpy arrays (default: this layer's own, unchanged)."""
        return [ops.convert_to_numpy(w) for w in self.weights]

    def get_fused(self):
        """The inference-only form of this layer, built and holding the folded weights."""
        fused = self.__class__.from_config(self.fused_config())
        fused.build(self.build_input_shape)
        copy_fused_weights(self, fused)
        return fused

    # Official PyTorch names (see layers/official.py). By default a layer is one official module
    # without tensors (ReOrg); layers holding weights declare them.

    def official_span(self):
        """How many official module indices (`model.{i}`) this layer occupies."""
        return 1

    def official_tensors(self, index, form):
        """This layer's tensors of the official `form`, its first module being `model.{index}`:
        a list of `OfficialTensor` in state_dict order (built layers only)."""
        return []

    def official_defaults(self, form):
        """`(variable, value)` pairs for the variables the official `form` does not hold but
        whose value it implies (the deploy head's implicit vectors: add 0, multiply 1)."""
        return []


class FusableBlock(Fusable):
    """A block made of fusable sublayers whose fused form has the same structure.

    Subclasses take a `fused` constructor argument, create their sublayers, list them in
    `fusable_layers()` in a fixed order and call `super().build(input_shape)` at the end of `build`.
    """

    def fusable_layers(self):
        raise NotImplementedError


def copy_fused_weights(source, target):
    """Sets `target` (the fused form of `source`, built) to `source`'s folded weights."""
    if isinstance(source, FusableBlock):
        for child, fused_child in zip(source.fusable_layers(), target.fusable_layers(), strict=True):
            copy_fused_weights(child, fused_child)
    else:
        target.set_weights(source.fused_weights())
