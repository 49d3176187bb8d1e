"""Mixed precision: the training option (Keras' dtype policies, loss scaling by `compile`) and
the inference precision of a trained model (float32, or bfloat16 where the CPU computes it)."""

import contextlib

import keras

from keras_yolov7.training.devices import cpu_bfloat16_features
from keras_yolov7.training.devices import gpu_visible

POLICIES = ("auto", "mixed_float16", "mixed_bfloat16", "float32")


def use_mixed_precision(policy="auto"):
    """Set Keras' global dtype policy for the models built afterwards; returns the policy name.

    Variables stay float32 (the optimizer and `ModelEMA` work in float32); layers compute in the
    half type. With "mixed_float16", `model.compile` wraps the optimizer in a
    `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling, Keras' `auto_scale_loss=True`),
    the counterpart of the official `torch.cuda.amp.GradScaler`; bfloat16 needs no loss scaling.
    Call it before building the model: a model keeps the policy it was built with.

    The "auto" rule: "mixed_float16" when a GPU is visible (what the official training uses);
    "mixed_bfloat16" where bfloat16 inference is the "auto" choice too (the TensorFlow backend on
    a CPU with AMX or AVX512-BF16, `resolve_inference_precision`), because there it pays for
    training as well: the yolov7_tiny train step at 320 px, batch 8, ran 1.8x faster than
    float32 on a 2-core AMD EPYC with AVX512-BF16 (benchmarks/train_step.py, docs/performance.md);
    "float32" everywhere else (emulated bfloat16 is slower than float32).

    Args:
        policy: "auto" (or None, the same), "mixed_float16", "mixed_bfloat16" or "float32"
            (turns mixed precision off).

    Example:

        use_mixed_precision()  # "mixed_float16" on a GPU, "mixed_bfloat16" on a bf16 CPU
        model = YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=3)
    """
    if policy is None or policy == "auto":
        if gpu_visible():
            policy = "mixed_float16"
        elif resolve_inference_precision("auto") == "bfloat16":
            policy = "mixed_bfloat16"
        else:
            policy = "float32"
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES} or None, got {policy!r}")
    keras.config.set_dtype_policy(policy)
    return policy


INFERENCE_PRECISIONS = ("auto", "float32", "bfloat16")


def resolve_inference_precision(precision="auto"):
    """The compute precision a model runs inference in: "float32" or "bfloat16".

    The "auto" rule: bfloat16 on the TensorFlow backend when no GPU is visible and the CPU
    computes bfloat16 natively (AMX or AVX512-BF16 in /proc/cpuinfo); float32 everywhere else.
    Measured on yolov7_tiny at 640 px, batch 1 (docs/export.md): TensorFlow's oneDNN runs
    bfloat16 about twice as fast as float32 on such CPUs (an Intel Xeon with AMX, a 2-core AMD
    EPYC with AVX512-BF16); on the JAX and PyTorch backends bfloat16 was slower than float32 on
    that EPYC; on a CPU without native bfloat16 TensorFlow emulates it (5.7x slower than float32
    with AVX-512) or has no bfloat16 convolution at all (AVX2: an error).

    Args:
        precision: "auto", "float32" or "bfloat16".

    Raises:
        ValueError: an unknown precision, or "bfloat16" on the TensorFlow backend on a CPU
            without native bfloat16 and no GPU.
    """
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(
            f"inference precision must be one of {INFERENCE_PRECISIONS}, got {precision!r}"
        )
    native = bool(cpu_bfloat16_features())
    tensorflow_cpu = keras.backend.backend() == "tensorflow" and not gpu_visible()
    if precision == "auto":
        return "bfloat16" if tensorflow_cpu and native else "float32"
    if precision == "bfloat16" and tensorflow_cpu and not native:
        raise ValueError(
            "bfloat16 inference needs a CPU with AMX or AVX512-BF16 (or a GPU): this CPU has "
            "neither, and TensorFlow would emulate bfloat16 convolutions many times slower than "
            "float32, or fail (AVX2); use precision 'float32' or 'auto'"
        )
    return precision


def with_inference_precision(model, precision="auto"):
    """`model` computing in an inference precision (see `resolve_inference_precision`).

    bfloat16: a copy of the model built under Keras' "mixed_bfloat16" policy with the same
    weights: weights stay float32, layers compute in bfloat16, and the raw outputs are float32
    (the heads cast them), so decoding and NMS run in float32. On the synthetic-shapes model
    (docs/train_synthetic.md) mAP@0.5 stays within 0.5 points of float32
    (benchmarks/export.py prints both).

    Args:
        model: a `YOLOv7ObjectDetector` (any form: fused or not, any input size).
        precision: "auto", "float32" or "bfloat16".

    Returns:
        `model` itself when it already computes in that precision, else a new model of the same
        class and config (build it once and reuse it: building costs as much as a few calls).
    """
    target = resolve_inference_precision(precision)
    current = "bfloat16" if model.dtype_policy.compute_dtype == "bfloat16" else "float32"
    if target == current:
        return model
    policy = "mixed_bfloat16" if target == "bfloat16" else "float32"
    config = model.get_config()
    # The backbone's config names its own policy; the heads follow the global one.
    config["dtype"] = policy
    if isinstance(config.get("backbone"), dict):
        config["backbone"]["config"]["dtype"] = policy
    with dtype_policy(policy):
        copy = type(model).from_config(config)
    copy.set_weights(model.get_weights())
    return copy


@contextlib.contextmanager
def dtype_policy(policy):
    """Keras' global dtype policy set to `policy` inside the block, restored after it."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
