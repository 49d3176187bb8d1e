"""Regenerates the example pictures in this folder (simulated detections, no model needed).

PR / F1 curves and the confusion matrix use five classes of a COCO annotation file with
simulated detections (ground truth jittered, some misses, wrong classes and false positives);
the prediction grid uses drawn shapes; results.png a made-up training log. They illustrate the
plots of `keras_yolov7.evaluation.plots`; the numbers in them mean nothing.

Run: python docs/plots/generate.py --coco-json ../shared/data/coco_tiny/annotations/instances_val2017.json
"""

import argparse
import csv
import json
import pathlib
import tempfile

import numpy as np

from keras_yolov7.data.records import DetectionDataset
from keras_yolov7.data.records import ImageRecord
from keras_yolov7.evaluation import metrics
from keras_yolov7.evaluation import plots

CLASSES = ("person", "car", "chair", "bottle", "dining table")
DPI = 80


def five_class_dataset(path):
    data = json.loads(pathlib.Path(path).read_text())
    ids = {c["name"]: c["id"] for c in data["categories"]}
    index = {ids[name]: i for i, name in enumerate(CLASSES)}
    per_image = {}
    for a in data["annotations"]:
        if a["category_id"] in index:
            per_image.setdefault(a["image_id"], []).append(a)
    records = []
    for image in data["images"]:
        anns = per_image.get(image["id"], [])
        records.append(
            ImageRecord(
                image["file_name"],
                image["id"],
                image["width"],
                image["height"],
                [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                [index[a["category_id"]] for a in anns],
                [a["iscrowd"] for a in anns],
            )
        )
    return DetectionDataset(records, list(CLASSES), [ids[n] for n in CLASSES])


def simulated_detections(dataset, rng):
    out = []
    for r in dataset.records:
        boxes, labels = r.boxes[~r.crowd], r.labels[~r.crowd]
        wh = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
        hit = rng.uniform(size=len(boxes)) < 0.85
        labels = np.where(
            rng.uniform(size=len(labels)) < 0.1, rng.integers(0, len(CLASSES), len(labels)), labels
        )
        extra = rng.uniform(0, 400, (rng.integers(0, 4), 2))
        out.append(
            {
                "image_id": r.image_id,
                "boxes": np.r_[
                    (boxes + rng.normal(0, 0.08, boxes.shape) * wh)[hit],
                    np.c_[extra, extra + rng.uniform(20, 120, extra.shape)],
                ],
                "scores": np.r_[rng.beta(5, 2, int(hit.sum())), rng.beta(2, 5, len(extra))],
                "labels": np.r_[labels[hit], rng.integers(0, len(CLASSES), len(extra))],
            }
        )
    return out


def shapes_batch(rng, batch=6, size=160):
    """Images of circles, squares and triangles with labels and imperfect predictions."""
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.zeros((batch, size, size, 3), np.uint8)
    gt = {"boxes": -np.ones((batch, 5, 4)), "labels": -np.ones((batch, 5), int)}
    pred = {
        "boxes": -np.ones((batch, 8, 4)),
        "confidence": -np.ones((batch, 8)),
        "labels": -np.ones((batch, 8), int),
    }
    for b in range(batch):
        images[b] = (rng.uniform(70, 190, 3) + 25 * np.sin(xx / 18.0)[..., None]).clip(0, 255)
        k = 0
        for i in range(rng.integers(1, 5)):
            c, s = rng.integers(0, 3), rng.uniform(20, 50)
            x0, y0 = rng.uniform(0, size - s, 2)
            inside = [
                (xx - x0 - s / 2) ** 2 + (yy - y0 - s / 2) ** 2 < (s / 2) ** 2,
                (xx >= x0) & (xx < x0 + s) & (yy >= y0) & (yy < y0 + s),
                (yy >= y0) & (yy < y0 + s) & (np.abs(xx - x0 - s / 2) < (yy - y0) / 2),
            ][c]
            images[b][inside] = rng.uniform(0, 255, 3)
            gt["boxes"][b, i], gt["labels"][b, i] = [x0, y0, x0 + s, y0 + s], c
            if rng.uniform() < 0.85:
                pred["boxes"][b, k] = gt["boxes"][b, i] + rng.normal(0, 2, 4)
                pred["confidence"][b, k] = rng.uniform(0.4, 0.97)
                pred["labels"][b, k] = c if rng.uniform() < 0.9 else (c + 1) % 3
                k += 1
    return images, gt, pred


def training_log(path, rng, epochs=40):
    columns = [
        "epoch",
        "box_loss",
        "obj_loss",
        "cls_loss",
        "loss",
        "val_mAP",
        "val_mAP50",
        "val_precision",
        "val_recall",
        "learning_rate",
    ]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for e in range(epochs):
            t = e / epochs
            losses = [
                0.08 * np.exp(-2 * t) + 0.02,
                0.05 * np.exp(-t) + 0.01,
                0.03 * np.exp(-3 * t) + 0.005,
            ]
            losses = [v + rng.normal(0, 0.0015) for v in losses]
            m = 0.45 * (1 - np.exp(-4 * t)) + rng.normal(0, 0.01)
            metrics_row = [
                m,
                1.5 * m,
                0.6 + 0.2 * t + rng.normal(0, 0.02),
                0.5 + 0.25 * t + rng.normal(0, 0.02),
            ]
            lr = 0.001 + 0.009 * (1 + np.cos(np.pi * t)) / 2
            writer.writerow([e + 1, *losses, sum(losses), *metrics_row, lr])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco-json", required=True)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent))
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    rng = np.random.default_rng(0)

    dataset = five_class_dataset(args.coco_json)
    detections = simulated_detections(dataset, rng)
    curves = metrics.precision_recall_curves(*metrics.match_dataset(dataset, detections))
    plots.plot_pr_curves(curves, dataset.class_names, out / "PR_curve.png", dpi=DPI)
    plots.plot_metric_confidence(curves, dataset.class_names, out / "F1_curve.png", dpi=DPI)
    plots.plot_confusion_matrix(
        metrics.confusion_matrix(dataset, detections),
        dataset.class_names,
        out / "confusion_matrix.png",
        dpi=DPI,
    )
    images, gt, pred = shapes_batch(rng)
    plots.plot_predictions(
        images, gt, pred, ["circle", "square", "triangle"], out / "val_batch.png", dpi=100
    )
    with tempfile.TemporaryDirectory() as tmp:
        log = pathlib.Path(tmp) / "results.csv"
        training_log(log, rng)
        plots.plot_results(log, out / "results.png", dpi=DPI)


if __name__ == "__main__":
    main()
