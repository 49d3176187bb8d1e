"""The official learning-rate, momentum and accumulation schedule: warmup, then the cosine factor.

All of it is a function of the batch iteration `ni` (batches seen since training began, the official
`ni = i + nb * epoch`), so it can be recomputed anywhere: in a training graph (keras.ops, jit on every
backend) or on the host (NumPy inputs).

Official rules (WongKinYiu/yolov7 train.py, hyp.scratch.*.yaml):
- epoch `e = ni // steps_per_epoch`; cosine factor `lf(e) = ((1 - cos(e * pi / epochs)) / 2) *
  (lrf - 1) + 1`, applied per epoch (LambdaLR stepped after each epoch).
- warmup for `nw = max(round(warmup_epochs * steps_per_epoch), 1000)` batches: while `ni <= nw` the
  bias group's learning rate goes linearly from `warmup_bias_lr` to `lr0 * lf(e)`, the other groups'
  from 0 to `lr0 * lf(e)`, and momentum from `warmup_momentum` to `momentum`; afterwards every group
  uses `lr0 * lf(e)` and momentum `momentum`.
- gradient accumulation to a nominal batch of 64: `accumulate = max(round(64 / batch_size), 1)`,
  ramped during warmup as `max(1, round(interp(ni, [0, nw], [1, 64 / batch_size])))`; the optimizer
  steps at the batches where `ni % accumulate == 0`.
"""

import math

import keras
import numpy as np
from keras import ops

# Official hyperparameters (data/hyp.scratch.{p5,p6,tiny}.yaml) that the optimizer uses.
_COMMON = {
    "lr0": 0.01,
    "momentum": 0.937,
    "weight_decay": 5e-4,
    "warmup_epochs": 3.0,
    "warmup_momentum": 0.8,
    "warmup_bias_lr": 0.1,
}
HYPERPARAMETERS = {
    "p5": {**_COMMON, "lrf": 0.1},
    "p6": {**_COMMON, "lrf": 0.2},
    "tiny": {**_COMMON, "lrf": 0.01},
}
NOMINAL_BATCH_SIZE = 64
MIN_WARMUP_ITERATIONS = 1000


def warmup_iterations(
    steps_per_epoch, warmup_epochs=3.0, min_warmup_iterations=MIN_WARMUP_ITERATIONS
):
    """Number of warmup batches `nw = max(round(warmup_epochs * steps_per_epoch), min_warmup_iterations)`."""
    return max(round(warmup_epochs * steps_per_epoch), int(min_warmup_iterations))


def accumulation_steps(batch_size, nominal_batch_size=NOMINAL_BATCH_SIZE):
    """Batches summed per optimizer step after warmup: `max(round(nominal_batch_size / batch_size), 1)`.

    `batch_size` is the global batch (all replicas together).
    """
    _check_positive("batch_size", batch_size)
    return max(round(nominal_batch_size / batch_size), 1)


def update_iteration_table(batch_size, warmup_iterations, nominal_batch_size=NOMINAL_BATCH_SIZE):
    """Whether the optimizer steps at each warmup batch `ni = 0 .. warmup_iterations`.

    Computed with NumPy exactly as the official loop does (float64 `np.interp`, round half to even),
    so a graph only looks values up instead of reproducing float64 rounding.

    Returns:
        `(warmup_iterations + 1,)` bool array.
    """
    ni = np.arange(warmup_iterations + 1)
    ramp = np.interp(ni, [0, warmup_iterations], [1, nominal_batch_size / batch_size])
    accumulate = np.maximum(1, ramp.round()).astype(np.int64)
    return ni % accumulate == 0


def is_update_iteration(
    iteration, batch_size, warmup_iterations, nominal_batch_size=NOMINAL_BATCH_SIZE
):
    """Whether the official loop calls `optimizer.step()` at batch `iteration` (host-side, int).

    Example:
    >>> [is_update_iteration(ni, 16, warmup_iterations=1000) for ni in (0, 1, 2, 1004, 1005)]
    [True, True, True, True, False]
    """
    if iteration <= warmup_iterations:
        return bool(
            update_iteration_table(batch_size, warmup_iterations, nominal_batch_size)[iteration]
        )
    return iteration % accumulation_steps(batch_size, nominal_batch_size) == 0


def cosine_factor(epoch, epochs, lrf):
    """The official one-cycle factor `((1 - cos(epoch * pi / epochs)) / 2) * (lrf - 1) + 1`: 1 -> lrf."""
    epoch = ops.cast(epoch, "float32")
    return ((1.0 - ops.cos(epoch * (math.pi / epochs))) / 2.0) * (lrf - 1.0) + 1.0


def official_lr_and_momentum(
    iteration,
    steps_per_epoch,
    epochs,
    lr0=0.01,
    lrf=0.1,
    momentum=0.937,
    warmup_epochs=3.0,
    warmup_momentum=0.8,
    warmup_bias_lr=0.1,
    min_warmup_iterations=MIN_WARMUP_ITERATIONS,
):
    """Per-group learning rates and the momentum that the official loop uses at batch `iteration`.

    Works on a Python int, a NumPy array of iterations or a backend tensor (inside a jit-compiled
    train step), using keras.ops only.

    Args:
        iteration: batch index `ni` since training began (0 for the first batch); int or int tensor,
            any shape.
        steps_per_epoch: batches per epoch (`nb`).
        epochs: total epochs of the run (the cosine period).
        lr0, lrf, momentum, warmup_epochs, warmup_momentum, warmup_bias_lr: official hyperparameters
            (`HYPERPARAMETERS`).
        min_warmup_iterations: lower bound of the warmup length in batches (1000 officially).

    Returns:
        dict of float32 tensors shaped like `iteration`: "no_decay", "decay", "bias" (learning rate of
        each parameter group, see `ParameterGroups`) and "momentum".
    """
    _check_positive("steps_per_epoch", steps_per_epoch)
    _check_positive("epochs", epochs)
    nw = warmup_iterations(steps_per_epoch, warmup_epochs, min_warmup_iterations)
    iteration = ops.convert_to_tensor(iteration)
    epoch = ops.floor_divide(iteration, steps_per_epoch)
    target = lr0 * cosine_factor(epoch, epochs, lrf)
    step = ops.cast(iteration, "float32")
    # nw >= 1 unless both warmup_epochs and min_warmup_iterations are 0 (no warmup at all).
    fraction = ops.clip(step / max(nw, 1), 0.0, 1.0) if nw else ops.ones_like(step)
    in_warmup = ops.less_equal(step, float(nw))
    weights_lr = ops.where(in_warmup, fraction * target, target)
    bias_lr = ops.where(in_warmup, warmup_bias_lr + fraction * (target - warmup_bias_lr), target)
    momentum_now = ops.where(
        in_warmup,
        warmup_momentum + fraction * (momentum - warmup_momentum),
        ops.full_like(step, momentum),
    )
    return {"no_decay": weights_lr, "decay": weights_lr, "bias": bias_lr, "momentum": momentum_now}


@keras.saving.register_keras_serializable(package="keras_yolov7")
class YOLOv7Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """The official schedule as a Keras `LearningRateSchedule` of the batch iteration.

    Called with a step it returns the learning rate of the weight groups (`no_decay` and `decay`);
    `group_values(step)` gives every group's rate and the momentum (`official_lr_and_momentum`).
    Usable on its own with any Keras optimizer (the official `--adam` option is
    `keras.optimizers.Adam(YOLOv7Schedule(...), beta_1=0.937)`), though only `YOLOv7SGD` follows the
    bias warmup, the momentum warmup and the accumulation rule.

    Args: as `official_lr_and_momentum`.

    Example:
    >>> schedule = YOLOv7Schedule(steps_per_epoch=500, epochs=300)
    >>> float(schedule(1500))  # end of warmup: lr0 * lf(3)
    0.0099977...
    """

    def __init__(
        self,
        steps_per_epoch,
        epochs,
        lr0=0.01,
        lrf=0.1,
        momentum=0.937,
        warmup_epochs=3.0,
        warmup_momentum=0.8,
        warmup_bias_lr=0.1,
        min_warmup_iterations=MIN_WARMUP_ITERATIONS,
    ):
        _check_positive("steps_per_epoch", steps_per_epoch)
        _check_positive("epochs", epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)
        self.lr0 = float(lr0)
        self.lrf = float(lrf)
        self.momentum = float(momentum)
        self.warmup_epochs = float(warmup_epochs)
        self.warmup_momentum = float(warmup_momentum)
        self.warmup_bias_lr = float(warmup_bias_lr)
        self.min_warmup_iterations = int(min_warmup_iterations)

    @property
    def warmup_iterations(self):
        return warmup_iterations(
            self.steps_per_epoch, self.warmup_epochs, self.min_warmup_iterations
        )

    def group_values(self, step):
        """`official_lr_and_momentum` at batch `step`: {"no_decay", "decay", "bias", "momentum"}."""
        return official_lr_and_momentum(step, **self.get_config())

    def __call__(self, step):
        return self.group_values(step)["decay"]

    def get_config(self):
        return {
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "lr0": self.lr0,
            "lrf": self.lrf,
            "momentum": self.momentum,
            "warmup_epochs": self.warmup_epochs,
            "warmup_momentum": self.warmup_momentum,
            "warmup_bias_lr": self.warmup_bias_lr,
            "min_warmup_iterations": self.min_warmup_iterations,
        }


def _check_positive(name, value):
    if not value >= 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
