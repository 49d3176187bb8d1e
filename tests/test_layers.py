"""Every YOLOv7 block: shapes, config round trip, and get_fused() equivalence."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_yolov7 import layers as L


def randomize(layer, seed=0):
    """Non-trivial weights everywhere, BatchNormalization statistics included."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        shape = tuple(weight.shape)
        if weight.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif weight.path.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.3, shape)
        weight.assign(value.astype("float32"))


def run(layer, x):
    out = layer(x, training=False)
    if isinstance(out, (list, tuple)):
        return [ops.convert_to_numpy(o) for o in out]
    return ops.convert_to_numpy(out)


def assert_fused_equal(layer, x, atol=2e-5):
    expected = run(layer, x)
    fused = layer.get_fused()
    assert fused.get_config()["fused"] if "fused" in fused.get_config() else True
    actual = run(fused, x)
    if isinstance(expected, list):
        for e, a in zip(expected, actual, strict=True):
            np.testing.assert_allclose(a, e, atol=atol, rtol=1e-5)
    else:
        np.testing.assert_allclose(actual, expected, atol=atol, rtol=1e-5)
    return fused


def inputs(shape, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


CASES = [
    (lambda: L.Conv(8, 3, strides=2), (2, 16, 16, 4), (2, 8, 8, 8)),
    (lambda: L.Conv(8, 1, activation="leaky_relu"), (2, 8, 8, 4), (2, 8, 8, 8)),
    (lambda: L.RepConv(8), (2, 8, 8, 4), (2, 8, 8, 8)),
    (lambda: L.RepConv(8, strides=2), (2, 8, 8, 4), (2, 4, 4, 8)),
    (lambda: L.RepConv(4), (2, 8, 8, 4), (2, 8, 8, 4)),  # identity branch
    (lambda: L.RepConvN(4), (2, 8, 8, 4), (2, 8, 8, 4)),
    (lambda: L.ELAN(16, 8, 4, depth=4, taps=(-1, -3, -5, -6)), (2, 8, 8, 6), (2, 8, 8, 16)),
    (lambda: L.ELAN(16, 8, 4, 2, (-1, -2, -3, -4), chain_block="repconvn"), (2, 8, 8, 6), (2, 8, 8, 16)),
    (lambda: L.EELAN(filters=12, branch_filters=8, chain_filters=4, depth=2, taps=(-1, -2, -3, -4)),
     (2, 8, 8, 6), (2, 8, 8, 12)),
    (lambda: L.SPPCSPC(8), (2, 16, 16, 6), (2, 16, 16, 8)),
    (lambda: L.SPPCSPCTiny(8), (2, 16, 16, 6), (2, 16, 16, 8)),
    (lambda: L.MPTransition(4), (2, 8, 8, 6), (2, 4, 4, 8)),
    (lambda: L.DownC(10), (2, 8, 8, 6), (2, 4, 4, 10)),
]


@pytest.mark.parametrize("make, in_shape, out_shape", CASES)
def test_block_shape_config_and_fused(make, in_shape, out_shape):
    layer = make()
    x = inputs(in_shape)
    y = layer(x)
    assert tuple(y.shape) == out_shape
    assert tuple(layer.compute_output_shape(in_shape)) == out_shape

    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(x)
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in layer.weights]

    randomize(layer)
    fused = assert_fused_equal(layer, x)
    # Fusing removes every BatchNormalization.
    assert not any("moving_mean" in w.path for w in fused.weights)


def test_repconv_identity_branch_only_when_shapes_allow():
    with_identity = L.RepConv(4)
    with_identity.build((None, 8, 8, 4))
    assert with_identity.identity_bn is not None
    for layer, shape in ((L.RepConv(8), (None, 8, 8, 4)), (L.RepConv(4, strides=2), (None, 8, 8, 4)),
                         (L.RepConvN(4), (None, 8, 8, 4))):
        layer.build(shape)
        assert layer.identity_bn is None


def test_repconv_fuses_to_a_single_conv_with_bias():
    layer = L.RepConv(8)
    layer(inputs((1, 8, 8, 4)))
    randomize(layer)
    fused = layer.get_fused()
    assert [tuple(w.shape) for w in fused.weights] == [(3, 3, 4, 8), (8,)]


def test_stride_two_conv_pads_like_pytorch():
    # A 3x3 stride-2 conv of ones with a kernel of ones: PyTorch's symmetric padding makes the
    # top-left output see a 2x2 window (4), Keras "same" would give a 3x3 window (9).
    layer = L.Conv(1, 3, strides=2, activation="linear", fused=True)
    layer.build((None, 4, 4, 1))
    layer.conv.set_weights([np.ones((3, 3, 1, 1), "float32"), np.zeros(1, "float32")])
    out = ops.convert_to_numpy(layer(np.ones((1, 4, 4, 1), "float32")))[0, :, :, 0]
    np.testing.assert_allclose(out, [[4, 6], [6, 9]])


def test_reorg_takes_rows_then_columns():
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    out = ops.convert_to_numpy(L.ReOrg()(x))
    # channels: x[::2, ::2], x[1::2, ::2], x[::2, 1::2], x[1::2, 1::2]
    np.testing.assert_array_equal(out[0, 0, 0], [0, 4, 1, 5])
    np.testing.assert_array_equal(out[0, 1, 1], [10, 14, 11, 15])


def test_mp_transition_appends_skips():
    layer = L.MPTransition(4)
    out = layer([inputs((2, 8, 8, 6)), inputs((2, 4, 4, 5))])
    assert tuple(out.shape) == (2, 4, 4, 13)
    randomize(layer)
    assert_fused_equal(layer, [inputs((2, 8, 8, 6)), inputs((2, 4, 4, 5), seed=3)])


def test_eelan_returns_second_branch_before_the_sum():
    layer = L.EELAN(8, 4, 4, 2, (-1, -2, -3, -4), return_second_branch=True)
    x = inputs((1, 8, 8, 3))
    summed, second = layer(x)
    randomize(layer)
    summed, second = run(layer, x)
    first = run(layer.branch_1, x)
    np.testing.assert_allclose(summed, first + second, atol=1e-5)
    np.testing.assert_allclose(second, run(layer.branch_2, x), atol=1e-6)
    assert_fused_equal(layer, x)


def test_elan_taps_select_outputs_in_order():
    layer = L.ELAN(4, 2, 3, depth=2, taps=(-1, -4))
    layer(inputs((1, 4, 4, 5)))
    # Transition input: chain_1 output (3 channels) then cv1 output (2 channels).
    assert tuple(layer.transition.conv.kernel.shape) == (1, 1, 5, 4)
    with pytest.raises(ValueError, match=r"taps must be non-empty offsets in \[-4, -1\]"):
        L.ELAN(4, 2, 3, depth=2, taps=(-5,))


def test_head_layout_bias_prior_and_fused_implicit():
    head = L.YOLOv7Head(num_classes=3, strides=(8, 16))
    feats = [inputs((2, 8, 8, 6)), inputs((2, 4, 4, 10), seed=2)]
    out = head(feats)
    assert [tuple(o.shape) for o in out] == [(2, 8, 8, 3, 8), (2, 4, 4, 3, 8)]
    bias = ops.convert_to_numpy(head.convs[0].bias).reshape(3, 8)
    np.testing.assert_allclose(bias[:, 4], np.log(8 / (640 / 8) ** 2), rtol=1e-6)
    np.testing.assert_allclose(bias[:, 5:], np.log(0.6 / (3 - 0.99)), rtol=1e-6)
    randomize(head)
    fused = assert_fused_equal(head, feats)
    assert not hasattr(fused, "implicit_add")
    # Channel a * (5 + C) + k of the conv is anchor a, entry k.
    conv_out = ops.convert_to_numpy(head.implicit_multiply[1](head.convs[1](head.implicit_add[1](feats[1]))))
    np.testing.assert_allclose(run(head, feats)[1][0, 2, 3, 1, 4], conv_out[0, 2, 3, 1 * 8 + 4], rtol=1e-6)


def test_auxiliary_head_is_plain_conv():
    head = L.AuxiliaryHead(num_classes=2, strides=(8,))
    out = head([inputs((1, 4, 4, 5))])
    assert tuple(out[0].shape) == (1, 4, 4, 3, 7)
    assert len(head.weights) == 2


def test_implicit_layers():
    add, mul = L.ImplicitAdd(), L.ImplicitMultiply()
    x = inputs((1, 2, 2, 3))
    add(x), mul(x)
    add.implicit.assign(np.array([1.0, 2.0, 3.0], "float32"))
    mul.implicit.assign(np.array([2.0, 0.5, -1.0], "float32"))
    np.testing.assert_allclose(run(add, x), x + [1, 2, 3], rtol=1e-6)
    np.testing.assert_allclose(run(mul, x), x * [2, 0.5, -1], rtol=1e-6)
    np.testing.assert_allclose(run(add.get_fused(), x), run(add, x))


def test_image_input_checks_shape_and_scales():
    layer = L.ImageInput(32)
    out = ops.convert_to_numpy(layer(np.full((1, 64, 32, 3), 255, "uint8")))
    np.testing.assert_allclose(out, 1.0)
    with pytest.raises(ValueError, match="height 65 is not a multiple of the model's largest stride 32"):
        layer(np.zeros((1, 65, 32, 3), "float32"))
    with pytest.raises(ValueError, match=r"\(batch, height, width, 3\)"):
        layer(np.zeros((1, 64, 64, 4), "float32"))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="activation must be one of"):
        L.Conv(4, activation="relu6")
    with pytest.raises(ValueError, match="chain_block must be one of"):
        L.ELAN(4, 2, 2, 2, (-1,), chain_block="dense")
    with pytest.raises(ValueError, match="DownC filters must be even, got 5"):
        L.DownC(5)
    with pytest.raises(ValueError, match="num_classes must be >= 1, got 0"):
        L.YOLOv7Head(0)


def test_serialization_inside_a_model(tmp_path):
    x = keras.Input((16, 16, 3))
    y = L.ELAN(8, 4, 4, 2, (-1, -2, -3, -4), chain_block="repconvn")(L.Conv(6, 3, strides=2)(x))
    model = keras.Model(x, L.SPPCSPCTiny(4)(y))
    randomize(model)
    data = inputs((1, 16, 16, 3))
    path = tmp_path / "blocks.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(run(restored, data), run(model, data), rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the one-pass SiLU gradient is the TensorFlow backend's"
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_training_silu_equals_tensorflow_silu_and_its_gradient(dtype):
    import tensorflow as tf

    from keras_yolov7.layers import tensorflow_activation

    rng = np.random.default_rng(0)
    x = tf.cast(rng.normal(0.0, 4.0, (2, 5, 7, 3)), dtype)
    upstream = tf.cast(rng.normal(size=(2, 5, 7, 3)), dtype)

    def values_and_gradient(function):
        @tf.function
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = function(x)
            return y, tape.gradient(y, x, output_gradients=upstream)

        return [ops.convert_to_numpy(ops.cast(v, "float32")) for v in run(x)]

    (y, dx), (expected_y, expected_dx) = (
        values_and_gradient(tensorflow_activation.training_silu),
        values_and_gradient(tf.nn.silu),
    )
    tolerance = 1e-6 if dtype == "float32" else 2e-2  # bfloat16: about one unit in the last place
    np.testing.assert_allclose(y, expected_y, atol=tolerance, rtol=tolerance)
    np.testing.assert_allclose(dx, expected_dx, atol=tolerance, rtol=tolerance)
    assert np.abs(dx).max() > 1.0  # the gradient is not trivially zero


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the one-pass SiLU gradient is the TensorFlow backend's"
)
def test_conv_trains_with_the_one_pass_silu_gradient_and_infers_without_it(monkeypatch):
    import tensorflow as tf

    from keras_yolov7.layers import tensorflow_activation

    calls = []
    original = tensorflow_activation.training_silu
    monkeypatch.setattr(tensorflow_activation, "training_silu", lambda x: calls.append(1) or original(x))
    layer = L.Conv(4, 3, activation="silu")
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 6, 6, 3)).astype("float32"))
    layer(x, training=False)
    assert not calls  # inference (and export) keep tf.nn.silu, which Grappler fuses into the conv
    layer(x, training=True)
    assert len(calls) == 1

    def kernel_gradient(activation):
        @tf.function
        def run(x):
            with tf.GradientTape() as tape:
                y = layer.bn(layer.conv(x), training=True)
                loss = tf.reduce_sum(activation(y) * tf.range(4, dtype="float32"))
            return tape.gradient(loss, layer.conv.kernel.value)

        return run(x).numpy()

    np.testing.assert_allclose(
        kernel_gradient(tensorflow_activation.training_silu), kernel_gradient(tf.nn.silu), atol=1e-5, rtol=1e-5
    )
