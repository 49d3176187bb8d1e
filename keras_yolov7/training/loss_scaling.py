"""Dynamic float16 loss scaling whose skip decision is the same on every replica."""

import keras
from keras import ops

from keras_yolov7.training.replicas import replicas_in_sync
from keras_yolov7.training.replicas import sum_over_replicas


@keras.saving.register_keras_serializable(package="keras_yolov7")
class ReplicaConsistentLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' `LossScaleOptimizer` (dynamic loss scaling for "mixed_float16"), deciding whether to
    skip a step on the gradients of all replicas.

    Under tf.distribute, Keras 3's `LossScaleOptimizer` checks each replica's own gradients for
    overflow before they are summed and follows the first replica's answer: an overflow on another
    replica goes into the summed update and the weights become inf / NaN. Here the step is skipped
    (and the scale halved) when ANY replica overflowed, as the official `GradScaler` does after
    DDP's all-reduce. With one replica (no strategy, JAX, torch) it is Keras' optimizer unchanged.

    Args: as `keras.optimizers.LossScaleOptimizer` (`inner_optimizer`, `initial_scale`,
        `dynamic_growth_steps`).
    """

    def check_finite(self, grads):
        finite = super().check_finite(grads)
        if replicas_in_sync() == 1:
            return finite
        overflowed = sum_over_replicas(ops.cast(ops.logical_not(finite), "float32"))
        return ops.equal(overflowed, 0.0)


def with_loss_scaling(model, optimizer, auto_scale_loss=True):
    """The optimizer `model.compile` should get: `optimizer` wrapped in a
    `ReplicaConsistentLossScaleOptimizer` where Keras would wrap it in its own
    `LossScaleOptimizer` (the model computes in float16 and `auto_scale_loss` is on), else
    `optimizer` itself (None stays None). Call it in the model's strategy scope (the wrapper has
    variables)."""
    if optimizer is None:
        return None
    optimizer = keras.optimizers.get(optimizer)
    if (
        not auto_scale_loss
        or model.dtype_policy.name != "mixed_float16"
        or isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    ):
        return optimizer
    return ReplicaConsistentLossScaleOptimizer(optimizer)
