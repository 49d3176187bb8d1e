"""Model size and cost as the official YOLOv7 reports them: parameters and GFLOPs.

`count_parameters` and `count_gflops` measure a built model. `preset_complexity` gives the same
figures for a preset without building it (what `keras-yolov7 info` prints): the measured figures
of each preset at 80 classes, and the head's share of each further class, read from the
architecture's data (`configs.py`). `tests/test_models.py` checks it against built models.
"""

import contextlib

import numpy as np

from keras_yolov7.models.configs import ARCHITECTURES

# Measured on the built presets with 80 classes (`count_parameters` of the training and fused
# forms; multiply-adds of the fused form's convolutions at the preset's input size, which
# `count_gflops` reports as 2 x MACs / 1e9). The parameter counts and GFLOPs equal the official
# figures.
PRESET_FIGURES = {
    # preset: (parameters (training), parameters (fused), MACs (fused) at input_size)
    "yolov7_tiny": (6_228_762, 6_219_709, 6_850_355_200),
    "yolov7": (37_622_682, 36_905_341, 52_255_539_200),
    "yolov7x": (71_347_394, 71_311_741, 94_836_838_400),
    "yolov7_w6": (82_312_436, 70_394_300, 179_858_636_800),
    "yolov7_e6": (111_898_292, 97_202_940, 257_212_825_600),
    "yolov7_d6": (154_709_364, 133_757_052, 350_869_094_400),
    "yolov7_e6e": (166_408_884, 151_687_420, 421_092_147_200),
}
FIGURES_CLASSES = 80


def preset_complexity(preset, num_classes=FIGURES_CLASSES, image_size=None):
    """Parameters and GFLOPs of a preset with `num_classes` classes, without building it.

    Each class adds, per anchor and output level, one output channel to the heads' 1x1 convs:
    its kernel column and bias (and, in the training form, the lead head's implicit multiplier
    and the P6 auxiliary head's conv), and that conv's multiply-adds over the level's grid.

    Args:
        preset: an architecture name ("yolov7_tiny", ...).
        num_classes: classes of the head.
        image_size: square input side for the GFLOPs (default: the preset's training size).

    Returns:
        dict: `params_train`, `params_fused` (ints, trainable weights as PyTorch counts them)
        and `gflops_fused` (2 x multiply-adds of the fused model's convolutions, / 1e9).
    """
    if preset not in PRESET_FIGURES:
        raise ValueError(f"unknown preset {preset!r}; expected one of {list(PRESET_FIGURES)}")
    architecture = ARCHITECTURES[preset]
    size = image_size or architecture["input_size"]
    anchors = len(architecture["anchors"][0]) // 2
    layers = architecture["layers"]
    lead = [layers[i][2]["filters"] for i in architecture["lead"]]
    aux = [layers[i][2]["filters"] for i in architecture.get("aux", [])]
    extra = num_classes - FIGURES_CLASSES
    train, fused, macs = PRESET_FIGURES[preset]
    train += extra * anchors * (sum(c + 2 for c in lead) + sum(c + 1 for c in aux))
    fused += extra * anchors * sum(c + 1 for c in lead)
    grid = [(architecture["input_size"] / s) ** 2 for s in architecture["strides"]]
    macs += extra * anchors * sum(c * cells for c, cells in zip(lead, grid))
    scale = (size / architecture["input_size"]) ** 2
    return {
        "params_train": int(train),
        "params_fused": int(fused),
        "gflops_fused": 2 * macs * scale / 1e9,
    }


def count_parameters(model):
    """Parameters in PyTorch's sense: trainable weights only (BatchNorm running statistics and
    other buffers excluded), which is how the official parameter counts are made."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@contextlib.contextmanager
def _recording_convolutions(records):
    import keras

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
