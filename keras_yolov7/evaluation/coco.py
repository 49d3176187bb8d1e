"""COCO evaluation of detections with pycocotools (or faster-coco-eval, same numbers, faster)."""

import contextlib
import io
import json
import os

import numpy as np

from keras_yolov7.evaluation import metrics

COCO_STAT_LINES = (
    ("Average Precision", "AP", "0.50:0.95", "all", 100),
    ("Average Precision", "AP", "0.50", "all", 100),
    ("Average Precision", "AP", "0.75", "all", 100),
    ("Average Precision", "AP", "0.50:0.95", "small", 100),
    ("Average Precision", "AP", "0.50:0.95", "medium", 100),
    ("Average Precision", "AP", "0.50:0.95", "large", 100),
    ("Average Recall", "AR", "0.50:0.95", "all", 1),
    ("Average Recall", "AR", "0.50:0.95", "all", 10),
    ("Average Recall", "AR", "0.50:0.95", "all", 100),
    ("Average Recall", "AR", "0.50:0.95", "small", 100),
    ("Average Recall", "AR", "0.50:0.95", "medium", 100),
    ("Average Recall", "AR", "0.50:0.95", "large", 100),
)

COCO_STAT_NAMES = (
    "mAP",
    "mAP50",
    "mAP75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


def category_ids(dataset):
    """COCO category id of each contiguous class index.

    The dataset's own ids (`dataset.category_ids`, from its COCO JSON) when it has them, else
    `index + 1` (COCO ids start at 1).
    """
    if dataset.category_ids is not None:
        if len(dataset.category_ids) != dataset.num_classes:
            raise ValueError(
                f"dataset has {len(dataset.category_ids)} category ids for "
                f"{dataset.num_classes} class names; expected one id per class"
            )
        return [int(c) for c in dataset.category_ids]
    return list(range(1, dataset.num_classes + 1))


def ground_truth_to_coco(dataset):
    """COCO ground-truth dict (`images`, `annotations`, `categories`) of a `DetectionDataset`.

    This is the only ground truth evaluation uses: exactly the records' boxes (xyxy
    original-image pixels written as COCO `[x, y, w, h]`), so an annotation a reader dropped
    is never scored, and the images a reader left out are not evaluated. `area` is the record's
    (a COCO JSON's own `area`, the segmentation area that sets small / medium / large, when the
    dataset was read from one; else the box area). Crowd boxes get `iscrowd = 1`.
    """
    ids = category_ids(dataset)
    images, annotations = [], []
    for record in dataset.records:
        images.append(
            {
                "id": int(record.image_id),
                "width": int(record.width),
                "height": int(record.height),
                "file_name": os.path.basename(str(record.image_path)),
            }
        )
        for box, label, crowd, area in zip(
            record.boxes, record.labels, record.crowd, record.areas
        ):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(record.image_id),
                    "category_id": ids[int(label)],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(area),
                    "iscrowd": int(bool(crowd)),
                }
            )
    categories = [{"id": i, "name": str(n)} for i, n in zip(ids, dataset.class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def detections_to_coco(dataset, detections):
    """Detections as a COCO results list, labels mapped to the dataset's category ids.

    Args:
        dataset: the `DetectionDataset` evaluated against.
        detections: list of dicts `{"image_id", "boxes" (N, 4) xyxy original-image pixels,
            "scores" (N,), "labels" (N,) contiguous class indices}`.

    Returns:
        list of `{"image_id", "category_id", "bbox": [x, y, w, h], "score"}` (the format of
        COCO's results JSON), boxes rounded to 3 decimals and scores to 5, as the official
        YOLOv7 writes them.
    """
    ids = category_ids(dataset)
    known = {int(r.image_id) for r in dataset.records}
    results = []
    for det in detections:
        image_id = int(det["image_id"])
        if image_id not in known:
            raise ValueError(f"detections for image_id {image_id}, which is not in the dataset")
        boxes = np.asarray(det["boxes"], np.float64).reshape(-1, 4)
        scores = np.asarray(det["scores"], np.float64).reshape(-1)
        labels = np.asarray(det["labels"], np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(
                f"image {image_id}: {len(boxes)} boxes, {len(scores)} scores and "
                f"{len(labels)} labels; expected equal counts"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(ids)):
            bad = labels.min() if labels.min() < 0 else labels.max()
            raise ValueError(
                f"image {image_id}: labels contain {bad} but num_classes is {len(ids)}"
            )
        for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": ids[label],
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": round(float(score), 5),
                }
            )
    return results


def _coco_api(backend):
    """(COCO, COCOeval) classes of the chosen implementation."""
    if backend in ("auto", "faster_coco_eval"):
        try:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster

            return COCO, COCOeval_faster
        except ImportError:
            if backend == "faster_coco_eval":
                raise
    elif backend != "pycocotools":
        raise ValueError(
            f"coco_backend is {backend!r}; expected 'auto', 'pycocotools' or 'faster_coco_eval'"
        )
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval


def _load_ground_truth(coco_class, dataset):
    coco = coco_class()
    coco.dataset = ground_truth_to_coco(dataset)
    coco.createIndex()
    return coco


def evaluate_detections(
    dataset,
    detections,
    results_file=None,
    coco_backend="auto",
    verbose=False,
    plot_dir=None,
):
    """COCO box metrics of detections against a dataset's ground truth.

    The ground truth pycocotools sees is built from the dataset's records (see
    `ground_truth_to_coco`), never reloaded from the annotation file: what the reader dropped is
    not scored, and the result says how much that was (`dropped_annotations`,
    `skipped_images`).

    Args:
        dataset: a `DetectionDataset` (records with xyxy original-pixel boxes, contiguous
            labels and crowd flags; `category_ids` maps labels back to COCO ids).
        detections: list of dicts `{"image_id", "boxes" (N, 4) xyxy original-image pixels,
            "scores" (N,), "labels" (N,) contiguous class indices}`. Images without an entry
            have no detections; every dataset image is evaluated, with or without ground truth.
        results_file: optional path; the detections are written there as COCO results JSON.
        coco_backend: "auto" (faster-coco-eval when installed, else pycocotools),
            "pycocotools" or "faster_coco_eval". Both give the same numbers.
        verbose: print COCO's standard table and a per-class table (whatever `coco_backend`
            prints itself is silenced).
        plot_dir: optional folder for PR_curve.png, F1_curve.png and confusion_matrix.png.

    Returns:
        A dict of floats: `mAP` (IoU 0.5:0.95), `mAP50`, `mAP75`, `mAP_small`, `mAP_medium`,
        `mAP_large`, `AR1`, `AR10`, `AR100`, `AR_small`, `AR_medium`, `AR_large` (COCO's 12
        stats, -1 where COCO has nothing to measure, e.g. no small objects), and `precision`,
        `recall`, `f1`, `best_f1_confidence` (IoU 0.5, at the confidence with the best mean
        F1, as the official YOLOv7 reports P and R); `per_class`, a dict of `(C,)` arrays
        `AP`, `AP50`, `precision`, `recall`, `num_gt` (NaN for classes without ground truth);
        and `dropped_annotations` / `skipped_images`, the dataset's counts by kind of what its
        reader left out (not scored; see `format_not_scored`).
    """
    results = detections_to_coco(dataset, detections)
    if results_file is not None:
        with open(results_file, "w") as f:
            json.dump(results, f)

    coco_class, coco_eval_class = _coco_api(coco_backend)
    num_classes = dataset.num_classes
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = _load_ground_truth(coco_class, dataset)
        if results:
            evaluator = coco_eval_class(ground_truth, ground_truth.loadRes(results), "bbox")
            evaluator.params.imgIds = sorted(int(r.image_id) for r in dataset.records)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
    if results:
        out = {name: float(v) for name, v in zip(COCO_STAT_NAMES, evaluator.stats)}
        per_class_ap, per_class_ap50 = _per_class_ap(evaluator, category_ids(dataset))
    else:
        out = {name: 0.0 for name in COCO_STAT_NAMES}
        per_class_ap = per_class_ap50 = np.zeros(num_classes)

    matched = metrics.match_dataset(dataset, detections, iou_threshold=0.5)
    curves = metrics.precision_recall_curves(*matched)
    summary = metrics.best_f1_summary(curves)
    out.update({k: v for k, v in summary.items() if not k.startswith("per_class")})
    no_gt = ~curves["has_gt"]
    out["per_class"] = {
        "AP": np.where(no_gt, np.nan, per_class_ap),
        "AP50": np.where(no_gt, np.nan, per_class_ap50),
        "precision": summary.get("per_class_precision", np.full(num_classes, np.nan)),
        "recall": summary.get("per_class_recall", np.full(num_classes, np.nan)),
        "num_gt": curves["num_gt"],
    }
    out["dropped_annotations"] = dict(dataset.dropped_annotations)
    out["skipped_images"] = dict(dataset.skipped_images)
    if verbose:
        print(format_coco_table(out))
        print(format_per_class_table(out, dataset.class_names))
        if format_not_scored(out):
            print(format_not_scored(out))
    if plot_dir is not None:
        from keras_yolov7.evaluation import plots

        os.makedirs(plot_dir, exist_ok=True)
        plots.plot_pr_curves(curves, dataset.class_names, os.path.join(plot_dir, "PR_curve.png"))
        plots.plot_metric_confidence(
            curves, dataset.class_names, os.path.join(plot_dir, "F1_curve.png"), metric="f1"
        )
        plots.plot_confusion_matrix(
            metrics.confusion_matrix(dataset, detections),
            dataset.class_names,
            os.path.join(plot_dir, "confusion_matrix.png"),
        )
    return out


def _per_class_ap(evaluator, ids):
    """AP (0.5:0.95) and AP50 per class from COCOeval's precision array (area all, 100 dets)."""
    precision = np.asarray(evaluator.eval["precision"])  # (iou, recall, class, area, max dets)
    columns = {int(c): k for k, c in enumerate(evaluator.params.catIds)}
    ap = np.full(len(ids), np.nan)
    ap50 = np.full(len(ids), np.nan)
    for label, cat in enumerate(ids):
        if cat not in columns:
            continue
        p = precision[:, :, columns[cat], 0, -1]
        if (p > -1).any():
            ap[label] = p[p > -1].mean()
            ap50[label] = p[0][p[0] > -1].mean() if (p[0] > -1).any() else np.nan
    return ap, ap50


def format_coco_table(result):
    """COCO's standard 12-line summary of a result of `evaluate_detections`."""
    lines = []
    for name, (title, short, iou, area, max_dets) in zip(COCO_STAT_NAMES, COCO_STAT_LINES):
        lines.append(
            f" {title:<18} ({short}) @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ]"
            f" = {result[name]:0.3f}"
        )
    return "\n".join(lines)


def format_not_scored(result):
    """One line on what the dataset's reader left out of a result of `evaluate_detections`
    (annotations and images, with the reason of each), or "" when it left out nothing."""

    def listed(counts):
        return ", ".join(f"{count} {kind}" for kind, count in counts.items())

    parts = []
    dropped = result.get("dropped_annotations") or {}
    skipped = result.get("skipped_images") or {}
    if dropped:
        parts.append(f"{sum(dropped.values())} annotations ({listed(dropped)})")
    if skipped:
        parts.append(f"{sum(skipped.values())} images ({listed(skipped)})")
    if not parts:
        return ""
    return f"not scored, left out by the dataset reader: {'; '.join(parts)}"


def format_per_class_table(result, class_names):
    """Per-class table (ground truth count, P and R at best F1, AP50, AP) as text."""
    per_class = result["per_class"]
    width = max([len("all")] + [len(str(n)) for n in class_names])
    total = int(per_class["num_gt"].sum())
    lines = [
        f"{'class':>{width}} {'labels':>8} {'P':>7} {'R':>7} {'AP50':>7} {'AP':>7}",
        (
            f"{'all':>{width}} {total:>8d} {result['precision']:>7.3f} "
            f"{result['recall']:>7.3f} {result['mAP50']:>7.3f} {result['mAP']:>7.3f}"
        ),
    ]
    for c, name in enumerate(class_names):
        if per_class["num_gt"][c] == 0:
            continue
        lines.append(
            f"{name!s:>{width}} {int(per_class['num_gt'][c]):>8d} "
            f"{per_class['precision'][c]:>7.3f} {per_class['recall'][c]:>7.3f} "
            f"{per_class['AP50'][c]:>7.3f} {per_class['AP'][c]:>7.3f}"
        )
    return "\n".join(lines)
