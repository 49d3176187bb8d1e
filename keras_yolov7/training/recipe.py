"""The official YOLOv7 training recipe in one call (`make_training_setup`): the optimizer with its
parameter groups and schedule, and the EMA callback."""

from keras_yolov7.models.configs import ARCHITECTURES
from keras_yolov7.models.configs import family_of
from keras_yolov7.training.ema import ModelEMA
from keras_yolov7.training.groups import parameter_groups
from keras_yolov7.training.optimizer import YOLOv7SGD
from keras_yolov7.training.schedule import HYPERPARAMETERS
from keras_yolov7.training.schedule import MIN_WARMUP_ITERATIONS
from keras_yolov7.training.schedule import NOMINAL_BATCH_SIZE
from keras_yolov7.training.schedule import accumulation_steps
from keras_yolov7.training.schedule import warmup_iterations

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


# A run updates its weights fewer times per epoch than this, and the short-run advice says so.
MIN_UPDATES_PER_EPOCH = 10


def short_run_advice(epochs, steps_per_epoch, batch_size, **hyperparameters):
    """One line saying how the official recipe fits a short run, or None when it fits.

    The recipe is tuned for long runs on large datasets: it warms up for at least
    `min_warmup_iterations` (1000) batches and sums gradients to a nominal batch of 64. On a
    small dataset or a short run the warmup may cover most of the run, and the accumulation
    leave few weight updates per epoch; the line names the overrides that fit the run: a warmup
    of about a tenth of it, and a nominal batch that updates the weights at least
    `MIN_UPDATES_PER_EPOCH` times an epoch.

    Args:
        epochs, steps_per_epoch, batch_size: the planned run (`batch_size` global).
        **hyperparameters: the run's optimizer hyperparameters (`warmup_epochs`,
            `min_warmup_iterations`, `nominal_batch_size`; the official values otherwise).

    Returns:
        A string, or None.
    """
    warmup_epochs = hyperparameters.get("warmup_epochs", HYPERPARAMETERS["p5"]["warmup_epochs"])
    minimum = hyperparameters.get("min_warmup_iterations", MIN_WARMUP_ITERATIONS)
    nominal = hyperparameters.get("nominal_batch_size", NOMINAL_BATCH_SIZE)
    total = epochs * steps_per_epoch
    warmup = warmup_iterations(steps_per_epoch, warmup_epochs, minimum)
    accumulate = accumulation_steps(batch_size, nominal)
    updates = steps_per_epoch / accumulate
    problems, overrides = [], {}
    if warmup > total / 2:
        problems.append(f"the warmup lasts {warmup} batches of the {total} planned")
        short = max(1, total // 10)
        overrides["warmup_epochs"] = round(short / steps_per_epoch, 2)
        overrides["min_warmup_iterations"] = short
    if updates < MIN_UPDATES_PER_EPOCH:
        problems.append(
            f"gradients are summed over {accumulate} batches (nominal batch {nominal}), "
            f"{updates:.3g} weight updates per epoch"
        )
        per_update = max(1, steps_per_epoch // MIN_UPDATES_PER_EPOCH)
        overrides["nominal_batch_size"] = batch_size * per_update
    if not problems:
        return None
    shown = " ".join(f"{key}={value:g}" for key, value in overrides.items())
    return (
        f"short run: {' and '.join(problems)}; the official recipe is tuned for long runs, "
        f"consider the hyperparameters {shown} (--hyp {shown})"
    )
