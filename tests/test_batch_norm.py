"""`layers.BatchNorm`: Keras' BatchNormalization, trained with TensorFlow's fused kernel.

The fused path (TensorFlow, training) must give what `keras.layers.BatchNormalization` gives:
outputs, moving statistics and gradients; every other path is Keras' own code.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_yolov7 import layers as L

tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="the fused kernel is the TensorFlow backend's"
)


def pair(channels, momentum=0.97, epsilon=1e-3):
    ours = L.BatchNorm(momentum=momentum, epsilon=epsilon)
    keras_bn = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon)
    rng = np.random.default_rng(1)
    for layer in (ours, keras_bn):
        layer.build((None, None, None, channels))
    values = [
        rng.uniform(0.5, 1.5, channels),  # gamma
        rng.normal(0.0, 0.3, channels),  # beta
        rng.normal(0.0, 0.3, channels),  # moving mean
        rng.uniform(0.5, 1.5, channels),  # moving variance
    ]
    for layer in (ours, keras_bn):
        layer.set_weights([v.astype("float32") for v in values])
    return ours, keras_bn


def inputs(shape, seed=0):
    # Offset and scaled per channel, as conv outputs are: the variance's two forms differ there.
    rng = np.random.default_rng(seed)
    return (rng.normal(0.0, 1.0, shape) * rng.uniform(0.5, 4.0, shape[-1]) + rng.normal(0, 3, shape[-1])).astype(
        "float32"
    )


@pytest.mark.parametrize("shape", [(4, 9, 7, 6), (2, 3, 3, 5), (1, 1, 1, 3)])
def test_training_matches_keras_batch_normalization(shape):
    ours, keras_bn = pair(shape[-1])
    x = inputs(shape)
    for step in range(2):  # the moving statistics carry over
        expected = ops.convert_to_numpy(keras_bn(x + step, training=True))
        actual = ops.convert_to_numpy(ours(x + step, training=True))
        np.testing.assert_allclose(actual, expected, atol=2e-5, rtol=1e-5)
    for a, e, name in zip(ours.weights, keras_bn.weights, ("gamma", "beta", "mean", "variance"), strict=True):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(e), atol=1e-5, rtol=1e-5, err_msg=name)


def test_inference_uses_moving_statistics():
    ours, keras_bn = pair(6)
    x = inputs((2, 5, 5, 6))
    np.testing.assert_allclose(
        ops.convert_to_numpy(ours(x, training=False)), ops.convert_to_numpy(keras_bn(x, training=False)), atol=1e-6
    )
    frozen, _ = pair(6)
    frozen.trainable = False  # a frozen layer normalises with its moving statistics, even in training
    np.testing.assert_allclose(
        ops.convert_to_numpy(frozen(x, training=True)), ops.convert_to_numpy(keras_bn(x, training=False)), atol=1e-6
    )


@tensorflow_only
@pytest.mark.parametrize("jit_compile", [False, True])
def test_gradients_match_keras_batch_normalization(jit_compile):
    import tensorflow as tf

    ours, keras_bn = pair(6)
    x = tf.constant(inputs((3, 8, 6, 6)))
    weights = tf.constant(np.random.default_rng(2).normal(size=(3, 8, 6, 6)).astype("float32"))

    def gradients(layer):
        @tf.function(jit_compile=jit_compile)
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, training=True) * weights)
            return tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])

        return [g.numpy() for g in run(x)]

    for actual, expected, name in zip(gradients(ours), gradients(keras_bn), ("x", "gamma", "beta"), strict=True):
        np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4, err_msg=name)
    for a, e in zip(ours.non_trainable_weights, keras_bn.non_trainable_weights, strict=True):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(e), atol=1e-5, rtol=1e-5)


@tensorflow_only
def test_the_fused_kernel_runs_in_training_only():
    import tensorflow as tf

    ours, _ = pair(4)
    graph = tf.function(lambda x, training: ours(x, training=training))
    x = tf.constant(inputs((2, 4, 4, 4)))
    trained = graph.get_concrete_function(x, True).graph.as_graph_def()
    inferred = graph.get_concrete_function(x, False).graph.as_graph_def()
    assert any(node.op.startswith("FusedBatchNorm") for node in trained.node)
    assert not any(node.op.startswith("FusedBatchNorm") for node in inferred.node)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_matches_keras(dtype):
    policy = f"mixed_{dtype}"
    ours = L.BatchNorm(momentum=0.97, epsilon=1e-3, dtype=policy)
    keras_bn = keras.layers.BatchNormalization(momentum=0.97, epsilon=1e-3, dtype=policy)
    for layer in (ours, keras_bn):
        layer.build((None, None, None, 6))
    x = ops.cast(inputs((2, 6, 5, 6)), dtype)
    actual = ours(x, training=True)
    expected = keras_bn(x, training=True)
    assert keras.backend.standardize_dtype(actual.dtype) == dtype
    scale = 0.02 if dtype == "bfloat16" else 2e-3  # one unit in the last place of the output dtype
    np.testing.assert_allclose(
        ops.convert_to_numpy(ops.cast(actual, "float32")),
        ops.convert_to_numpy(ops.cast(expected, "float32")),
        atol=scale,
        rtol=scale,
    )
    for a, e in zip(ours.non_trainable_weights, keras_bn.non_trainable_weights, strict=True):
        assert keras.backend.standardize_dtype(a.dtype) == "float32"
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(e), atol=1e-3, rtol=1e-3)


def test_conv_units_use_it_and_keep_their_checkpoint_layout():
    conv = L.Conv(8, 3)
    conv.build((None, 16, 16, 4))
    assert isinstance(conv.bn, L.BatchNorm) and isinstance(conv.bn, keras.layers.BatchNormalization)
    assert [w.path.split("/")[-1] for w in conv.weights] == ["kernel", "gamma", "beta", "moving_mean", "moving_variance"]
    restored = keras.layers.deserialize(keras.layers.serialize(L.BatchNorm(momentum=0.5, epsilon=0.01)))
    assert type(restored) is L.BatchNorm and restored.momentum == 0.5 and restored.epsilon == 0.01
