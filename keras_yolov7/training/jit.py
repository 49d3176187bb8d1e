"""The default `jit_compile` of training, which depends on whether a GPU is visible to the backend."""

import keras


def gpu_visible():
    """True when the current Keras backend sees a GPU."""
    if keras.backend.backend() == "torch":
        # keras.distribution.list_devices is not implemented for torch (Keras 3.15).
        import torch

        return torch.cuda.is_available()
    return any(device.lower().startswith("gpu") for device in keras.distribution.list_devices())


def default_jit_compile():
    """The `jit_compile` a detector's `compile(jit_compile="auto")` uses.

    On the TensorFlow backend without a GPU the train step runs as a plain TF graph: TensorFlow's
    oneDNN convolutions train yolov7_tiny at 640 about 1.8x faster on CPU than XLA's (5.08 vs
    2.78 images/s on 2 cores, benchmarks/train_step.py). Everywhere else Keras decides ("auto":
    XLA on a TF GPU, always jit on JAX, eager on torch).
    """
    if keras.backend.backend() == "tensorflow" and not gpu_visible():
        return False
    return "auto"
