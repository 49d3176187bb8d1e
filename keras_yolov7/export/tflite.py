"""SavedModel -> TFLite (fp32, fp16, full-integer int8) and the checks every TFLite export passes.

Conversion always goes through `tf.lite.TFLiteConverter.from_saved_model` (`from_concrete_functions`
with a trackable object silently produces NaN outputs on this stack) with builtin ops only, so NPU
delegates can take the whole graph: no Flex (SELECT_TF_OPS) and no custom op.
"""

import collections
import re

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema_fb
from tensorflow.lite.python import schema_util
from tensorflow.lite.tools import flatbuffer_utils

from keras_yolov7.export.layout import QUANTIZATIONS
from keras_yolov7.export.verify import NonBuiltinOpError

# Network ops that must stay integer in an int8 model: one of these computing in float means the
# quantiser fell back and the network runs on the CPU's float kernels. (Reshapes, slices and
# concatenations also appear in the float post-processing tail, so they are not listed.)
INTEGER_NETWORK_OPS = frozenset(
    {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "TRANSPOSE_CONV",
        "FULLY_CONNECTED",
        "MAX_POOL_2D",
        "AVERAGE_POOL_2D",
        "LEAKY_RELU",
        "LOGISTIC",
        "HARD_SWISH",
        "PAD",
        "PADV2",
        "RESIZE_NEAREST_NEIGHBOR",
        "RESIZE_BILINEAR",
        "TILE",
    }
)

_BUILTIN_NAMES = {
    code: name for name, code in vars(schema_fb.BuiltinOperator).items() if not name.startswith("_")
}


def convert(saved_model_dir, quantization, calibration_images=None):
    """Convert the serving signature of a SavedModel to TFLite.

    Args:
        saved_model_dir: a SavedModel whose serving signature takes float32 pixels
            `(1, size, size, 3)` in 0..255.
        quantization: "fp32", "fp16" (float16 weights, float32 compute on CPU) or "int8"
            (full-integer: int8 weights and activations, uint8 input with scale 1 and zero
            point 0 so raw RGB bytes are fed unchanged; float32 outputs).
        calibration_images: uint8 `(N, size, size, 3)` for "int8", letterboxed like the
            validation pipeline.

    Returns:
        The model as bytes.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; expected one of {QUANTIZATIONS}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    # Builtins only: a TF op without a builtin kernel fails here instead of turning into Flex.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if calibration_images is None or len(calibration_images) == 0:
            raise ValueError("int8 conversion needs calibration images; got none")
        images = _with_full_pixel_range(calibration_images)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [image[None].astype(np.float32)] for image in images
        )
        converter.inference_input_type = tf.uint8
    try:
        model = converter.convert()
    except Exception as error:
        needed = _non_builtin_ops(str(error))
        if not needed:
            raise
        raise NonBuiltinOpError(
            f"the graph needs TensorFlow ops {needed} that have no TFLite builtin kernel; "
            "expected builtin ops only (no Flex / SELECT_TF_OPS)"
        ) from error
    if quantization == "int8":
        _check_identity_input_quantization(model)
    return model


def _non_builtin_ops(message):
    # The converter's error names them as "'tf.Op' op is neither a custom op nor a flex op" and
    # in "Custom ops: A, B" / "Flex ops: A, B" lines.
    names = re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message)
    for line in re.findall(r"(?:Custom|Flex) ops: ([^\n]+)", message):
        names += [name.strip() for name in line.split(",")]
    return sorted(set(names))


def _with_full_pixel_range(images):
    # The uint8 input's scale and zero point come from the calibrated input range. One black and
    # one white pixel pin that range to 0..255, so the input is scale 1, zero point 0: an app
    # feeds raw RGB bytes and the network sees exactly the float model's pixels.
    images = np.array(images, np.uint8, copy=True)
    images[0, 0, 0] = 0
    images[0, 0, 1] = 255
    return images


def _check_identity_input_quantization(model):
    scale, zero_point = input_quantization(model)
    if not (abs(scale - 1.0) < 1e-6 and zero_point == 0):
        raise RuntimeError(
            f"int8 model input quantization is scale {scale}, zero point {zero_point}; expected "
            "scale 1, zero point 0 (raw uint8 pixels)"
        )


def input_quantization(model):
    """`(scale, zero_point)` of the first input of a TFLite model (0.0, 0 when float)."""
    root = schema_fb.Model.GetRootAsModel(model, 0)
    subgraph = root.Subgraphs(0)
    quantization = subgraph.Tensors(subgraph.Inputs(0)).Quantization()
    if quantization is None or quantization.ScaleLength() == 0:
        return 0.0, 0
    return float(quantization.Scale(0)), int(quantization.ZeroPoint(0))


def op_counts(model):
    """Ops of a TFLite model (all subgraphs) as `{name: count}`; custom ops by their custom name."""
    root = schema_fb.Model.GetRootAsModel(model, 0)
    names = []
    for index in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(index)
        builtin = schema_util.get_builtin_code_from_operator_code(code)
        if builtin == schema_fb.BuiltinOperator.CUSTOM:
            names.append("custom:" + code.CustomCode().decode())
        else:
            names.append(_BUILTIN_NAMES.get(builtin, f"builtin_{builtin}"))
    counts = collections.Counter()
    for s in range(root.SubgraphsLength()):
        subgraph = root.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            counts[names[subgraph.Operators(o).OpcodeIndex()]] += 1
    return dict(sorted(counts.items()))


def check_builtin_ops(model):
    """Ops of the model; raises `NonBuiltinOpError` when a non-builtin op appears.

    Args:
        model: TFLite model bytes.

    Returns:
        `{op name: count}`.
    """
    counts = op_counts(model)
    bad = sorted(name for name in counts if name.startswith("custom:"))
    if bad:
        flex = [name for name in bad if name.startswith("custom:Flex")]
        why = " (Flex / SELECT_TF_OPS: TensorFlow kernels no NPU delegate runs)" if flex else ""
        raise NonBuiltinOpError(
            f"the TFLite model uses non-builtin ops {bad}{why}; expected builtin ops only"
        )
    return counts


def check_static_shapes(model):
    """Raises ValueError when a tensor of the model has a dynamic (-1) dimension."""
    root = schema_fb.Model.GetRootAsModel(model, 0)
    dynamic = []
    for s in range(root.SubgraphsLength()):
        subgraph = root.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            signature = tensor.ShapeSignatureAsNumpy()
            if isinstance(signature, np.ndarray) and (signature < 0).any():
                dynamic.append(f"{tensor.Name().decode()} {signature.tolist()}")
    if dynamic:
        raise ValueError(f"the TFLite model has dynamic shapes (expected static): {dynamic[:5]}")


def reorder_outputs(model, names):
    """The model with its subgraph outputs in the order of the signature output `names`.

    The converter orders outputs arbitrarily; apps that read outputs by position (the Task
    Library / MediaPipe ObjectDetector, a raw Interpreter) need a fixed order.
    """
    model_object = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    signature = model_object.signatureDefs[0]
    by_name = {output.name.decode(): output.tensorIndex for output in signature.outputs}
    if sorted(by_name) != sorted(names):
        raise ValueError(f"signature outputs are {sorted(by_name)}; expected {sorted(names)}")
    model_object.subgraphs[0].outputs = [by_name[name] for name in names]
    signature.outputs = sorted(signature.outputs, key=lambda o: names.index(o.name.decode()))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model_object))


def interpreter(model, preserve_all_tensors=False, num_threads=None):
    """An allocated `ai_edge_litert` Interpreter for model bytes."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        # Keeping every tensor is how the verification reads the NMS op's inputs; the warning
        # that it is meant for debugging would only be noise in every export's output.
        warnings.filterwarnings("ignore", "Warning: Enabling `experimental_preserve_all_tensors`")
        runner = Interpreter(
            model_content=model,
            num_threads=num_threads,
            experimental_preserve_all_tensors=preserve_all_tensors,
        )
    runner.allocate_tensors()
    return runner


def float_ops(runner):
    """Ops of an allocated interpreter that compute on float32 activations, as `[name, ...]`."""
    tensors = {d["index"]: d for d in runner.get_tensor_details()}
    names = []
    for op in runner._get_ops_details():  # the only per-op view ai_edge_litert offers
        if op["op_name"] == "DELEGATE":
            continue
        inputs = [tensors[int(t)] for t in op["inputs"] if int(t) >= 0]
        if any(t["dtype"] == np.float32 for t in inputs):
            names.append(op["op_name"])
    return names


def check_integer_network(runner):
    """Float ops of an int8 model; raises when a network op fell back to float."""
    names = float_ops(runner)
    fallback = sorted({name for name in names if name in INTEGER_NETWORK_OPS})
    if fallback:
        raise RuntimeError(
            f"int8 model runs network ops {fallback} in float (quantisation fell back); "
            "expected int8 kernels for the whole network"
        )
    return dict(sorted(collections.Counter(names).items()))
