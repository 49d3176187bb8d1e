"""Export checks that run under every Keras backend: argument errors, the fused fixed-size model,
the NumPy verification helpers, and (JAX / PyTorch) the TensorFlow-subprocess export."""

import importlib

import keras
import numpy as np
import pytest
from fixtures.micro_network import micro_network

import keras_yolov7 as kyv7
from keras_yolov7.export import calibration
from keras_yolov7.export import verify

SIZE = 64


@pytest.fixture(scope="module")
def model():
    return kyv7.YOLOv7ObjectDetector(kyv7.YOLOv7Backbone(micro_network(640)), num_classes=2)


def test_fixed_size_model_is_fused_and_equal(model):
    fixed = kyv7.export.fixed_size_model(model, SIZE)
    assert fixed.fused and not model.fused
    assert fixed.image_size == (SIZE, SIZE)
    images = verify.synthetic_images(2, SIZE)
    for ours, theirs in zip(fixed(images), model(images)):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(theirs), atol=1e-4
        )
    assert kyv7.export.fixed_size_model(fixed, SIZE) is fixed


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"format": "coreml"}, ValueError, "unknown format 'coreml'"),
        ({"quantization": "int4"}, ValueError, "unknown quantization 'int4'"),
        (
            {"format": "onnx", "quantization": "fp16"},
            ValueError,
            r"quantization 'fp16' is not offered for onnx; expected one of \('fp32', 'int8'\)",
        ),
        (
            {"format": "saved_model", "quantization": "int8"},
            ValueError,
            "quantization 'int8' is not offered for saved_model",
        ),
        ({"max_map_drop": -1}, ValueError, "max_map_drop must be a number of mAP points >= 0"),
        ({"nms": "soft"}, ValueError, "unknown nms 'soft'"),
        ({"format": "onnx", "nms": "v5"}, ValueError, "ONNX exports the decoded candidates"),
        ({"format": "saved_model", "nms": "android"}, ValueError, "is a TFLite layout"),
        ({"image_size": 100}, ValueError, "image size 100 is not a positive multiple of the model.s largest stride 32; use e.g. 96"),
        ({"image_size": (64, 96)}, ValueError, "image size must be one int"),
        ({"class_names": ["a"]}, ValueError, "class_names has 1 names but the model has 2 classes"),
        ({"iou_threshold": 1.5}, ValueError, "iou_threshold must be in"),
        ({"max_detections": 0}, ValueError, "max_detections must be at least 1"),
        ({"quantization": "int8"}, ValueError, "int8 export needs representative_data"),
        (
            {"quantization": "int8", "representative_data": np.zeros((0, SIZE, SIZE, 3), "uint8")},
            ValueError,
            "yielded no images",
        ),
        (
            {"quantization": "int8", "representative_data": np.zeros((2, 32, 32, 3), "uint8")},
            ValueError,
            r"shape \(2, 32, 32, 3\); expected \(N, 64, 64, 3\)",
        ),
        (
            {"quantization": "int8", "representative_data": np.full((2, SIZE, SIZE, 3), 0.5)},
            ValueError,
            "looks normalised",
        ),
        ({"quantization": "int8", "representative_data": 3}, TypeError, "got int"),
        ({"validation_data": ([], [])}, ValueError, "validation_data is used by int8 exports only"),
    ],
)
def test_bad_arguments(model, tmp_path, kwargs, error, message):
    kwargs = {"image_size": SIZE, "verbose": False, **kwargs}
    path = tmp_path / "model.tflite"
    with pytest.raises(error, match=message):
        kyv7.export.export(model, path, **kwargs)
    assert not path.exists()


def test_unwritable_or_wrong_kind_of_path(model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="cannot create the output folder"):
        kyv7.export.export(model, blocker / "sub" / "model.tflite", image_size=SIZE)
    (tmp_path / "folder.tflite").mkdir()
    with pytest.raises(ValueError, match="is a directory; a tflite export needs a file path"):
        kyv7.export.export(model, tmp_path / "folder.tflite", image_size=SIZE)
    with pytest.raises(ValueError, match="is a file; a SavedModel export needs a directory"):
        kyv7.export.export(model, blocker, format="saved_model", image_size=SIZE)
    with pytest.raises(TypeError, match="model must be a YOLOv7ObjectDetector"):
        kyv7.export.export(object(), tmp_path / "m.tflite")


def test_collect_images_forms():
    images = verify.synthetic_images(5, 32)
    assert calibration.collect_images(images, 32, 3).shape == (3, 32, 32, 3)
    pairs = [(images[:2], {"labels": None}), (images[2:], {"labels": None})]
    np.testing.assert_array_equal(calibration.collect_images(pairs, 32, 10), images)
    np.testing.assert_array_equal(
        calibration.collect_images(lambda: iter(pairs), 32, 4), images[:4]
    )
    single = calibration.collect_images([img for img in images.astype("float32")], 32, 10)
    assert single.dtype == np.uint8 and single.shape == (5, 32, 32, 3)


def test_reference_nms_is_class_aware():
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.5, 0.52], [0.6, 0.6, 0.9, 0.9]])
    scores = np.array([[0.9, 0.0], [0.0, 0.8], [0.7, 0.1]])
    kept = verify.reference_nms(boxes, scores, 10, 0.45, 0.25)
    # boxes 0 and 1 overlap but have different classes: both stay.
    np.testing.assert_array_equal(kept["classes"], [0, 1, 0])
    np.testing.assert_allclose(kept["scores"], [0.9, 0.8, 0.7])
    scores[1] = [0.8, 0.0]
    kept = verify.reference_nms(boxes, scores, 10, 0.45, 0.25)
    np.testing.assert_allclose(kept["scores"], [0.9, 0.7])
    assert len(verify.reference_nms(boxes, scores, 1, 0.45, 0.25)["scores"]) == 1
    # A box scoring for two classes is one detection, of its best class (as predict()).
    both = np.array([[0.9, 0.6], [0.0, 0.0], [0.0, 0.0]])
    kept = verify.reference_nms(boxes, both, 10, 0.45, 0.25)
    np.testing.assert_array_equal(kept["classes"], [0])


def test_reference_nms_compares_boxes_before_clipping():
    """A box crossing the right border and one inside it: IoU 0.4 unclipped, 1 clipped to the
    image. The NMS compares them unclipped (as predict()) and returns them clipped."""
    boxes = np.array([[0.7, 0.1, 1.45, 0.5], [0.7, 0.1, 1.0, 0.5]])
    scores = np.array([[0.9], [0.8]])
    kept = verify.reference_nms(boxes, scores, 10, 0.45, 0.25)
    np.testing.assert_allclose(kept["scores"], [0.9, 0.8])
    assert kept["boxes"].max() == 1.0
    assert len(verify.reference_nms(np.clip(boxes, 0, 1), scores, 10, 0.45, 0.25)["scores"]) == 1


def test_missing_mediapipe_fails_an_android_export_with_metadata(model, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec

    def without_mediapipe(name, *args):
        return None if name == "mediapipe" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_mediapipe)
    with pytest.raises(ImportError, match=r"pip install keras-yolov7\[export\].*metadata=False"):
        kyv7.export.export(model, tmp_path / "m.tflite", nms="android", image_size=SIZE)


def test_detection_agreement_and_nms_consistency():
    ref = {
        "boxes": np.array([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]),
        "scores": np.array([0.9, 0.5]),
        "classes": np.array([0, 1]),
    }
    got = {
        "boxes": np.array([[0.11, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]),
        "scores": np.array([0.88, 0.5]),
        "classes": np.array([0, 0]),
    }
    figures = verify.detection_agreement([got], [ref])
    assert figures["recall"] == 0.5 and figures["precision"] == 0.5
    assert figures["boxes_max_abs_diff"] == pytest.approx(0.01)
    assert figures["scores_max_abs_diff"] == pytest.approx(0.02)
    consistency = verify.nms_consistency([got, got], [ref, {k: v[:1] for k, v in ref.items()}])
    assert consistency["count_mismatches"] == 1
    assert consistency["sorted_scores_max_abs_diff"] == pytest.approx(0.02)


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="the TensorFlow backend exports in-process (test_export.py)",
)
def test_export_through_tensorflow_subprocess(model, tmp_path):
    path = tmp_path / "model.tflite"
    result = kyv7.export.export(model, path, image_size=SIZE, verbose=False)
    assert path.stat().st_size == result.file_size
    # The reference came from this backend; the TFLite model from TensorFlow: same numbers.
    assert result.verification["decoded"]["boxes_max_abs_diff"] < 1e-4
    assert result.verification["decoded"]["scores_max_abs_diff"] < 1e-4


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="the TensorFlow backend exports in-process",
)
def test_subprocess_errors_are_raised_here(model, tmp_path):
    export_lib = importlib.import_module(
        "keras_yolov7.export.export"
    )  # the module, not the function

    job = {
        "target": str(tmp_path / "model.tflite"),
        "options": {"format": "tflite", "quantization": "int8", "verbose": False},
        "calibration_images": None,
        "samples": verify.synthetic_images(1, SIZE),
        "reference_raw": None,
        "validation_data": None,
    }
    fixed = kyv7.export.fixed_size_model(model, SIZE)
    with pytest.raises(RuntimeError, match="KeyError"):
        export_lib._export_in_subprocess(fixed, job)
    assert not (tmp_path / "model.tflite").exists()
