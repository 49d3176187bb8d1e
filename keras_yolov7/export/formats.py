"""Build one export in a work folder and verify it (TensorFlow backend)."""

import pathlib

import numpy as np
import tensorflow as tf

from keras_yolov7.export import graph as graph_lib
from keras_yolov7.export import layout
from keras_yolov7.export import metadata as metadata_lib
from keras_yolov7.export import onnx as onnx_lib
from keras_yolov7.export import saved_model as saved_model_lib
from keras_yolov7.export import tflite as tflite_lib
from keras_yolov7.export import verify as verify_lib
from keras_yolov7.export.export import ExportResult
from keras_yolov7.export.export import progress
from keras_yolov7.export.verify import EVAL_IOU_THRESHOLD
from keras_yolov7.export.verify import EVAL_MAX_DETECTIONS
from keras_yolov7.export.verify import EVAL_SCORE_THRESHOLD
from keras_yolov7.export.verify import INT8_NMS_TOLERANCE
from keras_yolov7.export.verify import TOLERANCES


def build_and_verify(fixed, job, workdir):
    """Write the export described by `job` inside `workdir`, verify it, describe it.

    Returns:
        `ExportResult` whose path is the artifact inside `workdir`.
    """
    options = job["options"]
    export_graph = graph_lib.ExportGraph(fixed, int8=options["quantization"] == "int8")
    builders = {"saved_model": _saved_model, "tflite": _tflite, "onnx": _onnx}
    result = builders[options["format"]](export_graph, job, pathlib.Path(workdir))
    result.file_size = _size(pathlib.Path(result.path))
    return result


def _size(path):
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _result(job, path, **fields):
    options = job["options"]
    return ExportResult(
        path=str(path),
        format=options["format"],
        quantization=options["quantization"],
        nms=options["nms"],
        image_size=options["image_size"],
        num_classes=options["num_classes"],
        file_size=0,
        **fields,
    )


def _references(job, clip=True):
    options = job["options"]
    return verify_lib.reference_candidates(
        job["reference_raw"], options["anchors"], options["strides"], options["image_size"], clip
    )


def _nms_args(options):
    return (options["max_detections"], options["iou_threshold"], options["score_threshold"])


def _reference_detections(job, boxes, scores, per_class=False):
    return [
        verify_lib.reference_nms(b, s, *_nms_args(job["options"]), per_class=per_class)
        for b, s in zip(boxes, scores)
    ]


# SavedModel -----------------------------------------------------------------------------------


def _saved_model(export_graph, job, workdir):
    options = job["options"]
    path = workdir / "saved_model"
    functions = saved_model_lib.serving_functions(export_graph, options["nms"], *_nms_args(options))
    progress(options, f"writing the SavedModel (signatures {sorted(functions)})")
    saved_model_lib.write(path, export_graph, functions, tf.uint8, batch_size=None)

    progress(options, "verifying the SavedModel against the Keras model")
    loaded = tf.saved_model.load(str(path))
    images = tf.constant(job["samples"])
    decoded_name = "decoded" if "decoded" in functions else "serving_default"
    decoded = {k: v.numpy() for k, v in loaded.signatures[decoded_name](images=images).items()}
    ref_boxes, ref_scores = _references(job)
    figures = {
        "decoded": verify_lib.decoded_difference(
            decoded["boxes"], decoded["scores"], ref_boxes, ref_scores
        )
    }
    verify_lib.check(figures["decoded"], TOLERANCES["fp32"], "SavedModel candidates")
    if options["nms"] != "none":
        outputs = loaded.signatures["serving_default"](images=images)
        detections = verify_lib.unpack_detections({k: v.numpy() for k, v in outputs.items()})
        figures.update(
            _nms_figures(
                job, detections, decoded["boxes"], decoded["scores"], ref_boxes, ref_scores
            )
        )
        _check_nms_figures(figures, "fp32", "SavedModel")
    signature = loaded.signatures["serving_default"]
    inputs = {
        spec.name: {"shape": _shape(spec.shape), "dtype": spec.dtype.name}
        for spec in signature.structured_input_signature[1].values()
    }
    outputs = {
        name: {"shape": _shape(spec.shape), "dtype": spec.dtype.name}
        for name, spec in signature.structured_outputs.items()
    }
    return _result(job, path, inputs=inputs, outputs=outputs, ops={}, verification=figures)


def _shape(shape):
    return [-1 if d is None else int(d) for d in shape]


# TFLite ---------------------------------------------------------------------------------------

OUTPUT_ORDER = {
    "none": layout.DECODED_OUTPUTS,
    "v4": layout.DETECTION_OUTPUTS,
    "v5": layout.DETECTION_OUTPUTS,
    "android": layout.DETECTION_OUTPUTS,
}


def _tflite(export_graph, job, workdir):
    options = job["options"]
    nms, quantization = options["nms"], options["quantization"]
    source = workdir / "convert"
    functions = saved_model_lib.serving_functions(export_graph, nms, *_nms_args(options))
    saved_model_lib.write(
        source,
        export_graph,
        {"serving_default": functions["serving_default"]},
        tf.float32,
        batch_size=1,
    )
    progress(options, f"converting to TFLite {quantization}, nms {nms}")
    custom = (layout.POSTPROCESS_OP,) if nms == "android" else ()
    model = tflite_lib.convert(
        source, quantization, job["calibration_images"], custom_ops=bool(custom)
    )
    ops = tflite_lib.check_builtin_ops(model, allowed_custom=custom)
    tflite_lib.check_static_shapes(model)
    model = tflite_lib.reorder_outputs(model, OUTPUT_ORDER[nms])
    metadata = ""
    if nms == "android":
        model, metadata = metadata_lib.add_object_detector_metadata(model, options["class_names"])
        progress(options, f"Android metadata {metadata}")
    path = workdir / "model.tflite"
    path.write_bytes(model)

    progress(options, "verifying the TFLite model against the Keras model")
    runner = tflite_lib.interpreter(model, preserve_all_tensors=nms != "none")
    float_ops = tflite_lib.check_integer_network(runner) if quantization == "int8" else {}
    figures = _verify_tflite(runner, job)
    if quantization == "int8" and job["validation_data"] is not None:
        figures["map"] = _int8_map(runner, export_graph, job)
    inputs = {d["name"]: _describe(d) for d in runner.get_input_details()}
    outputs = {
        name: _describe(detail)
        for name, detail in runner.get_signature_runner().get_output_details().items()
    }
    outputs = {name: outputs[name] for name in OUTPUT_ORDER[nms]}
    return _result(
        job,
        path,
        inputs=inputs,
        outputs=outputs,
        ops=ops,
        verification=figures,
        float_ops=float_ops,
        metadata=metadata,
    )


def _describe(detail):
    description = {
        "shape": [int(d) for d in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
    }
    scale, zero_point = detail["quantization"]
    if scale:
        description["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
    return description


def tflite_candidates(runner, image, nms):
    """Run a TFLite model on one image; its outputs and pre-NMS candidates.

    Args:
        runner: an allocated Interpreter (`experimental_preserve_all_tensors=True` when the
            model has NMS in the graph: the candidates are read from the NMS op's inputs).
        image: uint8 `(size, size, 3)`.
        nms: the model's layout.

    Returns:
        `(outputs, boxes, scores)`: outputs `{name: array}`; boxes `(N, 4)` normalised xyxy
        (v4/v5: rounded to 1 / BOX_UNITS as the NMS sees them; android: ymin, xmin, ymax, xmax
        decoded from the op's encodings); scores `(N, C)` (v4/v5: each candidate's best score
        at its class, zeros elsewhere).
    """
    detail = runner.get_input_details()[0]
    outputs = runner.get_signature_runner()(images=image[None].astype(detail["dtype"]))
    if nms == "none":
        return outputs, outputs["boxes"][0], outputs["scores"][0]
    op_name = layout.POSTPROCESS_OP if nms == "android" else f"NON_MAX_SUPPRESSION_{nms.upper()}"
    op = next(o for o in runner._get_ops_details() if o["op_name"] == op_name)
    first, second = (_dequantized(runner, int(i)) for i in op["inputs"][:2])
    if nms == "android":
        # The op's decoding: y = y_enc * anchor_h + anchor_y, h = exp(h_enc) * anchor_h.
        anchors = _dequantized(runner, int(op["inputs"][2]))
        encodings, scores = first.reshape(len(anchors), 4), second.reshape(len(anchors), -1)
        center = encodings[:, :2] * anchors[:, 2:] + anchors[:, :2]
        half = np.exp(encodings[:, 2:]) * anchors[:, 2:] / 2
        return outputs, np.concatenate([center - half, center + half], -1), scores
    classes = np.floor(first[:, 0] / layout.CLASS_SHIFT).astype(np.int64)
    boxes = (first - classes[:, None] * layout.CLASS_SHIFT) / layout.BOX_UNITS
    scores = np.zeros((len(second), _num_classes(runner)), np.float64)
    scores[np.arange(len(second)), classes] = second
    return outputs, boxes, scores


def _num_classes(runner):
    for op in runner._get_ops_details():
        if op["op_name"] == "ARG_MAX":
            return int(runner.get_tensor_details()[int(op["inputs"][0])]["shape"][-1])
    raise ValueError("no ARG_MAX op (best class) found in the NMS graph")


def _dequantized(runner, index):
    detail = next(d for d in runner.get_tensor_details() if d["index"] == index)
    value = runner.get_tensor(index).astype(np.float64)
    scale, zero_point = detail["quantization"]
    return (value - zero_point) * scale if scale else value


def _verify_tflite(runner, job):
    options = job["options"]
    nms, quantization = options["nms"], options["quantization"]
    ref_boxes, ref_scores = _references(job, clip=nms != "android")
    if nms == "android":
        ref_boxes = ref_boxes[..., [1, 0, 3, 2]]  # the op's ymin, xmin, ymax, xmax
    got = [tflite_candidates(runner, image, nms) for image in job["samples"]]
    boxes = np.stack([g[1] for g in got])
    scores = np.stack([g[2] for g in got])
    if nms in layout.NMS_OPS:
        # The NMS sees boxes rounded to 1 / BOX_UNITS and each candidate's best class only.
        # Compared as the best score per candidate: equal top scores make the class a tie.
        seen_boxes = np.round(ref_boxes * layout.BOX_UNITS) / layout.BOX_UNITS
        decoded = verify_lib.decoded_difference(
            boxes, scores.max(-1), seen_boxes, ref_scores.max(-1)
        )
        decoded["class_agreement"] = float((scores.argmax(-1) == ref_scores.argmax(-1)).mean())
    else:
        decoded = verify_lib.decoded_difference(boxes, scores, ref_boxes, ref_scores)
    figures = {"decoded": decoded}
    if nms != "none":
        outputs = {k: np.concatenate([g[0][k] for g in got]) for k in got[0][0]}
        detections = verify_lib.unpack_detections(outputs)
        figures.update(_nms_figures(job, detections, boxes, scores, ref_boxes, ref_scores))
    what = f"TFLite {quantization}"
    if quantization in TOLERANCES:
        extra = 1.0 / layout.BOX_UNITS if nms in layout.NMS_OPS else 0.0
        tolerance = TOLERANCES[quantization]
        verify_lib.check(
            {"boxes_max_abs_diff": decoded["boxes_max_abs_diff"]}, tolerance + extra, what
        )
        verify_lib.check({"scores_max_abs_diff": decoded["scores_max_abs_diff"]}, tolerance, what)
    if nms != "none":
        _check_nms_figures(figures, quantization, what)
    return figures


def _nms_figures(job, detections, boxes, scores, ref_boxes, ref_scores):
    """NMS semantics (vs NumPy NMS on the export's own candidates) and agreement with Keras."""
    per_class = job["options"]["nms"] == "android"
    return {
        "nms": verify_lib.nms_consistency(
            detections, _reference_detections(job, boxes, scores, per_class)
        ),
        "detections": verify_lib.detection_agreement(
            detections, _reference_detections(job, ref_boxes, ref_scores, per_class)
        ),
    }


def _check_nms_figures(figures, quantization, what):
    nms = figures["nms"]
    if quantization == "int8":
        # int8 scores tie often and NMS kernels break ties in their own order, so the kept sets
        # may differ by a tie's worth; a broken NMS output (e.g. collapsed scores) is far off.
        allowed_mismatches, tolerance = nms["images"] // 2, INT8_NMS_TOLERANCE
    else:
        allowed_mismatches = 0
        tolerance = TOLERANCES[quantization] + 1.0 / layout.SCORE_UNITS
    if nms["count_mismatches"] > allowed_mismatches:
        raise verify_lib.ExportVerificationError(
            f"{what}: the in-graph NMS kept a different number of detections than NMS on the "
            f"same candidates on {nms['count_mismatches']} of {nms['images']} images"
        )
    verify_lib.check(nms, tolerance, f"{what} NMS")


def _int8_map(runner, export_graph, job):
    """mAP of the int8 TFLite model next to the float Keras model's on the validation data.

    Both go through the same NumPy NMS at the official evaluation settings, so the difference
    is the quantisation's alone.
    """
    import keras

    options = job["options"]
    dataset, batches = job["validation_data"]
    size, nms = options["image_size"], options["nms"]
    model = export_graph.model
    int8_detections, float_detections = [], []
    progress = keras.utils.Progbar(None, verbose=int(options["verbose"]), unit_name="batch")
    for images, targets in batches:
        images = np.asarray(images)
        raw = [np.asarray(r) for r in model(images, training=False)[: model.num_levels]]
        ref_boxes, ref_scores = verify_lib.reference_candidates(
            raw, options["anchors"], options["strides"], size
        )
        for b, image in enumerate(images):
            meta = {key: np.asarray(value)[b] for key, value in targets.items()}
            _, boxes, scores = tflite_candidates(runner, image, nms)
            if nms == "android":
                boxes = boxes[:, [1, 0, 3, 2]]
            int8_detections.append(_to_original(boxes, scores, meta, size))
            float_detections.append(_to_original(ref_boxes[b], ref_scores[b], meta, size))
        progress.add(1)
    return verify_lib.map_comparison(dataset, float_detections, int8_detections)


def _to_original(boxes, scores, meta, size):
    picked = verify_lib.reference_nms(
        boxes, scores, EVAL_MAX_DETECTIONS, EVAL_IOU_THRESHOLD, EVAL_SCORE_THRESHOLD
    )
    pad = np.asarray(meta["pad"], np.float64).reshape(2)
    scale = float(np.asarray(meta["scale"]).reshape(()))
    height, width = (int(v) for v in np.asarray(meta["original_size"]).reshape(2))
    xyxy = (picked["boxes"] * size - np.tile(pad, 2)) / scale
    xyxy = np.clip(xyxy, 0, [width, height, width, height])
    return {
        "image_id": int(np.asarray(meta["image_id"]).reshape(())),
        "boxes": xyxy.astype(np.float32),
        "scores": picked["scores"].astype(np.float32),
        "labels": picked["classes"].astype(np.int32),
    }


# ONNX -----------------------------------------------------------------------------------------


def _onnx(export_graph, job, workdir):
    import onnxruntime

    options = job["options"]
    path = workdir / "model.onnx"
    functions = saved_model_lib.serving_functions(export_graph, "none", *_nms_args(options))
    progress(options, f"converting to ONNX (opset {options['opset']})")
    ops = onnx_lib.convert(
        functions["serving_default"], options["image_size"], path, options["opset"]
    )

    progress(options, "verifying in onnxruntime against the Keras model")
    session = onnx_lib.session(path)
    samples = job["samples"]
    batched = onnx_lib.run(session, samples)
    single = onnx_lib.run(session, samples[:1])
    ref_boxes, ref_scores = _references(job)
    figures = {
        "decoded": verify_lib.decoded_difference(
            batched["boxes"], batched["scores"], ref_boxes, ref_scores
        ),
        "batch_1_vs_batch_n_max_abs_diff": float(
            max(np.abs(single[k] - batched[k][:1]).max() for k in single)
        ),
        "onnxruntime": onnxruntime.__version__,
    }
    verify_lib.check(figures["decoded"], TOLERANCES["fp32"], "ONNX")
    verify_lib.check(
        {"batch_max_abs_diff": figures["batch_1_vs_batch_n_max_abs_diff"]},
        TOLERANCES["fp32"],
        "ONNX",
    )
    inputs = {
        i.name: {"shape": _onnx_shape(i.shape), "dtype": i.type} for i in session.get_inputs()
    }
    outputs = {
        o.name: {"shape": _onnx_shape(o.shape), "dtype": o.type} for o in session.get_outputs()
    }
    return _result(job, path, inputs=inputs, outputs=outputs, ops=ops, verification=figures)


def _onnx_shape(shape):
    return [d if isinstance(d, int) else -1 for d in shape]
