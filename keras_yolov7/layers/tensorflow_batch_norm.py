"""TensorFlow-only: the training pass of `keras_yolov7.layers.BatchNorm` on the fused kernel.

Imported by every backend, TensorFlow is only imported when the TensorFlow backend trains.
"""


def fused_training_call(layer, inputs):
    """Normalise `inputs` (NHWC) with their batch statistics and update the layer's moving ones,
    as `keras.layers.BatchNormalization` does in training, in one `FusedBatchNormV3`."""
    import tensorflow as tf

    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        inputs,
        tf.cast(layer.gamma, "float32"),
        tf.cast(layer.beta, "float32"),
        epsilon=layer.epsilon,
        is_training=True,
        data_format="NHWC",
    )
    # The kernel returns the unbiased (Bessel-corrected) batch variance for moving averages; Keras
    # keeps the biased one. n values per channel; n - 1 = 0 only when the variance is 0 anyway.
    count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), "float32")
    variance = variance * (count - 1.0) / count
    momentum = layer.momentum
    moving_mean = tf.cast(layer.moving_mean, "float32")
    moving_variance = tf.cast(layer.moving_variance, "float32")
    layer.moving_mean.assign(moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(moving_variance * momentum + variance * (1.0 - momentum))
    return tf.cast(outputs, layer.compute_dtype)
