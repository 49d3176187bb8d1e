"""Official state_dict names <-> Keras, and parity with the official forward outputs."""

import pathlib
import sys

import numpy as np
import pytest
from keras import ops

import keras_yolov7 as kyv7
from keras_yolov7.convert.state_dict import identify_preset
from keras_yolov7.convert.state_dict import load_torch_state_dict
from keras_yolov7.convert.state_dict import official_layout
from keras_yolov7.convert.state_dict import to_torch_state_dict

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from seeded_weights import read_keys  # noqa: E402
from seeded_weights import seeded_state_dict  # noqa: E402

OFFICIAL_NAMES = {
    "yolov7_tiny": "yolov7-tiny",
    "yolov7": "yolov7",
    "yolov7x": "yolov7x",
    "yolov7_w6": "yolov7-w6",
    "yolov7_e6": "yolov7-e6",
    "yolov7_d6": "yolov7-d6",
    "yolov7_e6e": "yolov7-e6e",
}


def official_keys(preset):
    return read_keys(FIXTURES / "keys" / f"{OFFICIAL_NAMES[preset]}.training.txt")


@pytest.mark.parametrize("preset", list(OFFICIAL_NAMES))
def test_layout_is_the_official_state_dict(preset):
    ours = [(t.name, tuple(t.shape)) for t in official_layout(preset, 80)]
    assert ours == official_keys(preset)
    assert identify_preset(dict(official_keys(preset))) == preset


@pytest.mark.parametrize("preset", ["yolov7_tiny", "yolov7_w6"])
def test_forward_matches_official_outputs(preset):
    ref = np.load(FIXTURES / "forward" / f"{OFFICIAL_NAMES[preset]}_256.npz")
    state_dict, rng = seeded_state_dict(official_keys(preset), int(ref["seed"]))
    images = rng.random((2, 3, 256, 256), dtype=np.float32).transpose(0, 2, 3, 1) * 255
    model = kyv7.YOLOv7ObjectDetector.from_preset(preset, num_classes=80)
    load_torch_state_dict(model, state_dict)
    raw = model(images, training=False)
    for level in range(model.num_levels):
        # Ours is (B, H, W, A, 5 + C); the official layout is (B, A, H, W, 5 + C).
        out = ops.convert_to_numpy(raw[level]).transpose(0, 3, 1, 2, 4)
        assert out.shape == tuple(ref[f"raw_{level}_shape"])
        sampled = out.reshape(-1)[ref[f"raw_{level}_idx"]]
        np.testing.assert_allclose(sampled, ref[f"raw_{level}_val"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(out.sum(dtype=np.float64), ref[f"raw_{level}_sum"], rtol=1e-5, atol=1e-2)
        np.testing.assert_allclose(np.abs(out).sum(dtype=np.float64), ref[f"raw_{level}_abs_sum"], rtol=1e-6)
    decoded = ops.convert_to_numpy(kyv7.ops.decode_predictions(raw, model.anchors, model.strides))
    np.testing.assert_allclose(decoded.sum(dtype=np.float64), ref["decoded_sum"], rtol=1e-6)


def test_round_trip_reproduces_the_state_dict():
    keys = official_keys("yolov7_tiny")
    state_dict, _ = seeded_state_dict(keys, 7)
    model = load_torch_state_dict(kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny"), state_dict)
    exported = to_torch_state_dict(model)
    assert list(exported) == [name for name, _ in keys]
    for name, value in state_dict.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)
    np.testing.assert_allclose(exported[next(k for k, _ in keys if k.endswith("anchor_grid"))].reshape(3, 3, 2),
                               model.anchors)


def test_round_trip_through_a_fresh_model_with_auxiliary_head():
    source = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_w6", num_classes=5)
    rng = np.random.default_rng(0)
    for w in source.weights:
        w.assign(rng.normal(size=tuple(w.shape)).astype("float32"))
    target = load_torch_state_dict(kyv7.YOLOv7ObjectDetector.from_preset("yolov7_w6", num_classes=5),
                                   to_torch_state_dict(source))
    for a, b in zip(source.weights, target.weights, strict=True):
        np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b), err_msg=a.path)


def test_anchors_come_from_the_state_dict():
    state_dict, _ = seeded_state_dict(official_keys("yolov7_tiny"), 3)
    grid = np.arange(1, 19, dtype=np.float32).reshape(3, 1, 3, 1, 1, 2)
    state_dict["model.77.anchor_grid"] = grid
    state_dict["model.77.anchors"] = grid.reshape(3, 3, 2) / np.array([8, 16, 32], np.float32)[:, None, None]
    model = load_torch_state_dict(kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny"), state_dict)
    np.testing.assert_array_equal(model.anchors, grid.reshape(3, 3, 2))


def test_strict_errors_name_the_keys():
    state_dict, _ = seeded_state_dict(official_keys("yolov7_tiny"), 1)
    model = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny")

    missing = dict(state_dict)
    del missing["model.4.conv.weight"]
    with pytest.raises(ValueError, match=r"missing keys: model\.4\.conv\.weight"):
        load_torch_state_dict(model, missing)

    extra = dict(state_dict, **{"model.99.conv.weight": np.zeros((1, 1, 1, 1))})
    with pytest.raises(ValueError, match=r"unexpected keys: model\.99\.conv\.weight"):
        load_torch_state_dict(model, extra)

    bad = dict(state_dict, **{"model.0.conv.weight": np.zeros((32, 3, 1, 1))})
    with pytest.raises(ValueError, match=r"model\.0\.conv\.weight has shape \(32, 3, 1, 1\), expected \(32, 3, 3, 3\)"):
        load_torch_state_dict(model, bad)


def test_errors_for_another_class_count_or_preset():
    state_dict, _ = seeded_state_dict(official_keys("yolov7_tiny"), 1)
    with pytest.raises(ValueError, match=r"the state_dict has 80 classes; build the model with num_classes=80"):
        load_torch_state_dict(kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=3), state_dict)
    with pytest.raises(ValueError, match=r"looks like preset 'yolov7_tiny'"):
        load_torch_state_dict(kyv7.YOLOv7ObjectDetector.from_preset("yolov7"), state_dict)


def test_fused_or_repconvn_models_are_refused():
    state_dict, _ = seeded_state_dict(official_keys("yolov7_tiny"), 1)
    fused = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", fused=True)
    with pytest.raises(ValueError, match="load into a model built with fused=False, then call get_fused"):
        load_torch_state_dict(fused, state_dict)
    rep = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", elan_chain_block="repconvn")
    with pytest.raises(ValueError, match="elan_chain_block='repconvn'"):
        load_torch_state_dict(rep, state_dict)


def test_load_torch_checkpoint_file_matches_official_outputs(tmp_path):
    torch = pytest.importorskip("torch")
    from keras_yolov7.convert import load_torch_checkpoint

    ref = np.load(FIXTURES / "forward" / "yolov7-tiny_256.npz")
    state_dict, rng = seeded_state_dict(official_keys("yolov7_tiny"), int(ref["seed"]))
    path = tmp_path / "yolov7-tiny-state.pt"
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()}, path)
    model = load_torch_checkpoint(path)
    assert (model.architecture, model.num_classes) == ("yolov7_tiny", 80)
    images = rng.random((2, 3, 256, 256), dtype=np.float32).transpose(0, 2, 3, 1) * 255
    out = ops.convert_to_numpy(model.get_fused()(images)[0]).transpose(0, 3, 1, 2, 4)
    np.testing.assert_allclose(out.reshape(-1)[ref["raw_0_idx"]], ref["raw_0_val"], atol=1e-4)
