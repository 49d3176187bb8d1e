"""The export entry point: `keras_yolov7.export.export(model, path, format=..., ...)`.

Every export is built from the fused model with a static input, written to a temporary path
next to the target, loaded back and verified against the Keras model, and only then moved into
place: a failed conversion or verification never leaves a file that looks valid.

The conversion itself is TensorFlow code. Under KERAS_BACKEND=jax or torch the model's weights
are handed to a TensorFlow-backend subprocess that runs the same export; the reference outputs
the export is verified against are still computed by the caller's backend.
"""

import dataclasses
import importlib.util
import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_yolov7.export import calibration
from keras_yolov7.export import verify as verify_lib
from keras_yolov7.export.layout import DEFAULT_MAX_MAP_DROP
from keras_yolov7.export.layout import FORMAT_QUANTIZATIONS
from keras_yolov7.export.layout import FORMATS
from keras_yolov7.export.layout import MAX_CLASSES
from keras_yolov7.export.layout import NMS_CHOICES
from keras_yolov7.export.layout import QUANTIZATIONS
from keras_yolov7.models import YOLOv7Backbone
from keras_yolov7.models import YOLOv7ObjectDetector
from keras_yolov7.models.yolov7_image_converter import square_input_size

DEFAULT_NMS = {"saved_model": "v5", "tflite": "none", "onnx": "none"}

SUFFIXES = {".tflite": "tflite", ".onnx": "onnx"}

NUM_SAMPLE_IMAGES = 4


@dataclasses.dataclass
class ExportResult:
    """What an export wrote and how it verified.

    Attributes:
        path: the exported file (TFLite, ONNX) or directory (SavedModel).
        format, quantization, nms: the export's settings ("fp32" for SavedModel).
        image_size: the static square input size in pixels.
        num_classes: number of classes.
        file_size: bytes on disk (a SavedModel directory counted in full).
        inputs, outputs: `{name: {"shape": [...], "dtype": str}}` in the model's order
            (batch shown as -1 when dynamic).
        ops: `{op name: count}` of the exported graph (TFLite: custom ops as "custom:NAME").
        float_ops: int8 TFLite only: ops computing in float (post-processing only).
        verification: the measured figures (see `keras_yolov7.export.verify`).
        metadata: ObjectDetector metadata status (TFLite "android" layout), else "".
    """

    path: str
    format: str
    quantization: str
    nms: str
    image_size: int
    num_classes: int
    file_size: int
    inputs: dict
    outputs: dict
    ops: dict
    verification: dict
    float_ops: dict = dataclasses.field(default_factory=dict)
    metadata: str = ""

    def to_dict(self):
        return dataclasses.asdict(self)

    def summary(self):
        """The report `export` prints: file, settings, tensors, ops, verification, metadata."""
        lines = [
            f"exported {self.path}: {self.format}, {self.quantization}, nms {self.nms}, "
            f"{self.image_size}x{self.image_size}, {self.num_classes} classes, "
            f"{self.file_size / 1e6:.1f} MB"
        ]
        for kind, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            described = ", ".join(
                f"{name} {spec['dtype']} {tuple(spec['shape'])}" for name, spec in tensors.items()
            )
            lines.append(f"  {kind}: {described}")
        if self.ops:
            ops = sorted(self.ops.items(), key=lambda item: (-item[1], item[0]))
            lines.append(
                f"  ops ({sum(self.ops.values())}): " + ", ".join(f"{op} {n}" for op, n in ops)
            )
        if self.float_ops:
            lines.append(
                "  float ops: " + ", ".join(f"{op} {n}" for op, n in sorted(self.float_ops.items()))
            )
        lines.append("  verification:")
        lines += _figure_lines(self.verification, "    ")
        if self.metadata:
            lines.append(f"  metadata: {self.metadata}")
        return "\n".join(lines)


def _figure_lines(values, indent):
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines += _figure_lines(value, indent + "  ")
        elif isinstance(value, float):
            lines.append(f"{indent}{key}: {value:.4g}")
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


def export(
    model,
    path,
    format=None,
    *,
    image_size=None,
    quantization="fp32",
    nms=None,
    representative_data=None,
    num_calibration_images=200,
    sample_images=None,
    validation_data=None,
    max_map_drop=DEFAULT_MAX_MAP_DROP,
    class_names=None,
    metadata=True,
    max_detections=100,
    score_threshold=0.25,
    iou_threshold=0.45,
    opset=13,
    verbose=True,
):
    """Export a YOLOv7ObjectDetector to SavedModel, TFLite or ONNX and verify the result.

    The exported graph is always the fused model (a model that is not fused is fused first)
    with a static square input. Inputs are RGB images, pixel values 0..255, letterboxed to
    `image_size` (pad value 114, as the validation pipeline). Boxes are normalised to [0, 1] of
    that input and clipped to it: xyxy, except the "android" layout which is ymin, xmin, ymax,
    xmax.

    - saved_model: input uint8 `(batch, S, S, 3)`, batch dynamic. nms "v4" / "v5" (default
      v5): signature "serving_default" gives boxes `(batch, K, 4)`, classes `(batch, K)` int32
      (-1 padding), scores `(batch, K)`, count `(batch,)`, and "decoded" the candidates; nms
      "none": "serving_default" gives the candidates, boxes `(batch, N, 4)` and scores
      `(batch, N, C)`.
    - tflite: input `(1, S, S, 3)`, float32 pixels 0..255 (fp32, fp16) or uint8 (int8, scale 1,
      zero point 0). nms "none" (default): boxes `(1, N, 4)`, scores `(1, N, C)`; "v4" / "v5":
      boxes, classes, scores, count padded to K = max_detections, NMS by the builtin
      NON_MAX_SUPPRESSION_V4 / _V5 op; "android": the v5 NMS in the layout MediaPipe's
      ObjectDetector reads, boxes `(1, K, 4)` ymin, xmin, ymax, xmax, classes `(1, K)` float32,
      scores `(1, K)`, count `(1,)` float32, with ObjectDetector metadata (labels, input
      normalisation, box layout).
    - onnx: input uint8 `(batch, S, S, 3)`; boxes `(batch, N, 4)`, scores `(batch, N, C)`; the
      first axis of all three is the dynamic axis "batch". int8: QDQ (ONNX Runtime static
      quantisation), float32 inputs and outputs unchanged.
    N is the number of candidates (25200 at 640 for the P5 models). In-graph NMS has the
    semantics of `predict()`: each candidate keeps its best class, a box is suppressed only by a
    higher-scoring box of the same class, the `max_detections` best are kept.

    Args:
        model: a `YOLOv7ObjectDetector` (any backend) or a path to a `.keras` file of one.
        path: output file (.tflite, .onnx) or directory (SavedModel). Missing parent folders
            are created; an existing target is replaced only after the new export verified.
        format: "saved_model", "tflite" or "onnx"; None infers it from the suffix of `path`
            (.tflite, .onnx, anything else a SavedModel).
        image_size: square input size (a multiple of the largest stride); default the model's
            fixed size, else the preset's training size (640, or 1280 for P6 models).
        quantization: "fp32"; TFLite also "fp16" and "int8" (full-integer, uint8 input); ONNX
            also "int8" (QDQ).
        nms: "none", "v4", "v5" or "android" (TFLite only); default per format (above).
        representative_data: int8 only: calibration images `(N, S, S, 3)` uint8 letterboxed to
            `image_size`, an iterable of such batches or of `(images, targets)` pairs (the
            validation pipeline's dataset), or a callable returning one.
        num_calibration_images: the most representative images used.
        sample_images: images the export is verified on (same forms as representative_data);
            default the first 4 representative images, else synthetic images.
        validation_data: int8 only, optional: `(dataset, batches)` where dataset is the
            `DetectionDataset` and batches the validation pipeline's `(images, targets)`
            batches; the int8 model's mAP is then measured next to the float model's and gated
            by `max_map_drop`. Without it the int8 accuracy is not measured (said in the report).
        max_map_drop: int8 with validation_data: the export fails when mAP@0.5 is more than this
            many points below the float model's; None reports the figures without a limit.
        class_names: labels for the ObjectDetector metadata; default the model's
            `class_names`, else "0", "1", ...
        metadata: "android" layout: write the ObjectDetector metadata (needs mediapipe, the
            `export` extra). False writes the file without it, which MediaPipe's and the Task
            Library's ObjectDetector refuse, and says so in `ExportResult.metadata`.
        max_detections: K, detections kept by in-graph NMS.
        score_threshold, iou_threshold: in-graph NMS thresholds.
        opset: ONNX opset (at least 13).
        verbose: print progress and, at the end, the report (`ExportResult.summary()`).

    Returns:
        `ExportResult`.

    Raises:
        ValueError / TypeError: a bad argument (named with what was expected).
        ImportError: an "android" export with metadata and no mediapipe installed.
        PermissionError: the output location cannot be written.
        keras_yolov7.export.NonBuiltinOpError: the TFLite graph needs ops outside the builtin
            set.
        keras_yolov7.export.ExportVerificationError: the exported model disagrees with the Keras
            model beyond tolerance, depends on the interpreter's thread count, is read otherwise
            by MediaPipe's ObjectDetector, or (int8) loses more than `max_map_drop` mAP points.
    """
    model = _load_model(model)
    options = _resolve_options(
        model,
        path=path,
        format=format,
        image_size=image_size,
        quantization=quantization,
        nms=nms,
        class_names=class_names,
        metadata=metadata,
        max_map_drop=max_map_drop,
        max_detections=max_detections,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        opset=opset,
        num_calibration_images=num_calibration_images,
        verbose=verbose,
    )
    target = _prepare_target(path, options["format"])
    size = options["image_size"]
    calibration_images = None
    if options["quantization"] == "int8":
        if representative_data is None:
            raise ValueError(
                "int8 export needs representative_data: images (N, "
                f"{size}, {size}, 3) letterboxed from your dataset (the validation pipeline)"
            )
        calibration_images = calibration.collect_images(
            representative_data, size, options["num_calibration_images"]
        )
    if sample_images is not None:
        samples = calibration.collect_images(sample_images, size, 16, "sample_images")
    elif calibration_images is not None:
        samples = calibration_images[:NUM_SAMPLE_IMAGES]
    else:
        samples = verify_lib.synthetic_images(NUM_SAMPLE_IMAGES, size)
    if validation_data is not None and options["quantization"] != "int8":
        raise ValueError("validation_data is used by int8 exports only (the mAP comparison)")

    progress(options, f"preparing the fused {size}x{size} model")
    fixed = fixed_size_model(model, size)
    reference_raw = [
        keras.ops.convert_to_numpy(r) for r in fixed(samples, training=False)[: fixed.num_levels]
    ]
    job = {
        "target": str(target),
        "options": options,
        "calibration_images": calibration_images,
        "samples": samples,
        "reference_raw": reference_raw,
        "validation_data": validation_data,
    }
    if keras.backend.backend() == "tensorflow":
        result = export_tensorflow(fixed, job)
    else:
        result = _export_in_subprocess(fixed, job)
    if options["quantization"] == "int8" and "map" not in result.verification:
        result.verification["map"] = (
            "not measured: pass validation_data (the CLI's --data) to compare the int8 mAP with "
            "the float model's and gate it by max_map_drop"
        )
    if verbose:
        print(result.summary(), flush=True)
    return result


def fixed_size_model(model, image_size):
    """The fused form of `model` with a static `(image_size, image_size)` input.

    Args:
        model: a `YOLOv7ObjectDetector`, fused or not.
        image_size: square input size in pixels.

    Returns:
        A fused `YOLOv7ObjectDetector` with input `(batch, image_size, image_size, 3)` and the same
        weights (the model itself when it already is that).
    """
    fused = model if model.fused else model.get_fused()
    if tuple(fused.backbone.image_shape[:2]) == (image_size, image_size):
        return fused
    backbone_config = fused.backbone.get_config()
    backbone_config.update(image_shape=(image_size, image_size, 3))
    config = fused.get_config()
    config.update(
        backbone=YOLOv7Backbone.from_config(backbone_config),
        name=f"{fused.name}_{image_size}",
        compile=False,
    )
    fixed = YOLOv7ObjectDetector.from_config(config)
    fixed.set_weights(fused.get_weights())
    if fixed.preprocessor is not None:
        fixed.preprocessor.image_size = (image_size, image_size)
    return fixed


def _load_model(model):
    if isinstance(model, (str, os.PathLike)):
        model = keras.saving.load_model(model)
    if not isinstance(model, YOLOv7ObjectDetector):
        raise TypeError(
            f"model must be a YOLOv7ObjectDetector or a .keras path, got {type(model).__name__}"
        )
    return model


def _resolve_options(model, path, format, **options):
    if format is None:
        format = SUFFIXES.get(pathlib.Path(str(path)).suffix.lower(), "saved_model")
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {FORMATS}")
    quantization = options["quantization"] or "fp32"
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; expected one of {QUANTIZATIONS}")
    if quantization not in FORMAT_QUANTIZATIONS[format]:
        raise ValueError(
            f"quantization {quantization!r} is not offered for {format}; expected one of "
            f"{FORMAT_QUANTIZATIONS[format]}"
        )
    nms = options["nms"] or DEFAULT_NMS[format]
    if nms not in NMS_CHOICES:
        raise ValueError(f"unknown nms {nms!r}; expected one of {NMS_CHOICES}")
    if format == "onnx" and nms != "none":
        raise ValueError(
            f"ONNX exports the decoded candidates (nms 'none'), got nms {nms!r}; run NMS in "
            "your onnxruntime code or export a SavedModel / TFLite with NMS"
        )
    if format == "saved_model" and nms == "android":
        raise ValueError("nms 'android' (MediaPipe's ObjectDetector layout) is a TFLite layout")
    if nms != "none" and model.num_classes > MAX_CLASSES:
        raise ValueError(
            f"in-graph NMS ({nms}) supports at most {MAX_CLASSES} classes, the model has "
            f"{model.num_classes}; export with nms 'none'"
        )
    options.update(
        format=format,
        quantization=quantization,
        nms=nms,
        image_size=square_input_size(model, options["image_size"]),
        num_classes=model.num_classes,
        anchors=np.asarray(model.anchors),
        strides=tuple(model.strides),
    )
    names = options["class_names"]
    if names is None:
        names = model.class_names or [str(i) for i in range(model.num_classes)]
    names = [str(name) for name in names]
    if len(names) != model.num_classes:
        raise ValueError(
            f"class_names has {len(names)} names but the model has {model.num_classes} classes"
        )
    options["class_names"] = names
    if int(options["max_detections"]) < 1:
        raise ValueError(f"max_detections must be at least 1, got {options['max_detections']}")
    for name in ("score_threshold", "iou_threshold"):
        if not 0.0 <= float(options[name]) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {options[name]}")
    limit = options["max_map_drop"]
    if limit is not None and not (isinstance(limit, (int, float)) and limit >= 0):
        raise ValueError(f"max_map_drop must be a number of mAP points >= 0 or None, got {limit!r}")
    options["metadata"] = bool(options["metadata"])
    if nms == "android" and options["metadata"] and importlib.util.find_spec("mediapipe") is None:
        raise ImportError(
            "the 'android' layout writes ObjectDetector metadata with mediapipe, which is not "
            "installed: `pip install keras-yolov7[export]` (or mediapipe), or pass "
            "metadata=False (--no-metadata) for a file MediaPipe's ObjectDetector will not load"
        )
    if int(options["num_calibration_images"]) < 1:
        raise ValueError(
            f"num_calibration_images must be at least 1, got {options['num_calibration_images']}"
        )
    return options


def _prepare_target(path, format):
    target = pathlib.Path(path).expanduser().absolute()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"cannot create the output folder {target.parent}: {error}") from None
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write to the output folder {target.parent}")
    if target.exists():
        if format == "saved_model" and not target.is_dir():
            raise ValueError(f"{target} is a file; a SavedModel export needs a directory path")
        if format != "saved_model" and target.is_dir():
            raise ValueError(f"{target} is a directory; a {format} export needs a file path")
    return target


def progress(options, message):
    """Print one progress line when the export is verbose."""
    if options["verbose"]:
        print(f"[export {options['format']}] {message}", flush=True)


def export_tensorflow(fixed, job):
    """Run an export on the TensorFlow backend (the body of `export`, also run by the worker).

    Args:
        fixed: the fused fixed-size `YOLOv7ObjectDetector` (TensorFlow backend).
        job: dict built by `export`: target, options, calibration and sample images, the
            reference raw outputs on the samples, validation data.
    """
    from keras_yolov7.export import formats

    options = job["options"]
    target = pathlib.Path(job["target"])
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        result = formats.build_and_verify(fixed, job, workdir)
        artifact = pathlib.Path(result.path)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(artifact, target)
        result.path = str(target)
        progress(options, f"wrote {target} ({result.file_size / 1e6:.1f} MB), verified")
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


_RERAISED = {
    cls.__name__: cls
    for cls in (ValueError, TypeError, RuntimeError, PermissionError, OSError, ImportError)
}


def _export_in_subprocess(fixed, job):
    errors = dict(_RERAISED)
    errors["NonBuiltinOpError"] = verify_lib.NonBuiltinOpError
    errors["ExportVerificationError"] = verify_lib.ExportVerificationError
    progress(
        job["options"], f"{keras.backend.backend()} backend: exporting in a TensorFlow subprocess"
    )
    validation = job["validation_data"]
    if validation is not None:
        dataset, batches = validation
        job["validation_data"] = (dataset, [_to_numpy(batch) for batch in batches])
    with tempfile.TemporaryDirectory(prefix="kyv7-export-") as folder:
        folder = pathlib.Path(folder)
        fixed.save_weights(folder / "model.weights.h5")
        # Plain JSON data: Keras wraps dict attributes (a custom architecture) in trackers that
        # do not pickle.
        job["config"] = json.loads(json.dumps(fixed.get_config()))
        # Pickle between this process and its own child, through a TemporaryDirectory only this
        # user can read (mode 0700) that is created and removed here: never a file from outside.
        with open(folder / "job.pkl", "wb") as file:
            pickle.dump(job, file)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        root = str(pathlib.Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        process = subprocess.run(
            [sys.executable, "-m", "keras_yolov7.export.worker", str(folder)], env=env
        )
        outcome_path = folder / "outcome.pkl"
        if not outcome_path.exists():
            raise RuntimeError(
                f"the TensorFlow export subprocess exited with code {process.returncode} "
                "without a result (see its output above)"
            )
        with open(outcome_path, "rb") as file:
            outcome = pickle.load(file)
    if "error" in outcome:
        name, message = outcome["error"]
        raise errors.get(name, RuntimeError)(message if name in errors else f"{name}: {message}")
    return outcome["result"]


def _to_numpy(batch):
    images, targets = batch
    return np.asarray(images), {key: np.asarray(value) for key, value in targets.items()}
