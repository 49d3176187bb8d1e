"""The seven presets: official parameter counts, fused equivalence, outputs, saving, bad input."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_yolov7 as kyv7
from keras_yolov7.models.complexity import count_gflops
from keras_yolov7.models.complexity import count_parameters

# Official figures for 80 classes (spec/yolov7.md): training model / fused deploy model parameters,
# fused GFLOPs at the preset's input size.
OFFICIAL_PARAMETERS = {
    "yolov7_tiny": (6_228_762, 6_219_709, 13.7, 640),
    "yolov7": (37_622_682, 36_905_341, 104.5, 640),
    "yolov7x": (71_347_394, 71_311_741, 189.7, 640),
    "yolov7_w6": (82_312_436, 70_394_300, 359.7, 1280),
    "yolov7_e6": (111_898_292, 97_202_940, 514.4, 1280),
    "yolov7_d6": (154_709_364, 133_757_052, 701.7, 1280),
    "yolov7_e6e": (166_408_884, 151_687_420, 842.2, 1280),
}
parameters = count_parameters


def randomize_statistics(model, seed=0):
    """Random BatchNorm statistics/affine and implicit vectors so that fusing has work to do."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        name = w.path.rsplit("/", 1)[-1]
        shape = tuple(w.shape)
        if name in ("moving_variance", "gamma"):
            w.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif name in ("moving_mean", "beta", "bias"):
            w.assign(rng.normal(0.0, 0.2, shape).astype("float32"))
        elif name == "implicit":
            mean = 1.0 if "multiply" in w.path else 0.0
            w.assign(rng.normal(mean, 0.1, shape).astype("float32"))


def numpy_outputs(outputs):
    return [ops.convert_to_numpy(o) for o in outputs]


@pytest.mark.parametrize("preset", list(OFFICIAL_PARAMETERS))
def test_preset_parameters_and_fused_equivalence(preset):
    train_count, fused_count, gflops, input_size = OFFICIAL_PARAMETERS[preset]
    model = kyv7.YOLOv7ObjectDetector.from_preset(preset, num_classes=80)
    assert parameters(model) == train_count

    randomize_statistics(model)
    size = 2 * max(model.strides)
    images = np.random.default_rng(1).uniform(0, 255, (1, size, size, 3)).astype("float32")
    raw = numpy_outputs(model(images, training=False))
    levels = model.num_levels
    expected_levels = 2 * levels if model.has_auxiliary_head else levels
    assert len(raw) == expected_levels
    for level, stride in enumerate(model.strides):
        assert raw[level].shape == (1, size // stride, size // stride, 3, 85)

    fused = model.get_fused()
    assert fused.fused and not fused.has_auxiliary_head
    assert parameters(fused) == fused_count
    assert round(count_gflops(fused, input_size), 1) == gflops
    fused_raw = numpy_outputs(fused(images))
    assert len(fused_raw) == levels
    for level in range(levels):
        np.testing.assert_allclose(fused_raw[level], raw[level], atol=1e-4, rtol=1e-4)


def test_num_classes_sets_head_width_and_decode_shapes():
    model = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=3)
    images = np.zeros((2, 64, 96, 3), "uint8")
    raw = model(images)
    assert [tuple(r.shape) for r in raw] == [(2, 8, 12, 3, 8), (2, 4, 6, 3, 8), (2, 2, 3, 3, 8)]
    decoded = ops.convert_to_numpy(kyv7.ops.decode_predictions(raw, model.anchors, model.strides))
    assert decoded.shape == (2, (96 + 24 + 6) * 3, 8)
    assert np.all((decoded[..., 4:] >= 0) & (decoded[..., 4:] <= 1))


def test_decode_matches_the_formula():
    raw = np.random.default_rng(0).normal(size=(1, 2, 3, 3, 6)).astype("float32")
    anchors = np.array([[10, 13], [16, 30], [33, 23]], "float32")
    out = ops.convert_to_numpy(kyv7.ops.decode_level(raw, anchors, 8))
    s = 1 / (1 + np.exp(-raw))
    gy, gx = 1, 2
    a = 2
    np.testing.assert_allclose(out[0, gy, gx, a, 0], (2 * s[0, gy, gx, a, 0] - 0.5 + gx) * 8, rtol=1e-5)
    np.testing.assert_allclose(out[0, gy, gx, a, 1], (2 * s[0, gy, gx, a, 1] - 0.5 + gy) * 8, rtol=1e-5)
    np.testing.assert_allclose(out[0, gy, gx, a, 2], (2 * s[0, gy, gx, a, 2]) ** 2 * 33, rtol=1e-5)
    np.testing.assert_allclose(out[0, gy, gx, a, 3], (2 * s[0, gy, gx, a, 3]) ** 2 * 23, rtol=1e-5)
    np.testing.assert_allclose(out[..., 4:], s[..., 4:], rtol=1e-5)


def test_repconvn_elan_option_trains_as_branches_and_fuses_exactly():
    model = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=2, elan_chain_block="repconvn")
    plain = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=2)
    assert parameters(model) > parameters(plain)
    randomize_statistics(model)
    images = np.random.default_rng(2).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    fused = model.get_fused()
    assert parameters(fused) == parameters(plain.get_fused())
    for a, b in zip(numpy_outputs(fused(images)), numpy_outputs(model(images, training=False))):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("preset", ["yolov7_tiny", "yolov7_w6"])
def test_save_and_load_keras_format(tmp_path, preset):
    model = kyv7.YOLOv7ObjectDetector.from_preset(preset, num_classes=4)
    randomize_statistics(model)
    size = 2 * max(model.strides)
    images = np.random.default_rng(3).uniform(0, 255, (1, size, size, 3)).astype("float32")
    path = tmp_path / f"{preset}.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, kyv7.YOLOv7ObjectDetector)
    assert restored.num_classes == 4 and restored.architecture == preset
    np.testing.assert_array_equal(restored.anchors, model.anchors)
    for a, b in zip(numpy_outputs(restored(images)), numpy_outputs(model(images))):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_fused_model_saves_and_loads(tmp_path):
    fused = kyv7.YOLOv7ObjectDetector.from_preset("yolov7", num_classes=2).get_fused()
    images = np.random.default_rng(4).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    path = tmp_path / "fused.keras"
    fused.save(path)
    restored = keras.models.load_model(path)
    assert restored.fused
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(images)[0]), ops.convert_to_numpy(fused(images)[0]), atol=1e-6
    )


def test_static_image_shape_network_size_and_custom_anchors():
    anchors = np.arange(18, dtype="float32").reshape(3, 3, 2) + 1
    model = kyv7.YOLOv7ObjectDetector.from_preset(
        "yolov7_tiny", num_classes=1, image_shape=(64, 96, 3), image_size=(64, 96), anchors=anchors
    )
    assert tuple(model.input_shape) == (None, 64, 96, 3) and model.image_size == (64, 96)
    np.testing.assert_array_equal(model.anchors, anchors)
    assert model.get_config()["anchors"] == anchors.tolist()


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"unknown preset 'yolov8'; expected one of \["):
        kyv7.YOLOv7ObjectDetector.from_preset("yolov8")
    model = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=2)
    with pytest.raises(ValueError, match="width 100 is not a multiple of the model's largest stride 32"):
        model(np.zeros((1, 64, 100, 3), "float32"))
    with pytest.raises(ValueError, match=r"images must have shape \(batch, height, width, 3\) \(RGB\), got \(1, 64, 64, 1\)"):
        model(np.zeros((1, 64, 64, 1), "float32"))
    p6 = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_w6", num_classes=2)
    with pytest.raises(ValueError, match="height 96 is not a multiple of the model's largest stride 64"):
        p6(np.zeros((1, 96, 128, 3), "float32"))
    with pytest.raises(ValueError, match=r"anchors must have shape \(3, 3, 2\)"):
        kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", anchors=np.ones((4, 3, 2)))


def test_hyperparameter_family_of_each_preset():
    families = {name: arch["family"] for name, arch in kyv7.models.ARCHITECTURES.items()}
    assert families == {
        "yolov7_tiny": "tiny", "yolov7": "p5", "yolov7x": "p5", "yolov7_w6": "p6", "yolov7_e6": "p6",
        "yolov7_d6": "p6", "yolov7_e6e": "p6",
    }
    assert kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny").family == "tiny"
