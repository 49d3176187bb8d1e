"""Evaluation pictures: valid PNGs of the stated size, drawn from the right numbers."""

import numpy as np
import pytest
from PIL import Image

from keras_yolov7.data.records import DetectionDataset
from keras_yolov7.data.records import ImageRecord
from keras_yolov7.evaluation import metrics
from keras_yolov7.evaluation import plots


def png_size(path):
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG"
        return image.size


def hand_made_curves():
    """Class 0: TP (0.9), FP (0.8), TP (0.6) on 2 objects; class 1: one miss; class 2: no GT."""
    records = [
        ImageRecord(
            "a.jpg", 1, 100, 100, [[0, 0, 10, 10], [50, 50, 70, 70], [80, 0, 99, 9]], [0, 0, 1]
        ),
    ]
    dataset = DetectionDataset(records, ["cat", "dog", "bird"])
    detections = [
        {
            "image_id": 1,
            "boxes": [[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 70, 70], [30, 30, 40, 40]],
            "scores": [0.9, 0.8, 0.6, 0.5],
            "labels": [0, 0, 0, 2],
        }
    ]
    return dataset, metrics.precision_recall_curves(*metrics.match_dataset(dataset, detections))


def test_pr_curve_numbers_and_picture(tmp_path):
    dataset, curves = hand_made_curves()
    # Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1: envelope 1 up to recall 0.5 (51 of the 101
    # points), 2/3 after.
    expected = (51 * 1 + 50 * 2 / 3) / 101
    assert curves["ap"][0] == pytest.approx(expected)
    assert curves["pr_precision"][0].mean() == pytest.approx(expected)
    assert curves["ap"][1] == 0.0 and np.isnan(curves["ap"][2])
    assert np.trapezoid(curves["pr_precision"][0], curves["recall_grid"]) == pytest.approx(
        expected, abs=0.01
    )
    path = tmp_path / "pr.png"
    plots.plot_pr_curves(curves, dataset.class_names, path)
    assert png_size(path) == (1350, 900)


def test_metric_confidence_numbers_and_picture(tmp_path):
    dataset, curves = hand_made_curves()
    conf = curves["confidence"]

    def at(c):
        return int(np.searchsorted(conf, c))  # the first grid point at or above c

    # Above 0.9 nothing is kept (R 0, P 1 by convention); between detections the curves are
    # interpolated (at 0.85: R 1/2 on both sides); at 0.5 all three count (P 2/3, R 1).
    assert curves["recall"][0, at(0.95)] == 0.0
    assert curves["precision"][0, at(0.95)] == 1.0
    assert curves["recall"][0, at(0.85)] == pytest.approx(0.5)
    assert 0.5 < curves["precision"][0, at(0.85)] < 1.0
    assert curves["recall"][0, at(0.5)] == pytest.approx(1.0)
    assert curves["precision"][0, at(0.5)] == pytest.approx(2 / 3)
    assert curves["f1"][0, at(0.5)] == pytest.approx(0.8)
    summary = metrics.best_f1_summary(curves)
    # Mean over the classes with ground truth (cat, dog): dog's F1 is 0 everywhere.
    assert summary["f1"] == pytest.approx(0.4, abs=1e-3)
    assert summary["best_f1_confidence"] <= 0.6
    for metric in ("f1", "precision", "recall"):
        path = tmp_path / f"{metric}.png"
        plots.plot_metric_confidence(curves, dataset.class_names, path, metric=metric)
        assert png_size(path) == (1350, 900)
    with pytest.raises(ValueError, match="metric is 'map'"):
        plots.plot_metric_confidence(curves, dataset.class_names, tmp_path / "x.png", "map")


def test_many_classes_do_not_swamp_the_legend(tmp_path):
    rng = np.random.default_rng(0)
    num_classes = 80
    curves = {
        "ap": rng.uniform(size=num_classes),
        "recall_grid": metrics.RECALL_THRESHOLDS,
        "pr_precision": np.sort(rng.uniform(size=(num_classes, 101)), axis=1)[:, ::-1],
        "has_gt": np.ones(num_classes, bool),
    }
    path = tmp_path / "pr80.png"
    plots.plot_pr_curves(curves, [f"class {i}" for i in range(num_classes)], path)
    assert png_size(path) == (1350, 900)


def test_confusion_matrix_picture(tmp_path):
    matrix = np.array([[3, 0, 1], [1, 2, 0], [0, 2, 0]])
    normalized = plots.normalize_confusion_matrix(matrix)
    np.testing.assert_allclose(normalized[:, 0], [0.75, 0.25, 0.0])
    np.testing.assert_allclose(normalized[:, 1], [0.0, 0.5, 0.5])
    np.testing.assert_allclose(normalized[:, 2], [1.0, 0.0, 0.0])
    for classes, side in ((2, 7.0), (80, 3.0 + 0.2 * 81)):
        names = [f"c{i}" for i in range(classes)]
        m = np.eye(classes + 1, dtype=int) if classes > 2 else matrix
        path = tmp_path / f"cm{classes}.png"
        plots.plot_confusion_matrix(m, names, path, dpi=50)
        assert png_size(path) == (round(side * 50), round(side * 50))
    with pytest.raises(ValueError, match=r"shape \(3, 3\); expected \(4, 4\) for 3 classes"):
        plots.plot_confusion_matrix(matrix, ["a", "b", "c"], tmp_path / "bad.png")


def test_predictions_picture(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 48, 64, 3)).astype("uint8")
    targets = {"boxes": -np.ones((5, 2, 4)), "labels": -np.ones((5, 2), int)}
    targets["boxes"][0, 0] = [5, 5, 30, 30]
    targets["labels"][0, 0] = 1
    empty = {
        "boxes": -np.ones((5, 3, 4)),
        "confidence": -np.ones((5, 3)),
        "labels": -np.ones((5, 3), int),
    }
    low = {k: v.copy() for k, v in empty.items()}
    low["boxes"][0, 0], low["confidence"][0, 0], low["labels"][0, 0] = [5, 5, 30, 30], 0.1, 0
    high = {k: v.copy() for k, v in low.items()}
    high["confidence"][0, 0] = 0.9

    rows, columns = plots.predictions_grid(5)
    assert (rows, columns) == (3, 2)
    paths = {}
    for name, predictions in (("empty", empty), ("low", low), ("high", high)):
        paths[name] = tmp_path / f"{name}.png"
        plots.plot_predictions(images, targets, predictions, ["cat", "dog"], paths[name], dpi=40)
        assert png_size(paths[name]) == (2 * columns * 3 * 40, rows * 3 * 40)
    pixels = {k: np.asarray(Image.open(p)) for k, p in paths.items()}
    # A prediction under the confidence threshold is not drawn; one above it is.
    np.testing.assert_array_equal(pixels["low"], pixels["empty"])
    assert np.any(pixels["high"] != pixels["empty"])


def test_results_picture(tmp_path):
    csv_path = tmp_path / "results.csv"
    lines = ["epoch,loss,box_loss,val_mAP,val_mAP50,learning_rate"]
    for epoch in range(8):
        metric = f"{0.05 * epoch:.3f}" if epoch % 2 == 0 else "NA"
        lines.append(
            f"{epoch},{1 / (epoch + 1):.4f},{0.5 / (epoch + 1):.4f},{metric},{metric},0.01"
        )
    csv_path.write_text("\n".join(lines) + "\n")
    table = plots.read_results_csv(csv_path)
    assert np.isnan(table["val_mAP"][1]) and table["val_mAP"][6] == pytest.approx(0.3)
    assert plots._headline("loss", table["loss"]) == "min 0.125"
    assert plots._headline("val_mAP", table["val_mAP"][::2]) == "max 0.3"
    assert plots._headline("learning_rate", table["learning_rate"]) == "last 0.01"

    path = tmp_path / "results.png"
    plots.plot_results(csv_path, path, dpi=50)
    rows, columns = plots.results_grid(5)
    assert (rows, columns) == (1, 5)
    assert png_size(path) == (round(columns * 3.6 * 50), round(rows * 2.8 * 50))

    bad = tmp_path / "bad.csv"
    bad.write_text("step,loss\n0,1\n")
    with pytest.raises(ValueError, match="expected an 'epoch' column"):
        plots.plot_results(bad, tmp_path / "bad.png")
