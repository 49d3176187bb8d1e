"""ONNX export through tf2onnx, int8 (QDQ) through ONNX Runtime's static quantisation.

tf2onnx writes a file even when an op fails to convert, so a written file proves nothing: the
export only counts once onnxruntime has loaded and run it (see formats.py).
"""

import numpy as np
import tensorflow as tf

from keras_yolov7.export.layout import DECODE_SCOPE

MIN_OPSET = 13
# The dynamic first axis of the input and of every output: one name, so runtimes and tools
# (ONNX Runtime, onnx-simplifier, NPU compilers) know the outputs' batch is the input's.
BATCH_AXIS = "batch"


def convert(fn, image_size, path, opset=MIN_OPSET):
    """Convert `fn(images) -> dict` to an ONNX file whose batch axis is named "batch".

    Args:
        fn: function of uint8 images `(batch, size, size, 3)` RGB returning a dict of tensors
            (the dict keys become the ONNX output names).
        image_size: the square input size in pixels.
        path: output file.
        opset: ONNX opset, at least 13.

    Returns:
        `{op type: count}` of the ONNX graph.
    """
    import onnx
    import tf2onnx

    if int(opset) < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; expected at least {MIN_OPSET}")
    spec = tf.TensorSpec((None, image_size, image_size, 3), tf.uint8, name="images")
    function = tf.function(fn, input_signature=[spec], autograph=False)
    model, _ = tf2onnx.convert.from_function(function, input_signature=[spec], opset=int(opset))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS
    onnx.save(model, str(path))
    return op_counts(model)


def op_counts(model):
    """`{op type: count}` of an ONNX model (a `ModelProto` or a path)."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    counts = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def quantize(source, path, calibration_images, workdir):
    """Static int8 quantisation in QDQ format with ONNX Runtime, calibrated on images.

    The network's convolutions and activations get QuantizeLinear / DequantizeLinear pairs:
    uint8 activations, int8 weights per output channel (the QDQ form that ONNX Runtime runs with
    int8 kernels on CPUs and that the Qualcomm QNN and Intel OpenVINO NPU runtimes compile). The
    head's 1x1 convolutions and the decode tail (the "decode" scope: sigmoid, box arithmetic,
    clip) stay float32: calibrated on rare outliers, a uint8 range for the head's logits is too
    coarse for box sizes (on the synthetic-shapes model mAP@0.5:0.95 fell from 0.753 to 0.674;
    0.741 with the head in float), and the outputs stay float32 with the float model's names.

    Args:
        source: the float ONNX file (`convert`).
        path: output file.
        calibration_images: uint8 `(N, size, size, 3)` letterboxed like the validation pipeline.
        workdir: folder for the intermediate (shape-inferred) model.

    Returns:
        `{op type: count}` of the quantised graph.
    """
    import onnx
    from onnxruntime import quantization
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = f"{workdir}/prepared.onnx"
    # Shape inference and graph optimisation first, as ONNX Runtime recommends for static
    # quantisation (without it the quantiser misses tensors whose shapes it cannot infer).
    quant_pre_process(str(source), prepared)
    nodes = onnx.load(prepared).graph.node
    tail = [node for node in nodes if node.name.split("/")[0].split("_")[0] == DECODE_SCOPE]
    float_nodes = [node.name for node in tail + _head_convs(nodes, tail)]
    images = iter(np.asarray(calibration_images, np.uint8))

    class CalibrationImages(quantization.CalibrationDataReader):
        def get_next(self):
            image = next(images, None)
            return None if image is None else {"images": image[None]}

    quantization.quantize_static(
        prepared,
        str(path),
        CalibrationImages(),
        quant_format=quantization.QuantFormat.QDQ,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=float_nodes,
    )
    return op_counts(path)


def _head_convs(nodes, tail):
    """The Conv nodes that produce the decode tail's inputs: the head's output convolutions.

    Found by walking back from the tail's inputs through the reshapes between them (and the
    shape computations those read) to the first Conv on every path.
    """
    producer = {output: node for node in nodes for output in node.output}
    inside = {output for node in tail for output in node.output}
    pending = [name for node in tail for name in node.input if name not in inside]
    convs, seen = {}, set()
    while pending:
        node = producer.get(pending.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv":
            convs[node.name] = node
        else:
            pending += list(node.input)
    return list(convs.values())


def session(path, threads=None):
    """An onnxruntime CPU InferenceSession for an ONNX file (`threads` intra-op threads)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(runner, images):
    """Outputs `{name: np.ndarray}` of an onnxruntime session on uint8 `images`."""
    names = [output.name for output in runner.get_outputs()]
    values = runner.run(names, {runner.get_inputs()[0].name: np.asarray(images, np.uint8)})
    return dict(zip(names, values))
