"""Exports (TensorFlow backend): every format and NMS layout, checked independently of the
export's own verification by running the files and comparing with the Keras model here."""

import json

import keras
import numpy as np
import pytest

import keras_yolov7 as kyv7
from keras_yolov7.export import verify
from fixtures.micro_network import micro_network

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="TensorFlow-backend exports; other backends run the subprocess path in "
    "test_export_backends.py",
)

SIZE = 64
CLASSES = 3
# A three-level network small enough to convert in seconds, with the blocks that matter for
# export: 3x3 stride-2 convs (explicit padding), LeakyReLU, nearest upsampling and concat.
MICRO = micro_network(640)
CANDIDATES = 3 * (8 * 8 + 4 * 4 + 2 * 2)


def responsive(model):
    """A freshly initialised detector whose scores spread over [0, 1] (the prior biases of a new
    model keep every score near 0.001, so NMS would keep nothing)."""
    for weight in model.get_layer("lead_head").weights:
        value = keras.ops.convert_to_numpy(weight)
        if "conv" in weight.path and "kernel" in weight.path:
            weight.assign(value * 10.0)
        elif "conv" in weight.path and "bias" in weight.path:
            weight.assign(np.zeros_like(value))
    return model


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return responsive(kyv7.YOLOv7ObjectDetector(kyv7.YOLOv7Backbone(MICRO), num_classes=CLASSES))


@pytest.fixture(scope="module")
def images():
    return verify.synthetic_images(3, SIZE, seed=7)


def keras_candidates(model, images, clip=True):
    """Boxes (B, N, 4) xyxy normalised and scores (B, N, C), computed here from Keras."""
    raw = [keras.ops.convert_to_numpy(r) for r in model(images)]
    decoded = keras.ops.convert_to_numpy(
        kyv7.ops.decode_predictions(raw, model.anchors, model.strides)
    )
    xy, wh = decoded[..., :2], decoded[..., 2:4]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], -1) / SIZE
    return (np.clip(boxes, 0, 1) if clip else boxes), decoded[..., 5:] * decoded[..., 4:5]


def run_tflite(path, image):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path))
    runner.allocate_tensors()
    detail = runner.get_input_details()[0]
    runner.set_tensor(detail["index"], image[None].astype(detail["dtype"]))
    runner.invoke()
    return runner, [runner.get_tensor(d["index"]) for d in runner.get_output_details()]


def check_padded_detections(boxes, classes, scores, count, threshold):
    """Detections are valid boxes, sorted, above threshold; padding rows are empty."""
    n = int(np.asarray(count).reshape(()))
    assert 0 < n <= len(scores)
    assert np.all(np.diff(scores[:n]) <= 1e-6)
    assert np.all(scores[:n] > threshold - 1e-6)
    assert np.all((boxes[:n] >= -1e-6) & (boxes[:n] <= 1 + 1e-6))
    assert np.all(boxes[:n, 2:] >= boxes[:n, :2])
    assert set(np.asarray(classes[:n]).astype(int)) <= set(range(CLASSES))
    assert np.all(scores[n:] == 0)


def test_tflite_fp32_matches_keras(model, images, tmp_path):
    path = tmp_path / "model.tflite"
    result = kyv7.export.export(model, path, image_size=SIZE, sample_images=images, verbose=False)
    assert result.path == str(path) and path.stat().st_size == result.file_size
    assert (result.format, result.quantization, result.nms) == ("tflite", "fp32", "none")
    assert list(result.outputs) == ["boxes", "scores"]
    assert result.outputs["boxes"]["shape"] == [1, CANDIDATES, 4]
    assert result.outputs["scores"]["shape"] == [1, CANDIDATES, CLASSES]
    assert not any(name.startswith("custom:") for name in result.ops)
    # Nearest upsampling leaves as concat + reshape: TILE would split the XNNPACK / NPU graph.
    assert "TILE" not in result.ops and "RESIZE_NEAREST_NEIGHBOR" not in result.ops
    assert result.verification["decoded"]["boxes_max_abs_diff"] < 1e-4
    ref_boxes, ref_scores = keras_candidates(model, images)
    for image, boxes, scores in zip(images, ref_boxes, ref_scores):
        runner, (out_boxes, out_scores) = run_tflite(path, image)
        assert runner.get_input_details()[0]["dtype"] == np.float32
        np.testing.assert_allclose(out_boxes[0], boxes, atol=1e-5)
        np.testing.assert_allclose(out_scores[0], scores, atol=1e-5)


@pytest.mark.parametrize("quantization, nms", [("fp32", "v4"), ("fp16", "v5")])
def test_tflite_in_graph_nms(model, images, tmp_path, quantization, nms):
    path = tmp_path / f"{nms}.tflite"
    result = kyv7.export.export(
        model,
        path,
        image_size=SIZE,
        quantization=quantization,
        nms=nms,
        max_detections=20,
        sample_images=images,
        verbose=False,
    )
    assert f"NON_MAX_SUPPRESSION_{nms.upper()}" in result.ops
    assert list(result.outputs) == ["boxes", "classes", "scores", "count"]
    assert [result.outputs[k]["shape"] for k in result.outputs] == [
        [1, 20, 4],
        [1, 20],
        [1, 20],
        [1],
    ]
    figures = result.verification
    assert figures["nms"]["count_mismatches"] == 0
    assert figures["detections"]["exported_detections"] > 0
    ref_boxes, ref_scores = keras_candidates(model, images)
    for image, boxes, scores in zip(images, ref_boxes, ref_scores):
        _, (out_boxes, out_classes, out_scores, count) = run_tflite(path, image)
        check_padded_detections(out_boxes[0], out_classes[0], out_scores[0], count, 0.25)
        # The best detection is the best candidate of the Keras model.
        best = np.unravel_index(np.argmax(scores), scores.shape)
        np.testing.assert_allclose(out_scores[0, 0], scores[best], atol=2e-3)
        assert out_classes[0, 0] == best[1]
        np.testing.assert_allclose(out_boxes[0, 0], boxes[best[0]], atol=2e-3)


def test_tflite_int8(model, images, tmp_path):
    path = tmp_path / "int8.tflite"
    representative = verify.synthetic_images(8, SIZE, seed=3)
    result = kyv7.export.export(
        model,
        path,
        image_size=SIZE,
        quantization="int8",
        nms="v4",
        representative_data=lambda: iter([(representative, {"labels": None})]),
        sample_images=images,
        verbose=False,
    )
    # uint8 input with scale 1 / zero point 0: the app feeds raw RGB bytes.
    (input_detail,) = result.inputs.values()
    assert input_detail["dtype"] == "uint8"
    assert input_detail["quantization"] == {"scale": 1.0, "zero_point": 0}
    assert set(result.float_ops) <= {"NON_MAX_SUPPRESSION_V4", "ROUND", "CAST", "QUANTIZE"}
    assert result.verification["nms"]["count_mismatches"] == 0
    assert result.verification["decoded"]["scores_max_abs_diff"] < 0.1
    runner, outputs = run_tflite(path, images[0])
    tensors = {d["index"]: d for d in runner.get_tensor_details()}
    convs = [op for op in runner._get_ops_details() if op["op_name"] == "CONV_2D"]
    assert convs and all(tensors[int(op["inputs"][0])]["dtype"] == np.int8 for op in convs)
    check_padded_detections(outputs[0][0], outputs[1][0], outputs[2][0], outputs[3], 0.25)


@pytest.mark.parametrize("quantization", ["fp32", "int8"])
def test_tflite_android_layout(model, images, tmp_path, quantization):
    from keras_yolov7.export.metadata import read_object_detector_metadata

    path = tmp_path / f"android_{quantization}.tflite"
    result = kyv7.export.export(
        model,
        path,
        image_size=SIZE,
        quantization=quantization,
        nms="android",
        max_detections=10,
        class_names=["cat", "dog", "bird"],
        representative_data=verify.synthetic_images(8, SIZE, seed=3),
        sample_images=images,
        verbose=False,
    )
    # Builtin ops only: the class-aware V5 NMS, not TFLite_Detection_PostProcess.
    assert not any(name.startswith("custom:") for name in result.ops)
    assert "NON_MAX_SUPPRESSION_V5" in result.ops
    # The ObjectDetector reads four float32 outputs by position.
    runner, (boxes, classes, scores, count) = run_tflite(path, images[0])
    details = runner.get_output_details()
    assert [tuple(d["shape"]) for d in details] == [(1, 10, 4), (1, 10), (1, 10), (1,)]
    assert all(d["dtype"] == np.float32 for d in details)
    n = int(count[0])
    assert 0 < n <= 10 and np.all(np.diff(scores[0][:n]) <= 1e-6)
    assert np.all((boxes[0][:n] >= 0) & (boxes[0][:n] <= 1))  # clipped to the image
    # predict()'s semantics: one class per box, so no box is repeated.
    assert len({tuple(b) for b in boxes[0][:n].round(6)}) == n
    figures = result.verification
    assert figures["nms"]["count_mismatches"] == 0
    assert figures["threads"]["detections_differing"] == 0
    assert figures["mediapipe"]["matched"] == figures["mediapipe"]["expected_detections"] > 0
    assert result.metadata.startswith("written: 3 labels")
    described = read_object_detector_metadata(path.read_bytes())
    assert described["labels"] == ["cat", "dog", "bird"]
    assert described["box_order"] == [1, 0, 3, 2]
    if quantization == "fp32":
        assert figures["decoded"]["boxes_max_abs_diff"] < 1e-3
        ref_boxes, ref_scores = keras_candidates(model, images[:1])
        best = np.unravel_index(np.argmax(ref_scores[0]), ref_scores[0].shape)
        np.testing.assert_allclose(scores[0, 0], ref_scores[0][best], atol=1e-4)
        assert classes[0, 0] == best[1]
        np.testing.assert_allclose(boxes[0, 0], ref_boxes[0, best[0]][[1, 0, 3, 2]], atol=1e-3)
    else:
        assert set(result.float_ops) <= {"NON_MAX_SUPPRESSION_V5", "ROUND", "CAST", "QUANTIZE"}


def test_android_layout_without_metadata_says_so(model, tmp_path):
    from keras_yolov7.export.metadata import read_object_detector_metadata

    path = tmp_path / "android.tflite"
    result = kyv7.export.export(
        model, path, image_size=SIZE, nms="android", metadata=False, verbose=False
    )
    assert result.metadata.startswith("not written (metadata=False)")
    assert "ObjectDetector" in result.metadata and "mediapipe" not in result.verification
    with pytest.raises(ValueError, match="no TFLITE_METADATA"):
        read_object_detector_metadata(path.read_bytes())


def test_thread_dependent_outputs_fail_the_export(model, tmp_path, monkeypatch):
    """A kernel that answers otherwise with more threads (TFLite_Detection_PostProcess did) is
    caught by the export's own runs at 1, 2 and 4 threads."""
    from keras_yolov7.export import clients

    real = clients.interpreter_outputs

    def two_threads_lose_a_detection(model_bytes, images, num_threads):
        outputs = real(model_bytes, images, num_threads)
        if num_threads > 1:
            outputs[0]["count"] = outputs[0]["count"] - 1
        return outputs

    monkeypatch.setattr(clients, "interpreter_outputs", two_threads_lose_a_detection)
    path = tmp_path / "v5.tflite"
    with pytest.raises(kyv7.export.ExportVerificationError, match="depend on the interpreter's"):
        kyv7.export.export(model, path, image_size=SIZE, nms="v5", verbose=False)
    assert not path.exists()


def test_real_network_int8_is_integer_and_one_delegate_partition(tmp_path):
    """yolov7_tiny int8: every network op int8, and XNNPACK takes the whole graph."""
    from ai_edge_litert.interpreter import Interpreter

    model = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=2)
    path = tmp_path / "tiny_int8.tflite"
    result = kyv7.export.export(
        model,
        path,
        image_size=96,
        quantization="int8",
        representative_data=verify.synthetic_images(4, 96),
        verbose=False,
    )
    assert result.float_ops == {}
    assert "LEAKY_RELU" in result.ops and "TILE" not in result.ops
    runner = Interpreter(model_path=str(path), num_threads=2)
    runner.allocate_tensors()
    assert [op["op_name"] for op in runner._get_ops_details()].count("DELEGATE") == 1


def test_saved_model(model, images, tmp_path):
    import tensorflow as tf

    path = tmp_path / "saved"
    result = kyv7.export.export(model, path, image_size=SIZE, max_detections=15, verbose=False)
    assert (result.format, result.nms) == ("saved_model", "v5")
    assert result.inputs["images"] == {"shape": [-1, SIZE, SIZE, 3], "dtype": "uint8"}
    # Each weight of the fused model stored once.
    fused = kyv7.export.fixed_size_model(model, SIZE)
    stored = [
        shape
        for name, shape in tf.train.list_variables(str(path / "variables" / "variables"))
        if name.endswith("VARIABLE_VALUE")
    ]
    assert sorted(map(tuple, stored)) == sorted(tuple(w.shape) for w in fused.weights)
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "decoded"}
    decoded = loaded.signatures["decoded"](images=tf.constant(images[:2]))
    ref_boxes, ref_scores = keras_candidates(model, images[:2])
    np.testing.assert_allclose(decoded["boxes"].numpy(), ref_boxes, atol=1e-5)
    np.testing.assert_allclose(decoded["scores"].numpy(), ref_scores, atol=1e-5)
    outputs = {
        k: v.numpy()
        for k, v in loaded.signatures["serving_default"](images=tf.constant(images[:2])).items()
    }
    assert outputs["boxes"].shape == (2, 15, 4) and outputs["count"].shape == (2,)
    for b in range(2):
        check_padded_detections(
            outputs["boxes"][b],
            outputs["classes"][b],
            outputs["scores"][b],
            outputs["count"][b],
            0.25,
        )


def test_onnx_dynamic_batch(model, images, tmp_path):
    import onnx
    import onnxruntime

    path = tmp_path / "model.onnx"
    result = kyv7.export.export(model, path, verbose=False, image_size=SIZE, opset=13)
    assert result.format == "onnx"
    assert result.inputs["images"]["shape"] == [-1, SIZE, SIZE, 3]
    graph = onnx.load(str(path))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 13
    # One named dynamic axis shared by the input and the outputs.
    values = [*graph.graph.input, *graph.graph.output]
    assert [v.type.tensor_type.shape.dim[0].dim_param for v in values] == ["batch"] * 3
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores = session.run(["boxes", "scores"], {"images": images})
    ref_boxes, ref_scores = keras_candidates(model, images)
    assert boxes.shape == (3, CANDIDATES, 4)
    np.testing.assert_allclose(boxes, ref_boxes, atol=1e-5)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    single, _ = session.run(["boxes", "scores"], {"images": images[1:2]})
    np.testing.assert_allclose(single[0], boxes[1], atol=1e-6)
    assert json.loads(json.dumps(result.to_dict()))["verification"] == result.verification


def test_flex_ops_are_rejected(tmp_path):
    import tensorflow as tf

    from keras_yolov7.export import tflite

    class Flex(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([1, 10, 1, 4], tf.float32, name="boxes"),
                tf.TensorSpec([1, 10, 2], tf.float32, name="scores"),
            ]
        )
        def serve(self, boxes, scores):
            return {"boxes": tf.image.combined_non_max_suppression(boxes, scores, 5, 5).nmsed_boxes}

    module = Flex()
    tf.saved_model.save(
        module, str(tmp_path / "flex"), signatures={"serving_default": module.serve}
    )
    with pytest.raises(kyv7.export.NonBuiltinOpError, match="CombinedNonMaxSuppression"):
        tflite.convert(tmp_path / "flex", "fp32")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "flex"))
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    flex_model = converter.convert()
    with pytest.raises(kyv7.export.NonBuiltinOpError, match="FlexCombinedNonMaxSuppression"):
        tflite.check_builtin_ops(flex_model)


def test_failed_verification_leaves_previous_file(model, tmp_path, monkeypatch):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"previous export")
    monkeypatch.setitem(verify.TOLERANCES, "fp32", 0.0)
    with pytest.raises(kyv7.export.ExportVerificationError, match="above the tolerance 0"):
        kyv7.export.export(model, path, image_size=SIZE, verbose=False)
    assert path.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]


def test_nearest_upsample_matches_keras():
    import tensorflow as tf

    from keras_yolov7.export.graph import nearest_upsample

    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype("float32")
    expected = keras.layers.UpSampling2D((2, 3), interpolation="nearest")(x)
    np.testing.assert_array_equal(nearest_upsample(tf.constant(x), (2, 3)).numpy(), expected)


@pytest.fixture(scope="module")
def validation(model):
    """A validation set whose ground truth is the float model's own detections: the float model
    scores ~1, which checks the mapping back to original pixels.

    Returns:
        `(images, dataset, batches)` as the validation pipeline gives them.
    """
    from keras_yolov7.data.records import DetectionDataset
    from keras_yolov7.data.records import ImageRecord

    images = verify.synthetic_images(6, SIZE, seed=11)
    ref_boxes, ref_scores = keras_candidates(model, images, clip=False)  # NMS before clipping
    scale, pad = 0.5, np.array([2.0, 0.0])  # originals 124 x 128 letterboxed into 64 x 64
    records, targets = [], {"image_id": [], "scale": [], "pad": [], "original_size": []}
    for i, (boxes, scores) in enumerate(zip(ref_boxes, ref_scores)):
        # Ground truth = the float model's top 100 detections at the evaluation settings.
        kept = verify.reference_nms(boxes, scores, 100, 0.65, 0.001)
        original = np.clip((kept["boxes"] * SIZE - np.tile(pad, 2)) / scale, 0, [124, 128, 124, 128])
        records.append(ImageRecord(f"{i}.jpg", i, 124, 128, original, kept["classes"]))
        targets["image_id"].append(i)
        targets["scale"].append(scale)
        targets["pad"].append(pad)
        targets["original_size"].append((128, 124))
    dataset = DetectionDataset(records, ["cat", "dog", "bird"])
    batches = [(images, {k: np.asarray(v) for k, v in targets.items()})]
    return images, dataset, batches


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_int8_map_against_float_and_its_gate(model, validation, tmp_path, suffix):
    images, dataset, batches = validation
    result = kyv7.export.export(
        model,
        tmp_path / f"int8{suffix}",
        image_size=SIZE,
        quantization="int8",
        representative_data=images,
        validation_data=(dataset, batches),
        max_map_drop=None,
        verbose=False,
    )
    figures = result.verification["map"]
    assert figures["images"] == 6 and figures["max_map_drop"] is None
    assert figures["float_mAP50"] > 0.95
    assert 0.0 <= figures["int8_mAP50"] <= 1.0
    assert figures["mAP50_drop_points"] == pytest.approx(
        100 * (figures["float_mAP50"] - figures["int8_mAP50"])
    )
    if suffix == ".onnx":
        import onnx

        # QDQ: quantise / dequantise pairs around the network; float32 in and out, "batch" axis.
        assert result.ops["QuantizeLinear"] > 0 and result.ops["DequantizeLinear"] > 0
        graph = onnx.load(result.path).graph
        assert [v.type.tensor_type.shape.dim[0].dim_param for v in graph.output] == ["batch"] * 2
        assert result.outputs["boxes"]["dtype"] == "tensor(float)"
    # Calibrated on flat grey images, the int8 ranges fit no real content: the gate fails the
    # export and leaves no file.
    path = tmp_path / f"grey{suffix}"
    with pytest.raises(kyv7.export.ExportVerificationError, match="points below the float model"):
        kyv7.export.export(
            model,
            path,
            image_size=SIZE,
            quantization="int8",
            representative_data=np.full((4, SIZE, SIZE, 3), 114, np.uint8),
            validation_data=(dataset, batches),
            verbose=False,
        )
    assert not path.exists()


def test_int8_without_validation_data_says_its_accuracy_is_unmeasured(model, tmp_path):
    result = kyv7.export.export(
        model,
        tmp_path / "int8.onnx",
        image_size=SIZE,
        quantization="int8",
        representative_data=verify.synthetic_images(4, SIZE),
        verbose=False,
    )
    assert result.verification["map"].startswith("not measured: pass validation_data")
