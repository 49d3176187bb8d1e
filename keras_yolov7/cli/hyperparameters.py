"""--hyp: training hyperparameters as in the official hyp.scratch.*.yaml, routed to the optimizer,
the loss and the augmentations."""

import dataclasses
import pathlib

from keras_yolov7.cli.errors import CLIError

LOSS_KEYS = ("box", "obj", "cls", "anchor_t", "label_smoothing")
# Official key names that differ from AugmentationConfig's.
AUGMENTATION_ALIASES = {"fliplr": "flip_lr", "flipud": "flip_ud"}
# Official keys this implementation does not have, accepted at the value that means "off"
# (None: accepted at any value, the official code does not use it either).
NEUTRAL = {
    "cls_pw": 1.0,
    "obj_pw": 1.0,
    "fl_gamma": 0.0,
    "copy_paste": 0.0,
    "loss_ota": 1,
    "iou_t": None,
}
# Accepted and ignored with a note.
NOT_IMPLEMENTED = {"paste_in": "needs instance masks"}


def parse_hyperparameters(items):
    """`--hyp` items (YAML files and KEY=VALUE pairs, later ones win) -> `{key: float}`."""
    from keras_yolov7.data.checks import read_yaml
    from keras_yolov7.data.checks import shown
    from keras_yolov7.data.checks import shown_value

    values = {}
    for item in items or ():
        if "=" in item:
            key, _, text = item.partition("=")
            try:
                values[key.strip()] = float(text)
            except ValueError:
                raise CLIError(f"--hyp {item}: {text!r} is not a number") from None
            continue
        path = pathlib.Path(item)
        if not path.is_file():
            raise CLIError(
                f"--hyp {item}: expected KEY=VALUE or a YAML file, and no such file exists"
            )
        loaded = read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise CLIError(
                f"--hyp {item}: expected a mapping of hyperparameters, got {type(loaded).__name__}"
            )
        for key, value in loaded.items():
            if not isinstance(value, (int, float)):
                raise CLIError(
                    f"--hyp {item}: {shown(str(key))} is {shown_value(value)}, expected a number"
                )
            values[str(key)] = float(value)
    return values


def route_hyperparameters(values):
    """Splits hyperparameters into `(optimizer, loss, augmentation, notes)` overrides.

    optimizer: keyword arguments of `make_training_setup`; loss: of `YOLOv7Loss.from_detector`;
    augmentation: `AugmentationConfig` fields; notes: one line per official key accepted but
    unused.

    Raises:
        CLIError: an unknown key, or an official key this implementation lacks set to a value
            other than the one that turns it off.
    """
    from keras_yolov7.data import AugmentationConfig
    from keras_yolov7.training.setup import OVERRIDABLE

    augmentation_fields = {field.name for field in dataclasses.fields(AugmentationConfig)}
    optimizer, loss, augmentation, notes = {}, {}, {}, []
    for key, value in values.items():
        if key in OVERRIDABLE:
            optimizer[key] = (
                int(value) if key in ("min_warmup_iterations", "nominal_batch_size") else value
            )
        elif key in LOSS_KEYS:
            loss[key] = value
        elif AUGMENTATION_ALIASES.get(key, key) in augmentation_fields:
            augmentation[AUGMENTATION_ALIASES.get(key, key)] = value
        elif key in NEUTRAL:
            neutral = NEUTRAL[key]
            if neutral is not None and value != neutral:
                raise CLIError(
                    f"hyperparameter {key}={value:g} is not supported (only {neutral:g})"
                )
        elif key in NOT_IMPLEMENTED:
            notes.append(f"hyperparameter {key} is ignored ({NOT_IMPLEMENTED[key]})")
        else:
            known = sorted(
                set(OVERRIDABLE) | set(LOSS_KEYS) | augmentation_fields | set(AUGMENTATION_ALIASES)
            )
            raise CLIError(f"unknown hyperparameter {key!r}; expected one of {', '.join(known)}")
    return optimizer, loss, augmentation, notes
