"""TensorFlow-only: SiLU for training, its gradient computed in one fused pass.

`tf.nn.silu`'s gradient runs as six elementwise ops (sigmoid, subtract, multiply, add, multiply,
multiply), each a full pass over the activation: on a CPU, about a tenth of yolov7's train step.
Here the forward is still `tf.nn.silu` (which Grappler fuses into one kernel) and the gradient is
the same formula, `dy * s * (1 + x * (1 - s))` with `s = sigmoid(x)`, compiled by XLA into one
loop. Imported by every backend; TensorFlow is only imported when the TensorFlow backend trains.
"""

import functools


@functools.cache
def _training_silu():
    import tensorflow as tf

    @tf.function(jit_compile=True, autograph=False)
    def silu_gradient(features, upstream):
        sigmoid = tf.sigmoid(features)
        return upstream * sigmoid * (1.0 + features * (1.0 - sigmoid))

    @tf.custom_gradient
    def silu(features):
        def gradient(upstream):
            return silu_gradient(features, upstream)

        return tf.nn.silu(features), gradient

    return silu


def training_silu(x):
    """`x * sigmoid(x)`, as `tf.nn.silu`, with the fused gradient."""
    return _training_silu()(x)
