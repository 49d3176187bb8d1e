"""Base class of the composite YOLOv7 blocks: shared get_fused() over ordered sublayers."""

import keras


class FusableBlock(keras.layers.Layer):
    """A block made of fusable sublayers (Conv, RepConv, ...) whose fused form has the same structure.

    Subclasses take a `fused` constructor argument, create their sublayers in `build`, list them in
    `fusable_layers()` in a fixed order and call `super().build(input_shape)` at the end of `build`.
    """

    def build(self, input_shape):
        self.build_input_shape = input_shape
        self.built = True

    def fusable_layers(self):
        raise NotImplementedError

    def get_fused(self):
        """The same block with every sublayer replaced by its fused form; outputs are equal."""
        fused = self.__class__(**{**self.get_config(), "fused": True})
        fused.build(self.build_input_shape)
        for source, target in zip(self.fusable_layers(), fused.fusable_layers(), strict=True):
            target.set_weights(source.get_fused().get_weights())
        return fused
