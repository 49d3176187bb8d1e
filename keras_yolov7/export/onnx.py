"""ONNX export through tf2onnx, always loaded and run in onnxruntime by the caller's verification.

tf2onnx writes a file even when an op fails to convert, so a written file proves nothing: the
export only counts once onnxruntime has loaded and run it (see verify.py).
"""

import numpy as np
import tensorflow as tf

MIN_OPSET = 13


def convert(fn, image_size, path, opset=MIN_OPSET):
    """Convert `fn(images) -> dict` to an ONNX file with a dynamic batch.

    Args:
        fn: function of uint8 images `(batch, size, size, 3)` RGB returning a dict of tensors
            (the dict keys become the ONNX output names).
        image_size: the square input size in pixels.
        path: output file.
        opset: ONNX opset, at least 13.

    Returns:
        `{op type: count}` of the ONNX graph.
    """
    import tf2onnx

    if int(opset) < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; expected at least {MIN_OPSET}")
    spec = tf.TensorSpec((None, image_size, image_size, 3), tf.uint8, name="images")
    function = tf.function(fn, input_signature=[spec], autograph=False)
    model, _ = tf2onnx.convert.from_function(
        function, input_signature=[spec], opset=int(opset), output_path=str(path)
    )
    counts = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def session(path):
    """An onnxruntime CPU InferenceSession for an ONNX file."""
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(runner, images):
    """Outputs `{name: np.ndarray}` of an onnxruntime session on uint8 `images`."""
    names = [output.name for output in runner.get_outputs()]
    values = runner.run(names, {runner.get_inputs()[0].name: np.asarray(images, np.uint8)})
    return dict(zip(names, values))
