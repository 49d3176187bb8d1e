"""What the defaults depend on: whether a GPU is visible to the Keras backend, and what the CPU
computes natively (bfloat16)."""

import functools

import keras

# /proc/cpuinfo flags of CPUs that compute bfloat16 natively: Intel AMX (Sapphire Rapids and
# later) and AVX512-BF16 (Cooper Lake, AMD Zen 4 and later).
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


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


@functools.cache
def cpu_flags():
    """The CPU's feature flags as /proc/cpuinfo lists them (lower case), empty where the file
    does not exist (macOS, Windows): callers then assume no optional feature."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_bfloat16_features():
    """The flags of `BFLOAT16_CPU_FLAGS` this CPU has (empty: bfloat16 is emulated)."""
    return tuple(flag for flag in BFLOAT16_CPU_FLAGS if flag in cpu_flags())
