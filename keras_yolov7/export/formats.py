"""Build one export in a work folder and verify it (TensorFlow backend)."""

import pathlib

import numpy as np
import tensorflow as tf

from keras_yolov7.export import clients
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
from keras_yolov7.export.verify import MEDIAPIPE_BOX_TOLERANCE_PIXELS
from keras_yolov7.export.verify import THREADS_TOLERANCE
from keras_yolov7.export.verify import TOLERANCES


def build_and_verify(fixed, job, workdir):
    """Write the export described by `job` inside `workdir`, verify it, describe it.

    Returns:
        `ExportResult` whose path is the artifact inside `workdir`.
    """
    options = job["options"]
    # TFLite int8 pins ranges in the graph itself; ONNX int8 quantises the float graph.
    int8_graph = options["format"] == "tflite" and options["quantization"] == "int8"
    export_graph = graph_lib.ExportGraph(fixed, int8=int8_graph)
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


def _reference_detections(job, boxes, scores):
    settings = _nms_args(job["options"])
    return [verify_lib.reference_nms(b, s, *settings) for b, s in zip(boxes, scores)]


def detections(outputs, nms):
    """Per-image detections `{"boxes" (K, 4) xyxy normalised, "scores", "classes"}` from the
    padded outputs of an in-graph NMS layout (batched arrays)."""
    if nms == "android":
        outputs = dict(outputs, boxes=np.asarray(outputs["boxes"])[..., [1, 0, 3, 2]])
    return verify_lib.unpack_detections(outputs)


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
        found = verify_lib.unpack_detections({k: v.numpy() for k, v in outputs.items()})
        # The in-graph NMS compares unclipped boxes, which no signature returns: both figures
        # are taken against the Keras candidates.
        unclipped, _ = _references(job, clip=False)
        figures.update(_nms_figures(job, found, unclipped, ref_scores, unclipped, ref_scores))
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
    model = tflite_lib.convert(source, quantization, job["calibration_images"])
    ops = tflite_lib.check_builtin_ops(model)
    tflite_lib.check_static_shapes(model)
    model = tflite_lib.reorder_outputs(model, OUTPUT_ORDER[nms])
    metadata = ""
    if nms == "android":
        if options["metadata"]:
            model = metadata_lib.add_object_detector_metadata(model, options["class_names"])
            metadata = (
                f"written: {len(options['class_names'])} labels, RGB input 0..255 (mean 0, "
                "std 1), boxes ymin, xmin, ymax, xmax"
            )
        else:
            metadata = (
                "not written (metadata=False): MediaPipe's and the Task Library's ObjectDetector "
                "refuse this file"
            )
        progress(options, f"ObjectDetector metadata {metadata}")
    path = workdir / "model.tflite"
    path.write_bytes(model)

    progress(options, "verifying the TFLite model against the Keras model")
    runner = tflite_lib.interpreter(model, preserve_all_tensors=nms != "none")
    float_ops = tflite_lib.check_integer_network(runner) if quantization == "int8" else {}
    figures = _verify_tflite(runner, job)
    progress(options, f"running it with {', '.join(map(str, layout.VERIFIED_THREADS))} threads")
    figures["threads"] = _thread_consistency(model, job)
    if nms == "android" and options["metadata"]:
        figures["mediapipe"] = _mediapipe_figures(path, job)
    if quantization == "int8" and job["validation_data"] is not None:

        def candidates(images):
            found = [tflite_candidates(runner, image, nms)[1:] for image in images]
            return np.stack([f[0] for f in found]), np.stack([f[1] for f in found])

        figures["map"] = _quantized_map(candidates, export_graph, job, "TFLite int8")
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
        (with in-graph NMS: as the NMS sees them, `verify.nms_view`); scores `(N, C)` (with
        in-graph NMS: each candidate's best score at its class, zeros elsewhere).
    """
    detail = runner.get_input_details()[0]
    outputs = runner.get_signature_runner()(images=image[None].astype(detail["dtype"]))
    if nms == "none":
        return outputs, outputs["boxes"][0], outputs["scores"][0]
    ops = runner._get_ops_details()
    op = next(o for o in ops if o["op_name"] == layout.NMS_OP_NAMES[nms])
    first, second = (_dequantized(runner, int(i)) for i in op["inputs"][:2])
    # The best class of each candidate: the output of the graph's one ARG_MAX.
    best_class = next(o for o in ops if o["op_name"] == "ARG_MAX")
    classes = runner.get_tensor(int(best_class["outputs"][0])).astype(np.int64).reshape(-1)
    num_classes = int(runner.get_tensor_details()[int(best_class["inputs"][0])]["shape"][-1])
    boxes = (first - classes[:, None] * layout.CLASS_SHIFT) / layout.BOX_UNITS
    scores = np.zeros((len(second), num_classes), np.float64)
    scores[np.arange(len(second)), classes] = second
    return outputs, boxes, scores


def _dequantized(runner, index):
    detail = next(d for d in runner.get_tensor_details() if d["index"] == index)
    value = runner.get_tensor(index).astype(np.float64)
    scale, zero_point = detail["quantization"]
    return (value - zero_point) * scale if scale else value


def _verify_tflite(runner, job):
    options = job["options"]
    nms, quantization = options["nms"], options["quantization"]
    # A float graph's NMS compares unclipped boxes; an int8 graph's boxes are clipped.
    ref_boxes, ref_scores = _references(job, clip=nms == "none" or quantization == "int8")
    got = [tflite_candidates(runner, image, nms) for image in job["samples"]]
    boxes = np.stack([g[1] for g in got])
    scores = np.stack([g[2] for g in got])
    if nms != "none":
        # The NMS sees boxes rounded to 1 / BOX_UNITS and each candidate's best class only.
        # Compared as the best score per candidate: equal top scores make the class a tie.
        seen_boxes = verify_lib.nms_view(ref_boxes)
        decoded = verify_lib.decoded_difference(
            boxes, scores.max(-1), seen_boxes, ref_scores.max(-1)
        )
        decoded["class_agreement"] = float((scores.argmax(-1) == ref_scores.argmax(-1)).mean())
    else:
        decoded = verify_lib.decoded_difference(boxes, scores, ref_boxes, ref_scores)
    figures = {"decoded": decoded}
    if nms != "none":
        outputs = {k: np.concatenate([g[0][k] for g in got]) for k in got[0][0]}
        figures.update(
            _nms_figures(job, detections(outputs, nms), boxes, scores, ref_boxes, ref_scores)
        )
    what = f"TFLite {quantization}"
    if quantization in TOLERANCES:
        extra = 1.0 / layout.BOX_UNITS if nms != "none" else 0.0
        tolerance = TOLERANCES[quantization]
        verify_lib.check(
            {"boxes_max_abs_diff": decoded["boxes_max_abs_diff"]}, tolerance + extra, what
        )
        verify_lib.check({"scores_max_abs_diff": decoded["scores_max_abs_diff"]}, tolerance, what)
    if nms != "none":
        _check_nms_figures(figures, quantization, what)
    return figures


def _thread_consistency(model, job):
    """The model's outputs at every thread count of `layout.VERIFIED_THREADS` against 1 thread.

    A kernel whose result depends on the thread count fails the export (with 2 or more threads
    TFLite_Detection_PostProcess dropped whole classes while its inputs were identical).
    """
    nms = job["options"]["nms"]
    runs = {
        threads: clients.interpreter_outputs(model, job["samples"], threads)
        for threads in layout.VERIFIED_THREADS
    }
    first, *others = layout.VERIFIED_THREADS
    differing, worst = set(), 0.0
    for threads in others:
        for index, (expected, got) in enumerate(zip(runs[first], runs[threads])):
            if nms != "none" and not (
                np.array_equal(expected["count"], got["count"])
                and np.array_equal(expected["classes"], got["classes"])
            ):
                differing.add((threads, index))
                continue
            worst = max(worst, max(float(np.abs(expected[k] - got[k]).max()) for k in expected))
    figures = {
        "threads": list(layout.VERIFIED_THREADS),
        "detections_differing": len(differing),
        "max_abs_diff": worst,
    }
    if differing or worst > THREADS_TOLERANCE:
        runs_described = ", ".join(f"{t} threads on image {i}" for t, i in sorted(differing))
        raise verify_lib.ExportVerificationError(
            f"the TFLite model's outputs depend on the interpreter's thread count: "
            f"{runs_described or f'max abs diff {worst:.3g}'} differ from 1 thread "
            f"(tolerance {THREADS_TOLERANCE:g})"
        )
    return figures


def _mediapipe_figures(path, job):
    """MediaPipe's ObjectDetector on the samples against the LiteRT interpreter's detections.

    MediaPipe truncates box corners and sizes to integer pixels, so boxes agree within
    `MEDIAPIPE_BOX_TOLERANCE_PIXELS`; scores and classes agree exactly. Detections are matched
    whatever their order: runtimes may order equal scores differently.
    """
    error = clients.mediapipe_error()
    if error is not None:
        return {"checked": False, "reason": f"MediaPipe Tasks does not import ({error})"}
    options = job["options"]
    size = options["image_size"]
    expected = [
        detections(outputs, "android")[0]
        for outputs in clients.interpreter_outputs(path, job["samples"], 1)
    ]
    for found in expected:
        found["boxes"] = found["boxes"] * size
    got = clients.mediapipe_detections(path, list(job["samples"]))
    figures = verify_lib.same_detections(got, expected, MEDIAPIPE_BOX_TOLERANCE_PIXELS, 1e-6)
    figures["labels_seen"] = sorted({name for found in got for name in found["names"]})[:10]
    # int8 scores tie often and each runtime breaks ties in its own order, which can swap which
    # of two equal-score boxes takes the last of the max_detections places.
    if options["quantization"] == "int8":
        least = int(0.9 * figures["expected_detections"])
    else:
        least = figures["expected_detections"]
    unknown = set(figures["labels_seen"]) - set(options["class_names"])
    if (
        figures["matched"] < least
        or figures["got_detections"] != figures["expected_detections"]
        or unknown
    ):
        raise verify_lib.ExportVerificationError(
            "MediaPipe's ObjectDetector reads the exported file otherwise than the LiteRT "
            f"interpreter: {figures['got_detections']} detections for the interpreter's "
            f"{figures['expected_detections']}, {figures['matched']} of them the same class, "
            f"score and box (within {MEDIAPIPE_BOX_TOLERANCE_PIXELS:g} px); labels "
            f"{sorted(unknown) or 'as exported'}"
        )
    return figures


def _nms_figures(job, found, boxes, scores, ref_boxes, ref_scores):
    """NMS semantics (vs NumPy NMS on the export's own candidates) and agreement with Keras."""
    return {
        "nms": verify_lib.nms_consistency(found, _reference_detections(job, boxes, scores)),
        "detections": verify_lib.detection_agreement(
            found, _reference_detections(job, ref_boxes, ref_scores)
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


# int8 accuracy --------------------------------------------------------------------------------


def _quantized_map(candidates, export_graph, job, what):
    """mAP of a quantised model next to the float Keras model's on the validation data, and the
    gate: the export fails when mAP@0.5 drops by more than `max_map_drop` points.

    Both go through the same NumPy NMS at the official evaluation settings, so the difference
    is the quantisation's alone.

    Args:
        candidates: `fn(images (B, S, S, 3) uint8) -> (boxes (B, N, 4) xyxy normalised,
            scores (B, N, C))` of the quantised model.
    """
    import keras

    options = job["options"]
    dataset, batches = job["validation_data"]
    size = options["image_size"]
    model = export_graph.model
    quantized_detections, float_detections = [], []
    progress(options, f"{what}: mAP on the validation data next to the float model's")
    bar = keras.utils.Progbar(None, verbose=int(options["verbose"]), unit_name="batch")
    for images, targets in batches:
        images = np.asarray(images)
        raw = [np.asarray(r) for r in model(images, training=False)[: model.num_levels]]
        ref_boxes, ref_scores = verify_lib.reference_candidates(
            raw, options["anchors"], options["strides"], size, clip=False
        )
        boxes, scores = candidates(images)
        for b in range(len(images)):
            meta = {key: np.asarray(value)[b] for key, value in targets.items()}
            quantized_detections.append(_to_original(boxes[b], scores[b], meta, size))
            float_detections.append(_to_original(ref_boxes[b], ref_scores[b], meta, size))
        bar.add(1)
    figures = verify_lib.map_comparison(dataset, float_detections, quantized_detections)
    limit = options["max_map_drop"]
    figures["max_map_drop"] = limit
    if limit is not None and figures["mAP50_drop_points"] > limit:
        raise verify_lib.ExportVerificationError(
            f"{what}: mAP@0.5 {figures['int8_mAP50']:.4f} is "
            f"{figures['mAP50_drop_points']:.2f} points below the float model's "
            f"{figures['float_mAP50']:.4f} on {figures['images']} validation images (the limit "
            f"is max_map_drop={limit:g}); calibrate on more images of your data "
            "(num_calibration_images), or raise or disable the limit (max_map_drop=None)"
        )
    return figures


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
    int8 = options["quantization"] == "int8"
    path = workdir / "model.onnx"
    functions = saved_model_lib.serving_functions(export_graph, "none", *_nms_args(options))
    progress(options, f"converting to ONNX (opset {options['opset']})")
    float_path = workdir / "float.onnx" if int8 else path
    ops = onnx_lib.convert(
        functions["serving_default"], options["image_size"], float_path, options["opset"]
    )
    if int8:
        progress(options, "quantising to int8 (QDQ) with onnxruntime, calibrated on your images")
        ops = onnx_lib.quantize(float_path, path, job["calibration_images"], workdir)

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
    if not int8:  # int8: reported, and its accuracy measured as mAP (below)
        verify_lib.check(figures["decoded"], TOLERANCES["fp32"], "ONNX")
    verify_lib.check(
        {"batch_max_abs_diff": figures["batch_1_vs_batch_n_max_abs_diff"]},
        TOLERANCES["fp32"],
        "ONNX",
    )
    if int8 and job["validation_data"] is not None:

        def candidates(images):
            outputs = onnx_lib.run(session, images)
            return outputs["boxes"], outputs["scores"]

        figures["map"] = _quantized_map(candidates, export_graph, job, "ONNX int8")
    inputs = {
        i.name: {"shape": _onnx_shape(i.shape), "dtype": i.type} for i in session.get_inputs()
    }
    outputs = {
        o.name: {"shape": _onnx_shape(o.shape), "dtype": o.type} for o in session.get_outputs()
    }
    return _result(job, path, inputs=inputs, outputs=outputs, ops=ops, verification=figures)


def _onnx_shape(shape):
    return [d if isinstance(d, int) else -1 for d in shape]
