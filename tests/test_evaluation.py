"""COCO evaluation, per-class metrics, model evaluation and the evaluation callback."""

import contextlib
import csv
import io
import json

import keras
import numpy as np
import pytest
from fixtures.data_factory import write_coco_dataset
from PIL import Image

import keras_yolov7
from keras_yolov7.data import read_coco
from keras_yolov7.data.records import DetectionDataset
from keras_yolov7.data.records import ImageRecord
from keras_yolov7.evaluation import COCOEvaluationCallback
from keras_yolov7.evaluation import detections_to_coco
from keras_yolov7.evaluation import evaluate_detections
from keras_yolov7.evaluation import metrics
from keras_yolov7.evaluation import predict_dataset
from keras_yolov7.evaluation import callback as callback_module
from keras_yolov7.evaluation.coco import COCO_STAT_NAMES
from keras_yolov7.ops import postprocess

COCO_BACKENDS = ["pycocotools", "faster_coco_eval"]


# --- data ------------------------------------------------------------------------------------


def load_coco_json(path):
    """A minimal COCO reader for the tests: category ids sorted -> contiguous 0..C-1."""
    with open(path) as f:
        data = json.load(f)
    ids = sorted(c["id"] for c in data["categories"])
    names = {c["id"]: c["name"] for c in data["categories"]}
    index = {c: i for i, c in enumerate(ids)}
    per_image = {}
    for a in data["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a)
    records = []
    for image in data["images"]:
        anns = per_image.get(image["id"], [])
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        records.append(
            ImageRecord(
                image["file_name"],
                image["id"],
                image["width"],
                image["height"],
                boxes,
                [index[a["category_id"]] for a in anns],
                [a["iscrowd"] for a in anns],
            )
        )
    return DetectionDataset(records, [names[c] for c in ids], ids)


@pytest.fixture
def coco_tiny(shared_data):
    return load_coco_json(shared_data / "coco_tiny" / "annotations" / "instances_val2017.json")


def ground_truth_detections(dataset, include_crowd=False, score=1.0):
    out = []
    for r in dataset.records:
        keep = np.ones(len(r.labels), bool) if include_crowd else ~r.crowd
        out.append(
            {
                "image_id": r.image_id,
                "boxes": r.boxes[keep],
                "scores": np.full(int(keep.sum()), score),
                "labels": r.labels[keep],
            }
        )
    return out


def perturbed_detections(dataset, seed=0):
    """Ground truth with jittered boxes, some misses, wrong classes and false positives."""
    rng = np.random.default_rng(seed)
    out = []
    for r in dataset.records:
        boxes, labels = r.boxes[~r.crowd], r.labels[~r.crowd]
        wh = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
        hit = rng.uniform(size=len(boxes)) < 0.8
        wrong = rng.uniform(size=len(boxes)) < 0.1
        labels = np.where(wrong, rng.integers(0, dataset.num_classes, len(labels)), labels)
        extra = rng.uniform(0, 300, (3, 2))
        out.append(
            {
                "image_id": r.image_id,
                "boxes": np.r_[
                    (boxes + rng.normal(0, 0.08, boxes.shape) * wh)[hit], np.c_[extra, extra + 50]
                ],
                "scores": np.r_[rng.uniform(0.3, 1, int(hit.sum())), rng.uniform(0, 0.5, 3)],
                "labels": np.r_[labels[hit], rng.integers(0, dataset.num_classes, 3)],
            }
        )
    return out


def one_image_dataset(boxes, labels, crowd=None, extra_images=0, num_classes=1):
    records = [ImageRecord("a.jpg", 1, 100, 100, boxes, labels, crowd)]
    records += [
        ImageRecord(f"{i}.jpg", 2 + i, 100, 100, np.zeros((0, 4)), []) for i in range(extra_images)
    ]
    return DetectionDataset(records, [f"class{i}" for i in range(num_classes)])


# --- COCO metrics on real annotations ---------------------------------------------------------


@pytest.mark.parametrize("coco_backend", COCO_BACKENDS)
def test_ground_truth_as_detections_scores_one(coco_tiny, coco_backend):
    assert sum(r.crowd.sum() for r in coco_tiny.records) > 0  # the crowd rule is exercised
    result = evaluate_detections(
        coco_tiny, ground_truth_detections(coco_tiny), coco_backend=coco_backend
    )
    for key in ("mAP", "mAP50", "mAP75", "AR100", "precision", "recall"):
        assert result[key] == pytest.approx(1.0), key
    has_gt = result["per_class"]["num_gt"] > 0
    np.testing.assert_allclose(result["per_class"]["AP50"][has_gt], 1.0)
    # Detections on crowd regions are absorbed by them, not counted as false positives.
    with_crowd = evaluate_detections(
        coco_tiny, ground_truth_detections(coco_tiny, include_crowd=True), coco_backend=coco_backend
    )
    assert with_crowd["mAP"] == pytest.approx(1.0)


def test_backends_give_equal_numbers(coco_tiny):
    detections = perturbed_detections(coco_tiny)
    a, b = (evaluate_detections(coco_tiny, detections, coco_backend=name) for name in COCO_BACKENDS)
    for key in ("mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large", "AR1", "AR100"):
        assert a[key] == pytest.approx(b[key], abs=1e-9), key
    np.testing.assert_allclose(a["per_class"]["AP"], b["per_class"]["AP"], atol=1e-9)


def test_perturbed_detections_score_lower(coco_tiny):
    result = evaluate_detections(coco_tiny, perturbed_detections(coco_tiny))
    assert 0.2 < result["mAP"] < result["mAP50"] < 1.0
    assert result["mAP75"] < result["mAP50"]
    assert 0 < result["precision"] < 1 and 0 < result["recall"] < 1
    assert result["dropped_annotations"] == {} and result["skipped_images"] == {}


@pytest.mark.parametrize("coco_backend", COCO_BACKENDS)
def test_records_of_a_clean_json_give_the_official_numbers(shared_data, coco_backend):
    """Ground truth built from read_coco's records (with the JSON's segmentation areas) equals
    pycocotools run on the JSON file itself, all 12 numbers, small / medium / large included."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = shared_data / "coco_tiny" / "annotations" / "instances_val2017.json"
    dataset = read_coco(path)
    assert dataset.problems == {}
    detections = perturbed_detections(dataset, seed=1)
    result = evaluate_detections(dataset, detections, coco_backend=coco_backend)
    with contextlib.redirect_stdout(io.StringIO()):
        official = COCO(str(path))
        results = official.loadRes(detections_to_coco(dataset, detections))
        evaluator = COCOeval(official, results, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    for name, value in zip(COCO_STAT_NAMES, evaluator.stats):
        assert result[name] == pytest.approx(value, abs=1e-6), name


def test_annotations_the_reader_dropped_are_not_scored(tmp_path, capsys):
    """A COCO JSON with annotations the reader rejects: detections equal to what it kept score
    1.0 (the raw JSON as ground truth counted the rejected ones as misses, or failed on them),
    and the result says what was left out."""
    image = io.BytesIO()
    Image.new("RGB", (100, 80), (90, 90, 90)).save(image, "PNG")
    images = {f"{i}.png": image.getvalue() for i in range(3)}
    entries = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 80} for i in range(3)]
    entries.append({"id": 3, "file_name": "missing.png", "width": 100, "height": 80})

    def box(i, image_id, category_id, bbox, **extra):
        return {"id": i, "image_id": image_id, "category_id": category_id, "bbox": bbox,
                "iscrowd": 0, "area": 1.0 if bbox == "x" else 400.0, **extra}  # fmt: skip

    annotations = [
        box(1, 0, 1, [10, 10, 20, 20]),
        box(2, 1, 2, [30, 20, 30, 40]),
        box(3, 2, 1, [5, 5, 50, 50]),
        box(4, 0, 7, [50, 40, 20, 20]),  # unknown category
        box(5, 1, 1, "10, 10, 5, 5"),  # bbox as a string
        box(6, 2, 2, [60, 10, 0, 30]),  # zero width
        box(7, 2, 2, [200, 200, 10, 10]),  # outside the image
        box(8, 3, 1, [10, 10, 20, 20]),  # on an image whose file is missing
        box(9, 9, 1, [10, 10, 20, 20]),  # unknown image
    ]
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    dataset = read_coco(write_coco_dataset(tmp_path, images, entries, annotations, categories))
    assert sum(len(r.labels) for r in dataset.records) == 3
    expected = {
        "unknown category id": 1,
        "malformed bbox": 1,
        "zero-area or negative box": 1,
        "box outside image": 1,
        "annotation of a skipped image": 1,
        "annotation for unknown image id": 1,
    }
    assert dataset.dropped_annotations == expected
    assert dataset.skipped_images == {"missing image": 1}
    for coco_backend in COCO_BACKENDS:
        result = evaluate_detections(
            dataset, ground_truth_detections(dataset), coco_backend=coco_backend, verbose=True
        )
        for key in ("mAP", "mAP50", "mAP75", "precision", "recall"):
            assert result[key] == pytest.approx(1.0), (coco_backend, key)
        assert result["dropped_annotations"] == expected
        assert result["skipped_images"] == {"missing image": 1}
        printed = capsys.readouterr().out.splitlines()[-1]
        assert printed.startswith("not scored, left out by the dataset reader: 6 annotations (")
        assert "1 unknown category id" in printed and "; 1 images (1 missing image)" in printed


def test_labels_map_back_to_the_json_category_ids(coco_tiny, tmp_path):
    detections = perturbed_detections(coco_tiny)
    path = tmp_path / "predictions.json"
    evaluate_detections(coco_tiny, detections, results_file=path)
    written = json.loads(path.read_text())
    assert len(written) == sum(len(d["labels"]) for d in detections)
    by_name = {c: i for i, c in zip(coco_tiny.category_ids, coco_tiny.class_names)}
    expected = [by_name[coco_tiny.class_names[label]] for d in detections for label in d["labels"]]
    assert [w["category_id"] for w in written] == expected
    assert max(w["category_id"] for w in written) > coco_tiny.num_classes  # COCO ids, not indices
    first = written[0]
    x1, y1, x2, y2 = detections[0]["boxes"][0]
    np.testing.assert_allclose(first["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=1e-3)
    assert first["image_id"] == coco_tiny.records[0].image_id


def test_curves_ap_equals_pycocotools_per_class_ap50(coco_tiny):
    detections = perturbed_detections(coco_tiny, seed=3)
    result = evaluate_detections(coco_tiny, detections, coco_backend="pycocotools")
    curves = metrics.precision_recall_curves(*metrics.match_dataset(coco_tiny, detections))
    has_gt = curves["has_gt"]
    np.testing.assert_allclose(curves["ap"][has_gt], result["per_class"]["AP50"][has_gt], 1e-9)
    assert np.isnan(result["per_class"]["AP50"][~has_gt]).all()


# --- small cases computed by hand ------------------------------------------------------------


def test_single_detection_at_iou_062(capsys):
    dataset = one_image_dataset([[0, 0, 10, 10]], [0])
    # [0, 0, 10, 6.2] covers 62 of the 100 pixels: IoU 0.62, a match for IoU 0.50, 0.55, 0.60.
    det = [{"image_id": 1, "boxes": [[0, 0, 10, 6.2]], "scores": [0.9], "labels": [0]}]
    for backend in COCO_BACKENDS:
        result = evaluate_detections(dataset, det, coco_backend=backend, verbose=True)
        assert result["mAP50"] == pytest.approx(1.0)
        assert result["mAP75"] == pytest.approx(0.0)
        assert result["mAP"] == pytest.approx(0.3)
        printed = capsys.readouterr().out
        assert "(AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 1.000" in printed
        assert "(AP) @[ IoU=0.75      | area=   all | maxDets=100 ] = 0.000" in printed
        assert "(AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.300" in printed


def test_false_positive_first_gives_two_thirds():
    dataset = one_image_dataset([[0, 0, 10, 10], [50, 50, 70, 70]], [0, 0])
    det = [
        {
            "image_id": 1,
            "boxes": [[20, 20, 30, 30], [0, 0, 10, 10], [50, 50, 70, 70]],
            "scores": [0.9, 0.8, 0.7],
            "labels": [0, 0, 0],
        }
    ]
    result = evaluate_detections(dataset, det)
    # Precision 0, 1/2, 2/3 at recall 0, 1/2, 1: the envelope is 2/3 everywhere.
    assert result["mAP50"] == pytest.approx(2 / 3)
    curves = metrics.precision_recall_curves(*metrics.match_dataset(dataset, det))
    assert curves["ap"][0] == pytest.approx(2 / 3)
    # Best F1: keeping all three gives P 2/3, R 1 (F1 0.8) vs P 1/2, R 1/2 above 0.8.
    assert result["f1"] == pytest.approx(0.8, abs=1e-3)
    assert result["precision"] == pytest.approx(2 / 3, abs=1e-3)
    assert result["recall"] == pytest.approx(1.0)


def test_crowd_ground_truth_absorbs_detections():
    boxes = [[0, 0, 10, 10], [40, 40, 90, 90]]
    det = [
        {
            "image_id": 1,
            "boxes": [[50, 50, 70, 70], [0, 0, 10, 10]],
            "scores": [0.9, 0.8],
            "labels": [0, 0],
        }
    ]
    crowd = evaluate_detections(one_image_dataset(boxes, [0, 0], crowd=[False, True]), det)
    assert crowd["mAP50"] == pytest.approx(1.0)
    # The same box as a regular object: the first detection (IoU 0.16) is a false positive and
    # the second object is missed: precision 1/2 up to recall 1/2, i.e. 51 of COCO's 101 recall
    # points.
    regular = evaluate_detections(one_image_dataset(boxes, [0, 0]), det)
    assert regular["mAP50"] == pytest.approx(0.5 * 51 / 101)


def test_images_without_ground_truth_count():
    dataset = one_image_dataset([[0, 0, 10, 10]], [0], extra_images=1)
    det = [
        {"image_id": 1, "boxes": [[0, 0, 10, 10]], "scores": [0.5], "labels": [0]},
        {"image_id": 2, "boxes": [[10, 10, 30, 30]], "scores": [0.9], "labels": [0]},
    ]
    result = evaluate_detections(dataset, det)
    assert result["mAP50"] == pytest.approx(0.5)  # the negative image's detection is an FP


def test_no_detections_and_bad_input():
    dataset = one_image_dataset([[0, 0, 10, 10]], [0], num_classes=2)
    empty = evaluate_detections(dataset, [])
    assert empty["mAP"] == 0.0 and empty["mAP50"] == 0.0
    with pytest.raises(ValueError, match="image_id 7, which is not in the dataset"):
        detections_to_coco(dataset, [{"image_id": 7, "boxes": [], "scores": [], "labels": []}])
    bad = [{"image_id": 1, "boxes": [[0, 0, 1, 1]], "scores": [1.0], "labels": [5]}]
    with pytest.raises(ValueError, match="labels contain 5 but num_classes is 2"):
        detections_to_coco(dataset, bad)


def test_confusion_matrix_counts_a_hand_made_case():
    records = [
        ImageRecord(
            "a.jpg",
            1,
            100,
            100,
            [[0, 0, 10, 10], [20, 20, 40, 40], [60, 60, 80, 80], [0, 50, 30, 99]],
            [0, 1, 2, 1],
            [False, False, False, True],
        ),
        ImageRecord("b.jpg", 2, 100, 100, np.zeros((0, 4)), []),
    ]
    dataset = DetectionDataset(records, ["a", "b", "c"])
    det = [
        {
            "image_id": 1,
            # right class, wrong class, below the confidence threshold, on the crowd box,
            # a duplicate of the first (false positive)
            "boxes": [
                [0, 0, 10, 10],
                [21, 21, 40, 40],
                [60, 60, 80, 80],
                [0, 50, 30, 95],
                [0, 0, 10, 9],
            ],
            "scores": [0.9, 0.8, 0.1, 0.9, 0.5],
            "labels": [0, 2, 2, 1, 0],
        },
        {"image_id": 2, "boxes": [[5, 5, 25, 25]], "scores": [0.7], "labels": [1]},
    ]
    matrix = metrics.confusion_matrix(dataset, det, confidence_threshold=0.25, iou_threshold=0.45)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = 1  # class a found
    expected[2, 1] = 1  # class b taken for c
    expected[3, 2] = 1  # class c missed (its detection is below 0.25)
    expected[0, 3] = 1  # duplicate of a: background false positive
    expected[1, 3] = 1  # the negative image's detection
    np.testing.assert_array_equal(matrix, expected)


# --- running a model -------------------------------------------------------------------------


def tiny_validation_set(num_batches=2, batch=2, size=64):
    """Batches in the validation pipeline format and the matching ground truth."""
    rng = np.random.default_rng(0)
    batches, records = [], []
    for b in range(num_batches):
        images = rng.integers(0, 255, (batch, size, size, 3)).astype("uint8")
        ids = np.arange(b * batch, (b + 1) * batch) + 100
        scale = np.full(batch, 0.5, "float32")
        pad = np.tile(np.float32([[0, 8]]), (batch, 1))
        original = np.tile(np.int32([[96, 128]]), (batch, 1))
        boxes = -np.ones((batch, 3, 4), "float32")
        labels = -np.ones((batch, 3), "int32")
        boxes[:, 0] = [10, 20, 40, 50]
        labels[:, 0] = b % 2
        for i in range(batch):
            records.append(
                ImageRecord(f"{ids[i]}.jpg", ids[i], 128, 96, [[20, 24, 80, 84]], [b % 2])
            )
        targets = {
            "boxes": boxes,
            "labels": labels,
            "image_id": ids.astype("int64"),
            "scale": scale,
            "pad": pad,
            "original_size": original,
        }
        batches.append((images, targets))
    return batches, DetectionDataset(records, ["cat", "dog"])


@pytest.fixture(scope="module")
def tiny_model():
    return keras_yolov7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=2)


def test_predict_dataset_maps_model_outputs_to_original_pixels(tiny_model):
    batches, dataset = tiny_validation_set()
    detections = predict_dataset(tiny_model, batches, verbose=0)
    assert [d["image_id"] for d in detections] == [r.image_id for r in dataset.records]
    images, targets = batches[1]

    def reference(raw, scale, pad, size):
        return postprocess(
            raw,
            tiny_model.anchors,
            tiny_model.strides,
            2,
            confidence_threshold=0.001,
            iou_threshold=0.65,
            multi_label=True,
            scale=scale,
            pad=pad,
            original_size=size,
        )

    if keras.backend.backend() == "jax":  # eager JAX compiles each while loop at every call
        import jax

        reference = jax.jit(reference)
    raw = tiny_model(images, training=False)
    expected = reference(raw, targets["scale"], targets["pad"], targets["original_size"])
    expected = {k: keras.ops.convert_to_numpy(v) for k, v in expected.items()}
    n = int(expected["num_detections"][1])
    got = detections[3]
    assert n > 0 and len(got["scores"]) == n
    np.testing.assert_allclose(got["boxes"], expected["boxes"][1, :n], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got["scores"], expected["confidence"][1, :n], rtol=1e-4)
    assert got["boxes"][:, [0, 2]].max() <= 128 and got["boxes"][:, [1, 3]].max() <= 96


def test_callback_logs_metrics_and_keeps_best_weights(tiny_model, tmp_path):
    batches, dataset = tiny_validation_set()
    best = tmp_path / "best.weights.h5"
    plot_dir = tmp_path / "plots"
    callback = COCOEvaluationCallback(
        batches, dataset, save_best_path=str(best), plot_dir=str(plot_dir), verbose=0
    )
    csv_path = tmp_path / "log.csv"
    callbacks = keras.callbacks.CallbackList(
        [callback, keras.callbacks.CSVLogger(str(csv_path))],
        add_history=True,
        model=tiny_model,
        epochs=1,
    )
    callbacks.on_train_begin()
    callbacks.on_epoch_begin(0)
    callbacks.on_epoch_end(0, {"loss": 1.0})
    callbacks.on_train_end()
    history = tiny_model.history.history
    for key in ("val_mAP", "val_mAP50", "val_mAP75", "val_AR100", "val_precision"):
        assert key in history and len(history[key]) == 1, key
        assert 0.0 <= history[key][0] <= 1.0
    assert "val_per_class" not in history
    with open(csv_path) as f:
        row = next(csv.DictReader(f))
    assert float(row["val_mAP50"]) == pytest.approx(history["val_mAP50"][0])
    assert best.is_file() and best.stat().st_size > 0
    written = sorted(p.name for p in plot_dir.iterdir())
    assert written == sorted(
        ["PR_curve.png", "F1_curve.png", "confusion_matrix.png", "val_batch0.png", "val_batch1.png"]
    )


def test_callback_tracks_the_monitored_metric(tiny_model, tmp_path, monkeypatch):
    scripted = iter([0.2, 0.1, 0.3, 0.25, 0.3])
    weights_at_eval = []

    def fake_evaluate(model, *args, **kwargs):
        weights_at_eval.append(model.get_weights()[0].copy())
        value = next(scripted)
        return {"mAP": value, "mAP50": value, "per_class": {}}

    monkeypatch.setattr(callback_module.inference, "evaluate_model", fake_evaluate)
    monkeypatch.setattr(
        callback_module.inference, "compile_detect_function", lambda model, **s: None
    )
    best = tmp_path / "best.weights.h5"
    callback = COCOEvaluationCallback(
        None, None, interval=2, save_best_path=str(best), restore_best_weights=True, verbose=0
    )
    callback.set_model(tiny_model)
    callback.set_params({"epochs": 7})
    original = tiny_model.get_weights()
    callback.on_train_begin()
    evaluated = []
    for epoch in range(7):
        kernel = tiny_model.weights[0]
        kernel.assign(keras.ops.convert_to_numpy(kernel) + 1.0)
        logs = {}
        callback.on_epoch_end(epoch, logs)
        if logs:
            evaluated.append(epoch)
            assert logs["val_mAP"] == logs["val_mAP50"]
    assert evaluated == [0, 1, 3, 5, 6]  # the first epoch, every second one and the last
    assert callback.best == 0.3 and callback.best_epoch == 3  # a tie later is no improvement
    callback.on_train_end()
    np.testing.assert_allclose(tiny_model.get_weights()[0], weights_at_eval[2])
    tiny_model.set_weights(original)
    tiny_model.load_weights(str(best))
    np.testing.assert_allclose(tiny_model.get_weights()[0], weights_at_eval[2])
    tiny_model.set_weights(original)
