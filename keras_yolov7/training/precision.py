"""Mixed precision as a training option: Keras' dtype policies, loss scaling by `compile`."""

import keras

from keras_yolov7.training.devices import gpu_visible

POLICIES = ("mixed_float16", "mixed_bfloat16", "float32")


def use_mixed_precision(policy=None):
    """Set Keras' global dtype policy for the models built afterwards; returns the policy name.

    Variables stay float32 (the optimizer and `ModelEMA` work in float32); layers compute in the
    half type. With "mixed_float16", `model.compile` wraps the optimizer in a
    `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling, Keras' `auto_scale_loss=True`),
    the counterpart of the official `torch.cuda.amp.GradScaler`; bfloat16 needs no loss scaling.
    Call it before building the model: a model keeps the policy it was built with.

    Args:
        policy: "mixed_float16", "mixed_bfloat16", "float32" (turns mixed precision off) or None:
            "mixed_float16" when a GPU is visible (what the official training uses), else
            "mixed_bfloat16" (CPUs have no fast float16 but often bfloat16).

    Example:

        use_mixed_precision()  # "mixed_float16" on a GPU
        model = YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=3)
    """
    if policy is None:
        policy = "mixed_float16" if gpu_visible() else "mixed_bfloat16"
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES} or None, got {policy!r}")
    keras.config.set_dtype_policy(policy)
    return policy
