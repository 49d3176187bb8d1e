"""YOLOv7Backbone: the YOLOv7 network (backbone and neck) as a KerasHub Backbone."""

import keras
import keras_hub
from keras_hub.src.utils.python_utils import classproperty
import numpy as np

from keras_yolov7.layers.block import copy_fused_weights
from keras_yolov7.models.builder import build_features
from keras_yolov7.models.builder import level_names
from keras_yolov7.models.builder import resolve_architecture
from keras_yolov7.models.configs import ARCHITECTURES
from keras_yolov7.models.configs import family_of
from keras_yolov7.models import presets as preset_table


@keras.saving.register_keras_serializable(package="keras_yolov7")
class YOLOv7Backbone(keras_hub.models.Backbone):
    """The YOLOv7 network (arXiv 2207.02696) up to the detection heads.

    One of the seven official architectures (`ARCHITECTURES`, held as data in
    `keras_yolov7.models.configs`) or an architecture dict of that format, built as a functional
    model from the paper's blocks (ELAN / E-ELAN, MP and DownC transitions, SPPCSPC, RepConv).

    Args:
        architecture: a preset name ("yolov7_tiny", "yolov7", "yolov7x", "yolov7_w6",
            "yolov7_e6", "yolov7_d6", "yolov7_e6e") or an architecture dict.
        image_shape: `(height, width, 3)`; `None` sides accept any multiple of the largest stride.
        fused: inference form: BatchNormalization folded into convs, RepConv branches merged, and
            the nodes that only feed the auxiliary head left out. `get_fused()` turns a trained
            backbone into this form.
        elan_chain_block: "conv" (official) or "repconvn": the 3x3 convs of every ELAN become the
            paper's planned re-parameterised RepConvN (trained as branches, fused to one conv).
        dtype: the dtype policy of the layers (e.g. "mixed_bfloat16").

    Input shape: `(batch, height, width, 3)` RGB images, pixel values 0..255 (uint8 or float);
    they are rescaled to [0, 1] inside.
    Output: a dict of feature maps `(batch, height / stride, width / stride, channels)`: the lead
    levels "P3", "P4", "P5" (and "P6" for the P6 models) and, for the P6 models in training form,
    the auxiliary levels "aux_P3" ... "aux_P6".

    Example:
    >>> backbone = YOLOv7Backbone.from_preset("yolov7_tiny")
    >>> features = backbone(np.zeros((1, 256, 256, 3), "uint8"))
    >>> {name: tuple(f.shape) for name, f in features.items()}
    {'P3': (1, 32, 32, 64), 'P4': (1, 16, 16, 128), 'P5': (1, 8, 8, 256)}
    """

    def __init__(
        self,
        architecture="yolov7",
        image_shape=(None, None, 3),
        fused=False,
        elan_chain_block="conv",
        dtype=None,
        **kwargs,
    ):
        unknown = sorted(set(kwargs) - {"name", "trainable"})
        if unknown:
            # Keras' functional models accept (and ignore) any keyword; a misspelt option must not
            # vanish.
            raise TypeError(f"YOLOv7Backbone got unexpected arguments {unknown}")
        arch = resolve_architecture(architecture)
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or image_shape[-1] != 3:
            raise ValueError(
                f"image_shape must be (height, width, 3) (RGB), got {image_shape}"
            )
        images = keras.Input(image_shape, name="images")
        features = build_features(images, arch, fused=bool(fused), chain_block=elan_chain_block)
        super().__init__(inputs=images, outputs=features, dtype=dtype, **kwargs)

        self.architecture = architecture
        self.image_shape = image_shape
        self.fused = bool(fused)
        self.elan_chain_block = elan_chain_block
        self.strides = tuple(int(s) for s in arch["strides"])
        self.num_anchors = len(arch["anchors"][0]) // 2
        self.default_anchors = np.asarray(arch["anchors"], np.float32).reshape(
            len(self.strides), self.num_anchors, 2
        )
        self.training_size = int(arch.get("input_size", 640))
        self.family = family_of(arch)
        self.lead_levels = level_names(self.strides)
        self.auxiliary_levels = [name for name in level_names(self.strides, True) if name in features]

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """A backbone from an architecture name (random weights), a pretrained preset name
        (`"yolov7_tiny_coco"`, ...: official COCO weights, downloaded and converted once), or
        any KerasHub preset handle or directory (`"./my_preset"`, `"hf://..."`, `"kaggle://..."`).

        Args:
            preset: see above; `YOLOv7Backbone.presets` lists the names.
            load_weights: load the preset's weights (else random initialisation).
            **kwargs: constructor arguments overriding the preset's (e.g. `dtype`).
        """
        if preset in ARCHITECTURES:
            return cls(architecture=preset, name=f"{preset}_backbone", **kwargs)
        directory = preset_table.resolve(preset)
        return super().from_preset(directory, load_weights=load_weights, **kwargs)

    @classproperty
    def presets(cls):
        """The preset names: architectures (random weights) and official COCO weights."""
        return preset_table.describe_presets()

    def get_fused(self):
        """The inference form of this backbone (`fused=True`), with equal lead features."""
        config = self.get_config()
        config.update(fused=True, name=f"{self.name}_fused")
        fused = self.__class__.from_config(config)
        for layer in fused.layers:
            if layer.weights:
                copy_fused_weights(self.get_layer(layer.name), layer)
        return fused

    def get_config(self):
        config = super().get_config()
        config.update(
            architecture=self.architecture,
            image_shape=list(self.image_shape),
            fused=self.fused,
            elan_chain_block=self.elan_chain_block,
        )
        return config
