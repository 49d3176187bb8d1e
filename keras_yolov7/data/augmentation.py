"""Augmentation hyperparameters of the official recipe, per preset family."""

import dataclasses

from keras_yolov7.models.configs import ARCHITECTURES


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """Probabilities and gains of the training augmentations (defaults: official P5).

    Values follow the official `data/hyp.scratch.{tiny,p5,p6}.yaml` (P6 equals P5 for every
    augmentation). The official `paste_in` (0.15, tiny 0.05) needs instance masks and is not
    implemented.

    Attributes:
        mosaic: probability of a mosaic (else one letterboxed image).
        mosaic9: probability that a mosaic uses 9 images instead of 4 (official: 0.2).
        mixup: probability of blending with a second mosaic (only after a mosaic, as official).
        mixup_alpha: the blend ratio is drawn from Beta(mixup_alpha, mixup_alpha).
        degrees: rotation range (+/- degrees).
        translate: translation range (+/- fraction of the image size).
        scale: scale gain, drawn from U(1 - scale, 1.1 + scale).
        shear: shear range (+/- degrees).
        perspective: perspective range (+/- fraction; official range 0..0.001).
        hsv_h, hsv_s, hsv_v: HSV gains; each channel is multiplied by U(1 - gain, 1 + gain).
        flip_lr, flip_ud: probabilities of a horizontal / vertical flip.
        box_min_size: after the warp a box needs width and height above this (pixels).
        box_min_area_ratio: ... and keeps more than this fraction of its area (vs before the warp,
            scale included).
        box_max_aspect_ratio: ... and an aspect ratio (either way) below this.
    """

    mosaic: float = 1.0
    mosaic9: float = 0.2
    mixup: float = 0.15
    mixup_alpha: float = 8.0
    degrees: float = 0.0
    translate: float = 0.2
    scale: float = 0.9
    shear: float = 0.0
    perspective: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    flip_lr: float = 0.5
    flip_ud: float = 0.0
    box_min_size: float = 2.0
    box_min_area_ratio: float = 0.1
    box_max_aspect_ratio: float = 20.0

    def __post_init__(self):
        for name in ("mosaic", "mosaic9", "mixup", "flip_lr", "flip_ud"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability; expected 0..1, got {value}")
        for name in (
            "translate",
            "scale",
            "degrees",
            "shear",
            "perspective",
            "hsv_h",
            "hsv_s",
            "hsv_v",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.mixup_alpha <= 0:
            raise ValueError(f"mixup_alpha must be > 0, got {self.mixup_alpha}")

    @classmethod
    def for_preset(cls, name):
        """The official values for a preset ("yolov7_tiny", "yolov7", ...) or family ("tiny",
        "p5", "p6")."""
        family = ARCHITECTURES[name]["family"] if name in ARCHITECTURES else name
        if family == "tiny":
            return cls(mixup=0.05, translate=0.1, scale=0.5)
        if family in ("p5", "p6"):
            return cls()
        raise ValueError(
            f"unknown preset {name!r}; expected one of {list(ARCHITECTURES)} or 'tiny', 'p5', 'p6'"
        )
