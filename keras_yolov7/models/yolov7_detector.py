"""YOLOv7Detector: the YOLOv7 family as one Keras model class."""

import keras
import numpy as np

from keras_yolov7.models.builder import build_network
from keras_yolov7.models.builder import resolve_architecture
from keras_yolov7.models.configs import ARCHITECTURES


@keras.saving.register_keras_serializable(package="keras_yolov7")
class YOLOv7Detector(keras.Model):
    """YOLOv7 object detector (arXiv 2207.02696) built from the paper's blocks.

    Calling the model returns raw logits, one tensor per output level: the lead levels first, then
    the auxiliary levels of the P6 models (training form only), each
    `(batch, height / stride, width / stride, num_anchors, 5 + num_classes)` with channels
    `x, y, w, h, objectness, classes...`. `keras_yolov7.ops.decode_predictions` turns them into boxes.

    Args:
        architecture: a preset name (`YOLOv7Detector.presets`) or an architecture dict in the format
            of `keras_yolov7.models.configs`.
        num_classes: number of classes.
        bounding_box_format: format of boxes given to and returned by the model (any Keras
            bounding box format: "xyxy", "xywh", "center_xywh", "yxyx", "rel_xyxy", ...).
        class_names: optional name of each class (used by plots, the CLI and export metadata).
        image_size: fixed input size `(height, width)` or an int for square images; `None` accepts
            any size that is a multiple of the largest stride.
        anchors: `(num_levels, num_anchors, 2)` anchor sizes in pixels, overriding the
            architecture's (official checkpoints may carry anchors re-fitted by autoanchor).
        fused: inference form: BatchNormalization folded into convs, RepConv branches merged,
            implicit vectors folded into the head, no auxiliary head. Use `get_fused()` to turn a
            trained model into this form.
        elan_chain_block: "conv" (official) or "repconvn": the 3x3 convs of every ELAN become the
            paper's planned re-parameterised RepConvN (trained as branches, fused to one conv).

    Input shape: `(batch, height, width, 3)` RGB images, pixel values 0..255 (uint8 or float).

    Example:
    >>> model = YOLOv7Detector.from_preset("yolov7_tiny", num_classes=3)
    >>> raw = model(np.zeros((1, 256, 256, 3), "uint8"))
    >>> [tuple(r.shape) for r in raw]
    [(1, 32, 32, 3, 8), (1, 16, 16, 3, 8), (1, 8, 8, 3, 8)]
    """

    presets = tuple(ARCHITECTURES)

    def __init__(
        self,
        architecture="yolov7",
        num_classes=80,
        bounding_box_format="xyxy",
        class_names=None,
        image_size=None,
        anchors=None,
        fused=False,
        elan_chain_block="conv",
        **kwargs,
    ):
        arch = resolve_architecture(architecture)
        if class_names is not None:
            class_names = [str(name) for name in class_names]
            if len(class_names) != int(num_classes):
                raise ValueError(
                    f"class_names has {len(class_names)} names but num_classes is {num_classes}"
                )
        if anchors is not None:
            anchors = np.asarray(anchors, np.float32)
            expected = np.asarray(arch["anchors"], np.float32).reshape(len(arch["strides"]), -1, 2)
            if anchors.shape != expected.shape:
                raise ValueError(
                    f"anchors must have shape {expected.shape} (levels, anchors, 2) for this "
                    f"architecture, got {anchors.shape}"
                )
            arch["anchors"] = anchors.reshape(len(arch["strides"]), -1).tolist()
        if image_size is None:
            height = width = None
        elif isinstance(image_size, int):
            height = width = image_size
        else:
            height, width = (int(s) for s in image_size)
        images = keras.Input((height, width, 3), name="images")
        raw = build_network(images, arch, num_classes, fused=fused, chain_block=elan_chain_block)
        super().__init__(inputs=images, outputs=raw, **kwargs)

        self.architecture = architecture
        self.num_classes = int(num_classes)
        self.bounding_box_format = bounding_box_format
        self.class_names = class_names
        self.image_size = image_size if image_size is None else (height, width)
        self.fused = bool(fused)
        self.elan_chain_block = elan_chain_block
        self.strides = tuple(int(s) for s in arch["strides"])
        self.anchors = np.asarray(arch["anchors"], np.float32).reshape(len(self.strides), -1, 2)
        self.num_levels = len(self.strides)
        self.has_auxiliary_head = not self.fused and bool(arch.get("aux"))

    @classmethod
    def from_preset(cls, preset, num_classes=80, **kwargs):
        """A freshly initialised model of one of the seven official architectures.

        Args:
            preset: one of "yolov7_tiny", "yolov7", "yolov7x", "yolov7_w6", "yolov7_e6",
                "yolov7_d6", "yolov7_e6e".
            num_classes: number of classes.
            **kwargs: other constructor arguments (`bounding_box_format`, `image_size`, ...).

        Official weights are not downloaded; load a converted checkpoint with
        `keras_yolov7.convert.load_torch_checkpoint`.
        """
        if preset not in ARCHITECTURES:
            raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(ARCHITECTURES)}")
        return cls(architecture=preset, num_classes=num_classes, **kwargs)

    def get_fused(self):
        """The inference form of this model, with equal lead outputs (to float precision).

        BatchNormalization is folded into every conv, RepConv / RepConvN branches are merged into
        one 3x3 conv, the implicit vectors are folded into the head convs and the auxiliary head is
        dropped. Returns a new `YOLOv7Detector` with `fused=True`.
        """
        config = self.get_config()
        config.update(fused=True, name=f"{self.name}_fused")
        fused = self.__class__.from_config(config)
        for layer in fused.layers:
            if layer.weights:
                layer.set_weights(self.get_layer(layer.name).get_fused().get_weights())
        return fused

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "bounding_box_format": self.bounding_box_format,
            "class_names": self.class_names,
            "image_size": self.image_size,
            "anchors": self.anchors.tolist(),
            "fused": self.fused,
            "elan_chain_block": self.elan_chain_block,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
