"""Official state_dict names <-> Keras, and parity with the official forward outputs."""

import pathlib
import re
import sys

import keras
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


FORMS = ("training", "deploy", "deploy_fused")
BN_EPSILON = 1e-3  # the official models set every BatchNorm2d's eps to 1e-3


def listing(preset, form):
    return read_keys(FIXTURES / "keys" / f"{OFFICIAL_NAMES[preset]}.{form}.txt")


def shaped(keys):
    """A state_dict of the listing's names and shapes that allocates nothing."""
    return {name: np.broadcast_to(np.float32(0), shape) for name, shape in keys}


@pytest.fixture
def zero_initializers(monkeypatch):
    """Models whose initial weights are never read start from zeros: random initialisation
    compiles a program per weight shape on JAX (57 s for a yolov7_d6 model, 6 s with zeros)."""

    def zeros(self, shape, dtype=None):
        return ops.zeros(shape, dtype=dtype or "float32")

    monkeypatch.setattr(keras.initializers.VarianceScaling, "__call__", zeros)
    monkeypatch.setattr(keras.initializers.RandomNormal, "__call__", zeros)


def assert_round_trip(model, preset, form, seed):
    """A seeded state_dict of the official listing loads, and exports back unchanged."""
    keys = listing(preset, form)
    state_dict, _ = seeded_state_dict(keys, seed)
    load_torch_state_dict(model, state_dict)
    exported = to_torch_state_dict(model, form=form)
    assert list(exported) == [name for name, _ in keys], form
    for name, value in state_dict.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=f"{form}: {name}")


# The larger presets' value round trips (seconds each) run in the slow suite; their names, and
# that each of their variables has exactly one official name, in the default one.
ROUND_TRIP_SLOW = ("yolov7", "yolov7x", "yolov7_w6", "yolov7_e6", "yolov7_d6", "yolov7_e6e")


def assert_one_name_per_variable(model, layout, form):
    """Every variable has one official name; deploy files leave out exactly the implicit vectors,
    the auxiliary head and the nodes only it reads (P6)."""
    held = [id(t.variable) for t in layout if t.variable is not None]
    assert len(held) == len(set(held)), form
    if form != "deploy":
        assert set(held) == {id(w) for w in model.weights}, form
        return
    aux = kyv7.models.ARCHITECTURES[model.architecture].get("aux", [])
    aux_nodes = "|".join(f"conv_{i}" for i in aux)
    left_out = re.compile(rf"(^|/)(aux_head|{aux_nodes or 'none'})/|/implicit_(add|multiply)_\d+/")
    expected = {id(w) for w in model.weights if not left_out.search(w.path)}
    assert set(held) == expected, form


def preset_models(preset):
    return {
        "training": kyv7.YOLOv7ObjectDetector.from_preset(preset, num_classes=80),
        "deploy": None,
        "deploy_fused": kyv7.YOLOv7ObjectDetector.from_preset(preset, num_classes=80, fused=True),
    }


@pytest.mark.parametrize("preset", list(OFFICIAL_NAMES))
def test_every_form_has_the_official_names(preset, zero_initializers):
    models = preset_models(preset)
    for seed, form in enumerate(FORMS):
        model = models[form] or models["training"]
        keys = listing(preset, form)
        layout = official_layout(model, form=form)
        assert [(t.name, tuple(t.shape)) for t in layout] == keys, form
        assert_one_name_per_variable(model, layout, form)
        if form == "training" or preset == "yolov7_w6":
            assert identify_preset(shaped(keys)) == preset, form
        if preset not in ROUND_TRIP_SLOW:
            assert_round_trip(model, preset, form, seed)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ROUND_TRIP_SLOW)
def test_every_form_round_trips(preset, zero_initializers):
    models = preset_models(preset)
    for seed, form in enumerate(FORMS):
        assert_round_trip(models[form] or models["training"], preset, form, seed)


def test_nodes_are_found_inside_nested_models():
    # The node layers may sit in a nested functional model (a backbone) of the model converted.
    inner = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny")
    images = keras.Input((None, None, 3))
    outer = keras.Model(images, inner(images))
    for name in ("architecture", "num_classes", "fused", "strides", "anchors"):
        setattr(outer, name, getattr(inner, name))
    assert [layer.name for layer in outer.layers][-1] == inner.name
    layout = official_layout(outer, form="deploy")
    assert [(t.name, tuple(t.shape)) for t in layout] == listing("yolov7_tiny", "deploy")


def test_layout_of_a_preset_name_builds_the_model():
    ours = [(t.name, tuple(t.shape)) for t in official_layout("yolov7_tiny", 80)]
    assert ours == official_keys("yolov7_tiny")
    assert identify_preset(shaped(official_keys("yolov7_tiny"))) == "yolov7_tiny"
    fused = [(t.name, tuple(t.shape)) for t in official_layout("yolov7_tiny", 80, form="deploy_fused")]
    assert fused == listing("yolov7_tiny", "deploy_fused")


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


def head_index(names):
    return max(int(name.split(".")[1]) for name in names)


def official_deploy(training, deploy_head):
    """What the official reparameterisation makes of a training state_dict (numpy, float64
    arithmetic): the implicit vectors folded into the head's convs, `b' = (b + W a) * m`,
    `W' = W * m`; `ia`, `im`, the auxiliary head `m2` and the auxiliary-only nodes dropped, the
    head moved to the deploy config's index."""
    head = head_index(training)
    deploy = {}
    for name, value in training.items():
        index = int(name.split(".")[1])
        rest = name.split(".", 2)[2]
        auxiliary = deploy_head <= index < head
        if auxiliary or (index == head and rest.split(".")[0] in ("ia", "im", "m2")):
            continue
        if index == head and rest.startswith("m."):
            level = int(rest.split(".")[1])
            weight = training[f"model.{head}.m.{level}.weight"].astype(np.float64)
            add = training[f"model.{head}.ia.{level}.implicit"].reshape(-1).astype(np.float64)
            mul = training[f"model.{head}.im.{level}.implicit"].reshape(-1).astype(np.float64)
            if rest.endswith("weight"):
                value = weight * mul[:, None, None, None]
            else:
                value = (value + weight[:, :, 0, 0] @ add) * mul
        deploy[f"model.{deploy_head if index == head else index}.{rest}"] = value
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in deploy.items()}


def fold_bn(kernel, state, prefix):
    names = ("weight", "bias", "running_mean", "running_var")
    gamma, beta, mean, var = (state[f"{prefix}.{k}"].astype(np.float64) for k in names)
    scale = gamma / np.sqrt(var + BN_EPSILON)
    return kernel.astype(np.float64) * scale[:, None, None, None], beta - mean * scale


def official_fuse(deploy):
    """What the official `fuse()` makes of a deploy state_dict (numpy): BatchNorm folded into
    `conv.{weight,bias}`, RepConv branches (3x3, padded 1x1, identity) merged into
    `rbr_reparam.{weight,bias}`."""
    fused = {}
    for name, value in deploy.items():
        if name.endswith(".conv.weight") and name[: -len("conv.weight")] + "bn.weight" in deploy:
            prefix = name[: -len(".conv.weight")]
            weight, bias = fold_bn(value, deploy, f"{prefix}.bn")
            fused[name], fused[f"{prefix}.conv.bias"] = weight, bias
        elif name.endswith(".rbr_dense.0.weight"):
            prefix = name[: -len(".rbr_dense.0.weight")]
            weight, bias = fold_bn(value, deploy, f"{prefix}.rbr_dense.1")
            pointwise, pointwise_bias = fold_bn(
                deploy[f"{prefix}.rbr_1x1.0.weight"], deploy, f"{prefix}.rbr_1x1.1"
            )
            weight[:, :, 1, 1] += pointwise[:, :, 0, 0]
            bias = bias + pointwise_bias
            if f"{prefix}.rbr_identity.weight" in deploy:
                eye = np.eye(weight.shape[0])[:, :, None, None]
                identity, identity_bias = fold_bn(eye, deploy, f"{prefix}.rbr_identity")
                weight[:, :, 1, 1] += identity[:, :, 0, 0]
                bias = bias + identity_bias
            fused[f"{prefix}.rbr_reparam.weight"], fused[f"{prefix}.rbr_reparam.bias"] = weight, bias
        elif not re.search(r"\.(bn|rbr_dense|rbr_1x1|rbr_identity)\.", name):
            fused[name] = value
    return {k: np.asarray(v, np.float32) for k, v in fused.items()}


def lead_outputs(model, images):
    return [ops.convert_to_numpy(r) for r in model(images, training=False)[: model.num_levels]]


# yolov7_tiny: both deploy forms; yolov7_w6: the deploy form of a P6 model, which leaves out the
# auxiliary head and its nodes (its fused form differs from the deploy one as tiny's does).
@pytest.mark.parametrize("preset, forms", [("yolov7_tiny", FORMS[1:]), ("yolov7_w6", FORMS[1:2])])
def test_deploy_forms_give_the_training_outputs(preset, forms, zero_initializers):
    training, _ = seeded_state_dict(official_keys(preset), 5)
    derived = {"deploy": official_deploy(training, head_index(dict(listing(preset, "deploy"))))}
    if "deploy_fused" in forms:
        derived["deploy_fused"] = official_fuse(derived["deploy"])
    for form, state_dict in derived.items():
        official = [(k, s) for k, s in listing(preset, form) if "anchor" not in k]
        assert [(k, v.shape) for k, v in state_dict.items()] == official, form

    images = np.random.default_rng(0).uniform(0, 255, (1, 128, 128, 3)).astype(np.float32)
    model = load_torch_state_dict(kyv7.YOLOv7ObjectDetector.from_preset(preset), training)
    expected = lead_outputs(model, images)
    for form, state_dict in derived.items():
        loaded = kyv7.YOLOv7ObjectDetector.from_preset(preset, fused=form == "deploy_fused")
        aux_before = [ops.convert_to_numpy(w) for w in loaded.weights if "aux_head" in w.path]
        load_torch_state_dict(loaded, state_dict)
        for actual, wanted in zip(lead_outputs(loaded, images), expected, strict=True):
            np.testing.assert_allclose(actual, wanted, atol=1e-4, rtol=1e-4, err_msg=form)
        aux_after = [ops.convert_to_numpy(w) for w in loaded.weights if "aux_head" in w.path]
        assert len(aux_after) == (8 if loaded.has_auxiliary_head else 0)
        for before, after in zip(aux_before, aux_after, strict=True):
            np.testing.assert_array_equal(after, before)  # deploy files have no auxiliary head

        # Writing: the model's deploy forms are the official reparameterisation's.
        ours = to_torch_state_dict(model if form == "deploy" else model.get_fused(), form=form)
        assert [k for k in ours if "anchor" not in k] == list(state_dict), form
        for name, value in state_dict.items():
            np.testing.assert_allclose(ours[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def torch_layout(tensor):
    value = ops.convert_to_numpy(tensor.variable)
    return np.transpose(value, (3, 2, 0, 1)) if tensor.kind == "kernel" else value


@pytest.mark.parametrize("channels", [4, 6])  # without and with the identity branch
def test_repconv_fuses_as_the_official_fuse(channels):
    """yolov7's head RepConvs: the fused layer's official tensors are the official fuse() of the
    unfused layer's."""
    layer = kyv7.layers.RepConv(6)
    layer.build((None, 8, 8, channels))
    rng = np.random.default_rng(channels)
    for weight in layer.weights:
        low = 0.5 if weight.path.endswith(("gamma", "moving_variance")) else -0.5
        weight.assign(rng.uniform(low, 1.5, tuple(weight.shape)).astype(np.float32))
    unfused = layer.official_tensors(102, "deploy")
    assert any(".rbr_identity." in t.name for t in unfused) == (channels == 6)
    official = official_fuse({t.name: torch_layout(t) for t in unfused if t.kind != "counter"})
    fused = layer.get_fused().official_tensors(102, "deploy_fused")
    assert [t.name for t in fused] == list(official) == [
        "model.102.rbr_reparam.weight",
        "model.102.rbr_reparam.bias",
    ]
    for tensor in fused:
        np.testing.assert_allclose(torch_layout(tensor), official[tensor.name], rtol=1e-5, atol=1e-6)


def test_form_errors():
    tiny = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny")
    with pytest.raises(ValueError, match="load it into a model built with fused=True"):
        to_torch_state_dict(tiny, form="deploy_fused")
    with pytest.raises(ValueError, match="unknown official form 'fused'"):
        to_torch_state_dict(tiny, form="fused")
    state_dict, _ = seeded_state_dict(listing("yolov7_tiny", "deploy_fused"), 0)
    with pytest.raises(ValueError, match="deploy_fused form .* into a model built with fused=True"):
        load_torch_state_dict(tiny, state_dict)
    training, _ = seeded_state_dict(official_keys("yolov7_tiny"), 0)
    fused_training = {k: v for k, v in training.items() if ".bn." not in k}
    with pytest.raises(ValueError, match=r"implicit vectors \(ia/im\) but no BatchNorm statistics"):
        load_torch_state_dict(tiny, fused_training)


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
