"""Inference precision: float32, or bfloat16 where the CPU computes it (every backend)."""

import keras
import numpy as np
import pytest

import keras_yolov7 as kyv7
from keras_yolov7.datasets.synthetic import make_synthetic_arrays
from keras_yolov7.training import devices
from keras_yolov7.training import precision
from keras_yolov7.training import with_inference_precision
from fixtures.micro_network import micro_network

SIZE = 128


# A small network (a freshly initialised yolov7_tiny scores every box alike): 3x3 convs with
# LeakyReLU, nearest upsampling and concat, three levels.
NET = micro_network(SIZE)


@pytest.fixture(scope="module")
def model():
    """The fused network with its head scaled so that 15 to 40 detections pass 0.25."""
    keras.utils.set_random_seed(0)
    detector = kyv7.YOLOv7ObjectDetector(kyv7.YOLOv7Backbone(NET), num_classes=5, max_detections=50)
    for weight in detector.get_layer("lead_head").weights:
        value = keras.ops.convert_to_numpy(weight)
        if "conv" in weight.path and "kernel" in weight.path:
            weight.assign(value * 30.0)
        elif "conv" in weight.path and "bias" in weight.path:
            weight.assign(np.full_like(value, -1.5))
    return detector.get_fused()


@pytest.mark.parametrize(
    "backend, gpu, features, expected",
    [
        ("tensorflow", False, ("amx_bf16",), "bfloat16"),
        ("tensorflow", False, ("avx512_bf16",), "bfloat16"),
        ("tensorflow", False, (), "float32"),
        ("tensorflow", True, ("amx_bf16",), "float32"),
        ("jax", False, ("amx_bf16", "avx512_bf16"), "float32"),
        ("torch", False, ("avx512_bf16",), "float32"),
    ],
)
def test_auto_rule(monkeypatch, backend, gpu, features, expected):
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    monkeypatch.setattr(precision, "gpu_visible", lambda: gpu)
    monkeypatch.setattr(precision, "cpu_bfloat16_features", lambda: features)
    assert precision.resolve_inference_precision("auto") == expected
    assert precision.resolve_inference_precision("float32") == "float32"


@pytest.mark.parametrize(
    "backend, gpu, features, expected",
    [
        ("tensorflow", False, ("avx512_bf16",), "mixed_bfloat16"),
        ("tensorflow", False, (), "float32"),
        ("tensorflow", True, ("amx_bf16",), "mixed_float16"),
        ("jax", False, ("amx_bf16",), "float32"),
        ("jax", True, (), "mixed_float16"),
        ("torch", False, ("avx512_bf16",), "float32"),
    ],
)
def test_training_auto_policy_follows_the_inference_rule(
    monkeypatch, backend, gpu, features, expected
):
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    monkeypatch.setattr(precision, "gpu_visible", lambda: gpu)
    monkeypatch.setattr(precision, "cpu_bfloat16_features", lambda: features)
    previous = keras.config.dtype_policy()
    try:
        assert precision.use_mixed_precision("auto") == expected
        assert keras.config.dtype_policy().name == expected
        assert precision.use_mixed_precision(None) == expected
    finally:
        keras.config.set_dtype_policy(previous)


def test_explicit_bfloat16_on_a_tensorflow_cpu_without_it_is_refused(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    monkeypatch.setattr(precision, "gpu_visible", lambda: False)
    monkeypatch.setattr(precision, "cpu_bfloat16_features", lambda: ())
    with pytest.raises(ValueError, match="needs a CPU with AMX or AVX512-BF16"):
        precision.resolve_inference_precision("bfloat16")
    with pytest.raises(ValueError, match=r"one of \('auto', 'float32', 'bfloat16'\), got 'fp16'"):
        precision.resolve_inference_precision("fp16")


def test_cpu_flags_are_read_from_proc_cpuinfo():
    flags = devices.cpu_flags()
    assert isinstance(flags, frozenset)
    assert set(devices.cpu_bfloat16_features()) <= flags
    try:
        with open("/proc/cpuinfo") as file:
            listed = next(line for line in file if line.startswith("flags")).split(":")[1].split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags on this system")
    assert flags == frozenset(listed)


def test_float32_is_the_model_itself(model):
    assert with_inference_precision(model, "float32") is model


def test_bfloat16_copy_detects_what_float32_detects(model):
    if keras.backend.backend() == "tensorflow" and not devices.cpu_bfloat16_features():
        pytest.skip("TensorFlow refuses bfloat16 on a CPU without AMX / AVX512-BF16")
    half = with_inference_precision(model, "bfloat16")
    assert half is not model and half.dtype_policy.name == "mixed_bfloat16"
    assert all(w.dtype == "float32" for w in half.weights)  # weights stay float32
    assert with_inference_precision(half, "bfloat16") is half
    images, _, _ = make_synthetic_arrays(2, image_size=SIZE, seed=0, stream=1)
    raw = half(images)
    assert all(keras.backend.standardize_dtype(r.dtype) == "float32" for r in raw)
    ours, reference = half.predict(images, verbose=0), model.predict(images, verbose=0)
    assert reference["num_detections"].min() > 0
    for i in range(len(images)):
        n = int(reference["num_detections"][i])
        # bfloat16 keeps 8 bits of mantissa: scores move by about 0.01, boxes by about 1%.
        assert abs(int(ours["num_detections"][i]) - n) <= max(1, n // 10)
        matched = 0
        for box, score, label in zip(
            reference["boxes"][i, :n], reference["confidence"][i, :n], reference["labels"][i, :n]
        ):
            close = (ours["labels"][i] == label) & (np.abs(ours["confidence"][i] - score) < 0.03)
            close &= np.abs(ours["boxes"][i] - box).max(-1) < 0.02 * SIZE
            matched += bool(close.any())
        assert matched >= 0.9 * n


def test_bfloat16_copy_back_to_float32(model):
    if keras.backend.backend() == "tensorflow" and not devices.cpu_bfloat16_features():
        pytest.skip("TensorFlow refuses bfloat16 on a CPU without AMX / AVX512-BF16")
    back = with_inference_precision(with_inference_precision(model, "bfloat16"), "float32")
    assert back.dtype_policy.name == "float32"
    images, _, _ = make_synthetic_arrays(1, image_size=SIZE, seed=0, stream=1)
    for ours, theirs in zip(back(images), model(images)):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs), atol=1e-4
        )
