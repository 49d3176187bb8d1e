"""BatchNormalization of the YOLOv7 units: Keras' layer, trained with TensorFlow's fused kernel.

Keras 3 normalises in training as separate ops (`ops.moments`, then `ops.batch_normalization`), so
TensorFlow runs several passes over each activation forward and many more in the gradient: on a CPU
that is about a sixth of the yolov7_tiny train step. TensorFlow has one fused kernel for it
(`FusedBatchNormV3`, oneDNN on CPUs, cuDNN on GPUs) and one for its gradient. `BatchNorm` runs that
kernel in training on the TensorFlow backend and is Keras' `BatchNormalization` everywhere else
(inference, JAX, PyTorch, synchronised statistics, masks): same weights, same maths (normalised
with the biased batch variance, moving statistics updated with it), same checkpoints.
"""

import keras

from keras_yolov7.layers import tensorflow_batch_norm


@keras.saving.register_keras_serializable(package="keras_yolov7")
class BatchNorm(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` over the last axis of `(batch, height, width, channels)`
    inputs; in training on the TensorFlow backend it runs TensorFlow's fused kernel.

    Float16 and bfloat16 inputs (mixed precision) go into the fused kernel as they are: it computes
    the statistics in float32, as Keras' layer does after casting them.
    """

    def call(self, inputs, training=None, mask=None):
        if training and self.trainable and self._fusable(inputs, mask):
            return tensorflow_batch_norm.fused_training_call(self, inputs)
        return super().call(inputs, training=training, mask=mask)

    def _fusable(self, inputs, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and not self.synchronized
            and not self.renorm
            and self.scale
            and self.center
            and keras.backend.standardize_dtype(inputs.dtype) in ("float32", "float16", "bfloat16")
        )
