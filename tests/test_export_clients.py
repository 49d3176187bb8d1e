"""The Android export run as apps run it, checked here independently of the export's own
verification: MediaPipe Tasks' ObjectDetector (the C++ core of its Android library) and the LiteRT
interpreter at 1, 2 and 4 threads must give `predict()`'s detections (same classes, boxes within
1% of the image side, scores within 0.02) on synthetic validation images and on real photos.

MediaPipe stretches a frame to the model's square input (it does not letterbox), so it is given
the frame letterboxed to the model size, as examples/android/MediaPipeDetector.kt does.
"""

import keras
import numpy as np
import pytest

import keras_yolov7 as kyv7
from keras_yolov7.datasets.synthetic import SYNTHETIC_CLASS_NAMES
from keras_yolov7.datasets.synthetic import make_synthetic_arrays
from fixtures.micro_network import micro_network

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the export is TensorFlow code (other backends run it in a subprocess: "
    "test_export_backends.py); the clients do not depend on the backend",
)
mediapipe_vision = pytest.importorskip(
    "mediapipe.tasks.python.vision", reason="MediaPipe Tasks (the export extra) is not installed"
)

SIZE = 128
MAX_DETECTIONS = 40
THREADS = (1, 2, 4)
PHOTOS = ("bus.jpg", "zidane.jpg", "horses.jpg")
NET = micro_network(SIZE)


@pytest.fixture(scope="module")
def model():
    """A small network whose head is scaled so that 15 to 35 detections per image pass 0.25,
    with scores well apart (an untrained head keeps every score near 0.001)."""
    keras.utils.set_random_seed(0)
    preprocessor = kyv7.YOLOv7ObjectDetectorPreprocessor(
        kyv7.YOLOv7ImageConverter(image_size=SIZE), class_names=list(SYNTHETIC_CLASS_NAMES)
    )
    detector = kyv7.YOLOv7ObjectDetector(
        kyv7.YOLOv7Backbone(NET),
        num_classes=len(SYNTHETIC_CLASS_NAMES),
        preprocessor=preprocessor,
        max_detections=MAX_DETECTIONS,
    )
    for weight in detector.get_layer("lead_head").weights:
        value = keras.ops.convert_to_numpy(weight)
        if "conv" in weight.path and "kernel" in weight.path:
            weight.assign(value * 30.0)
        elif "conv" in weight.path and "bias" in weight.path:
            weight.assign(np.full_like(value, -1.5))
    return detector


@pytest.fixture(scope="module")
def android_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("android") / "model.tflite"
    kyv7.export.export(
        model, path, image_size=SIZE, nms="android", max_detections=MAX_DETECTIONS, verbose=False
    )
    return path


def synthetic_inputs():
    """Held-out synthetic images at the model size: letterboxing leaves them as they are."""
    images, _, _ = make_synthetic_arrays(4, image_size=SIZE, seed=0, stream=1)
    meta = {
        "scale": np.ones(len(images), np.float32),
        "pad": np.zeros((len(images), 2), np.float32),
        "original_size": np.full((len(images), 2), SIZE, np.int32),
    }
    return images, meta


def photo_inputs(folder):
    """Photos letterboxed to the model size by the validation pipeline, with their metadata."""
    from PIL import Image

    from keras_yolov7.data import DetectionDataset
    from keras_yolov7.data import ImageRecord
    from keras_yolov7.data import make_val_dataset

    records = []
    for index, name in enumerate(PHOTOS):
        width, height = Image.open(folder / "images" / name).size
        empty = np.zeros((0, 4), np.float32)
        records.append(
            ImageRecord(
                str(folder / "images" / name), index, width, height, empty, np.zeros(0, np.int32)
            )
        )
    dataset = DetectionDataset(records, list(SYNTHETIC_CLASS_NAMES))
    (images, targets), *_ = list(make_val_dataset(dataset, image_size=SIZE, batch_size=8))
    meta = {key: np.asarray(targets[key]) for key in ("scale", "pad", "original_size")}
    return np.asarray(images), meta


def predicted(model, images, meta):
    """`predict()`'s detections per image: boxes xyxy in original pixels, scores, classes."""
    outputs = model.predict({"images": images, **meta}, verbose=0)
    return [
        {
            "boxes": outputs["boxes"][i, :n].astype(np.float64),
            "scores": outputs["confidence"][i, :n].astype(np.float64),
            "classes": outputs["labels"][i, :n].astype(np.int64),
        }
        for i, n in enumerate(outputs["num_detections"])
    ]


def to_original(boxes_in_input_pixels, meta, i):
    """Input-pixel xyxy boxes of image i in its original pixels: the letterbox undone, clipped to
    the image (as docs/export.md tells an app to map them)."""
    pad = np.tile(meta["pad"][i].astype(np.float64), 2)
    height, width = (float(v) for v in meta["original_size"][i])
    boxes = (boxes_in_input_pixels - pad) / float(meta["scale"][i])
    return np.clip(boxes, 0.0, [width, height, width, height])


def assert_same_detections(got, expected, meta, extra_pixels=0.0):
    """Same detections as `predict()`, in any order: each of predict's detections matched one to
    one by a detection of the same class with corners within 1% of the image's longer side (plus
    `extra_pixels` of the model input) and a score within 0.02, and nothing else."""
    for i, (ours, reference) in enumerate(zip(got, expected)):
        side = float(meta["original_size"][i].max())
        tolerance = 0.01 * side + extra_pixels / float(meta["scale"][i])
        assert len(ours["scores"]) == len(reference["scores"]), f"image {i}: detection count"
        free = np.ones(len(ours["scores"]), bool)
        for box, score, cls in zip(reference["boxes"], reference["scores"], reference["classes"]):
            close = (
                free
                & (ours["classes"] == cls)
                & (np.abs(ours["scores"] - score) <= 0.02)
                & (np.abs(ours["boxes"] - box).max(axis=-1, initial=0.0) <= tolerance)
            )
            assert close.any(), f"image {i}: no match for class {cls} {box.round(1)} {score:.3f}"
            free[np.argmax(close)] = False


def litert(path, images, meta, threads):
    """The LiteRT interpreter as an app calls it, outputs read by position."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=threads)
    runner.allocate_tensors()
    detail = runner.get_input_details()[0]
    found = []
    for i, image in enumerate(images):
        runner.set_tensor(detail["index"], image[None].astype(detail["dtype"]))
        runner.invoke()
        boxes, classes, scores, count = (
            runner.get_tensor(d["index"])[0] for d in runner.get_output_details()
        )
        n = int(count)
        yxyx = boxes[:n].astype(np.float64) * SIZE
        found.append(
            {
                "boxes": to_original(yxyx[:, [1, 0, 3, 2]], meta, i),
                "scores": scores[:n].astype(np.float64),
                "classes": classes[:n].astype(np.int64),
            }
        )
    return found


def mediapipe(path, images, meta):
    """MediaPipe Tasks' ObjectDetector, with no option but the number of results."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions

    options = mediapipe_vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(path)), max_results=-1
    )
    found = []
    with mediapipe_vision.ObjectDetector.create_from_options(options) as detector:
        for i, image in enumerate(images):
            frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
            detections = detector.detect(frame).detections
            boxes = np.asarray(
                [
                    [b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height]
                    for b in (d.bounding_box for d in detections)
                ],
                np.float64,
            ).reshape(-1, 4)
            names = [d.categories[0].category_name for d in detections]
            found.append(
                {
                    "boxes": to_original(boxes, meta, i),
                    "scores": np.asarray([d.categories[0].score for d in detections]),
                    "classes": np.asarray([SYNTHETIC_CLASS_NAMES.index(n) for n in names]),
                    "names": names,
                }
            )
    return found


@pytest.fixture(params=["synthetic", "photos"])
def inputs(request):
    if request.param == "synthetic":
        return synthetic_inputs()
    return photo_inputs(request.getfixturevalue("shared_data"))


def test_litert_at_1_2_4_threads_equals_predict(model, android_file, inputs):
    images, meta = inputs
    expected = predicted(model, images, meta)
    assert sum(len(e["scores"]) for e in expected) >= 10 * len(images)
    for threads in THREADS:
        assert_same_detections(litert(android_file, images, meta, threads), expected, meta)


def test_mediapipe_object_detector_equals_predict(model, android_file, inputs):
    images, meta = inputs
    expected = predicted(model, images, meta)
    # MediaPipe truncates each corner and size to whole pixels: up to 2 input pixels.
    assert_same_detections(mediapipe(android_file, images, meta), expected, meta, extra_pixels=2)


def test_mediapipe_reads_labels_and_layout_from_the_metadata(android_file):
    from keras_yolov7.export.metadata import read_object_detector_metadata

    described = read_object_detector_metadata(android_file.read_bytes())
    assert described["labels"] == list(SYNTHETIC_CLASS_NAMES)
    assert described["outputs"] == ["location", "category", "score", "number of detections"]
    assert described["box_order"] == [1, 0, 3, 2]  # ymin, xmin, ymax, xmax
    assert described["normalisation"] == ([0.0], [1.0])
    images, meta = synthetic_inputs()
    names = {name for found in mediapipe(android_file, images, meta) for name in found["names"]}
    assert names and names <= set(SYNTHETIC_CLASS_NAMES)


# The trained synthetic model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """yolov7_tiny trained from scratch by examples/train_synthetic.py (shortened: ~6,000 image
    passes at 128 px), its validation images and their letterbox metadata."""
    import importlib.util
    import pathlib

    from keras_yolov7.data import make_val_dataset
    from keras_yolov7.data import read_coco

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_synthetic.py"
    spec = importlib.util.spec_from_file_location("train_synthetic", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    output = tmp_path_factory.mktemp("synthetic")
    argv = ["--output", str(output), "--epochs", "8", "--train-images", "768"]
    argv += ["--val-images", "16", "--val-interval", "8", "--no-int8"]
    summary = example.train(example.parse_args(argv))
    model = keras.saving.load_model(output / "yolov7_tiny_synthetic.keras", compile=False)
    model = model.get_fused()
    model.set_prediction_settings(max_detections=MAX_DETECTIONS)
    data = output / "data"
    dataset = read_coco(data / "annotations/instances_val.json", data / "images/val")
    (images, targets), *_ = list(make_val_dataset(dataset, image_size=SIZE, batch_size=16))
    targets = {key: np.asarray(value) for key, value in targets.items()}
    return model, summary, dataset, np.asarray(images), targets


def letterbox_meta(targets):
    return {key: targets[key] for key in ("scale", "pad", "original_size")}


@pytest.mark.slow
def test_trained_model_in_mediapipe_and_litert_equals_predict(trained, tmp_path, shared_data):
    model, summary, _, images, targets = trained
    meta = letterbox_meta(targets)
    assert summary["mAP50"] > 0.3  # a model that finds the shapes, not a random one
    path = tmp_path / "android.tflite"
    kyv7.export.export(
        model, path, image_size=SIZE, nms="android", max_detections=MAX_DETECTIONS, verbose=False
    )
    photos, photo_meta = photo_inputs(shared_data)
    for frames, frame_meta in ((images, meta), (photos, photo_meta)):
        expected = predicted(model, frames, frame_meta)
        for threads in THREADS:
            assert_same_detections(litert(path, frames, frame_meta, threads), expected, frame_meta)
        found = mediapipe(path, frames, frame_meta)
        assert_same_detections(found, expected, frame_meta, extra_pixels=2)
    assert sum(len(e["scores"]) for e in predicted(model, images, meta)) >= len(images)


@pytest.mark.slow
def test_trained_model_int8_android_is_the_same_in_every_client(trained, tmp_path):
    model, _, dataset, images, targets = trained
    meta = letterbox_meta(targets)
    path = tmp_path / "android_int8.tflite"
    batches = [(images, targets)]
    result = kyv7.export.export(
        model,
        path,
        image_size=SIZE,
        quantization="int8",
        nms="android",
        max_detections=MAX_DETECTIONS,
        representative_data=images,
        validation_data=(dataset, batches),
        verbose=False,
    )
    assert result.verification["map"]["mAP50_drop_points"] <= 1.0  # the default gate passed
    reference = litert(path, images, meta, 1)
    for threads in THREADS[1:]:
        assert_same_detections(litert(path, images, meta, threads), reference, meta)
    assert_same_detections(mediapipe(path, images, meta), reference, meta, extra_pixels=2)
