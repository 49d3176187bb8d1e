"""Model size and cost as the official YOLOv7 reports them: parameters and GFLOPs."""

import contextlib

import keras
import numpy as np


def count_parameters(model):
    """Parameters in PyTorch's sense: trainable weights only (BatchNorm running statistics and
    other buffers excluded), which is how the official parameter counts are made."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@contextlib.contextmanager
def _recording_convolutions(records):
    # Keras layers have no forward hooks; wrapping Conv2D.call for the duration of one eager pass is
    # the simplest exact way to see every convolution's output size inside nested blocks.
    original = keras.layers.Conv2D.call

    def call(layer, inputs):
        outputs = original(layer, inputs)
        records.append((tuple(layer.kernel.shape), tuple(outputs.shape)))
        return outputs

    keras.layers.Conv2D.call = call
    try:
        yield
    finally:
        keras.layers.Conv2D.call = original


def count_gflops(model, image_size=640):
    """Floating-point operations of one `image_size` x `image_size` image, in billions, counted like
    the official `model_info` (thop): 2 x the multiply-adds of every convolution, with biases,
    pooling, upsampling and activations not counted; measured at a small size and scaled.

    Args:
        model: a `YOLOv7ObjectDetector` (use the fused form for the official "fused" figures).
        image_size: square input side in pixels.
    """
    probe = 2 * max(model.strides)
    records = []
    with _recording_convolutions(records):
        model(np.zeros((1, probe, probe, 3), "float32"), training=False)
    macs = 0
    for kernel, out_shape in records:
        kh, kw, c_in, _ = kernel
        macs += int(np.prod(out_shape)) * kh * kw * c_in
    return 2 * macs / 1e9 * (image_size / probe) ** 2
