"""make_training_setup: the official recipe for a model in one call (optimizer and callbacks)."""

from keras_yolov7.models.configs import ARCHITECTURES
from keras_yolov7.models.configs import family_of
from keras_yolov7.training.ema import ModelEMA
from keras_yolov7.training.groups import parameter_groups
from keras_yolov7.training.optimizer import YOLOv7SGD
from keras_yolov7.training.schedule import HYPERPARAMETERS

PRESET_FAMILIES = {name: family_of(arch) for name, arch in ARCHITECTURES.items()}
OVERRIDABLE = (
    "lr0",
    "lrf",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "warmup_momentum",
    "warmup_bias_lr",
    "min_warmup_iterations",
    "nominal_batch_size",
)


def make_training_setup(
    model,
    epochs,
    steps_per_epoch,
    batch_size,
    preset_family=None,
    ema=True,
    gradient_scale=1.0,
    **hyperparameters,
):
    """The official YOLOv7 optimizer and callbacks for `model`, ready for `compile` and `fit`.

    Builds a `YOLOv7SGD` with the family's official hyperparameters (`HYPERPARAMETERS`: lrf 0.1 for
    P5, 0.2 for P6, 0.01 for tiny), gives it the model's `parameter_groups`, and a `ModelEMA`.

    Args:
        model: the built model to train (e.g. a `YOLOv7ObjectDetector`).
        epochs: epochs of the run, as passed to `fit` (the cosine period).
        steps_per_epoch: batches per epoch, as `fit` will run them.
        batch_size: global batch size (gradients are accumulated to the nominal 64).
        preset_family: "p5", "p6" or "tiny"; None takes it from a `YOLOv7ObjectDetector` built from a
            preset (`model.architecture`).
        ema: include the `ModelEMA` callback (its weights are the ones validated and saved).
        gradient_scale: 1.0 when the loss is the official `(lbox + lobj + lcls) * batch_size`;
            `batch_size` when the loss is the per-image mean (see `YOLOv7SGD`).
        **hyperparameters: overrides of the family's values, among `OVERRIDABLE`.

    Returns:
        `(optimizer, callbacks)`: put the callbacks FIRST in the `fit` callback list, so that the
        checkpoint and evaluation callbacks after them see the EMA weights at each epoch end.

    Example:

        model = YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=3)
        optimizer, callbacks = make_training_setup(
            model, epochs=300, steps_per_epoch=len(train), batch_size=16
        )
        model.compile(optimizer=optimizer)
        model.fit(train, epochs=300, validation_data=val, callbacks=callbacks + [checkpoint])
    """
    family = preset_family if preset_family is not None else _family_of(model)
    if family not in HYPERPARAMETERS:
        raise ValueError(f"preset_family must be one of {sorted(HYPERPARAMETERS)}, got {family!r}")
    unknown = sorted(set(hyperparameters) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(f"unknown hyperparameters {unknown}; expected some of {OVERRIDABLE}")
    settings = {**HYPERPARAMETERS[family], **hyperparameters}
    optimizer = YOLOv7SGD(
        steps_per_epoch, epochs, batch_size, gradient_scale=gradient_scale, **settings
    )
    optimizer.set_parameter_groups(parameter_groups(model))
    callbacks = [ModelEMA()] if ema else []
    return optimizer, callbacks


def _family_of(model):
    family = getattr(model, "family", None)
    if family is not None:
        return family
    raise ValueError(
        f"cannot tell the hyperparameter family of model {model.name!r} (not a YOLOv7ObjectDetector): "
        "pass preset_family='p5', 'p6' or 'tiny'"
    )
