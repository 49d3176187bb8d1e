"""Per-class detection metrics in NumPy: COCO-style matching, PR / F1 curves, confusion matrix.

pycocotools gives the headline numbers (`coco.py`); this module gives what it does not expose in
a usable form: per-class precision-recall and metric-confidence curves (for plots and the
precision / recall at the best-F1 confidence, as the official YOLOv7 reports them) and a
confusion matrix. Matching follows COCOeval exactly at one IoU threshold (greedy by score, each
ground truth used once, crowd boxes absorb detections without counting), so the AP computed from
these curves equals pycocotools' per-class AP at that threshold.
"""

import numpy as np

RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
CONFIDENCE_GRID = np.linspace(0.0, 1.0, 1000)


def box_iou(boxes1, boxes2, crowd=None):
    """IoU of `(N, 4)` xyxy boxes with `(M, 4)` xyxy boxes -> `(N, M)`.

    Where `crowd[m]` is true the second box is a crowd region and, as in COCO, the overlap is
    measured as intersection over the area of the first box alone.
    """
    boxes1 = np.asarray(boxes1, np.float64).reshape(-1, 4)
    boxes2 = np.asarray(boxes2, np.float64).reshape(-1, 4)
    lo = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    hi = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area1 = np.prod(np.clip(boxes1[:, 2:] - boxes1[:, :2], 0, None), axis=-1)[:, None]
    area2 = np.prod(np.clip(boxes2[:, 2:] - boxes2[:, :2], 0, None), axis=-1)[None, :]
    union = area1 + area2 - inter
    if crowd is not None:
        union = np.where(np.asarray(crowd, bool)[None, :], area1, union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_image(boxes, scores, gt_boxes, gt_crowd, iou_threshold=0.5, max_detections=100):
    """COCOeval's greedy matching for one image and one class.

    Args:
        boxes: `(N, 4)` detection boxes, xyxy pixels.
        scores: `(N,)` detection scores.
        gt_boxes: `(M, 4)` ground-truth boxes, xyxy pixels.
        gt_crowd: `(M,)` bool; crowd boxes are ignored ground truth.
        iou_threshold: minimum IoU for a match.
        max_detections: only the best-scoring detections count, as COCO's `maxDets`.

    Returns:
        `(order, true_positive, ignored)`: indices of the detections that count (by descending
        score) and, for each, whether it matched a regular ground truth and whether it matched
        a crowd box (ignored: neither true nor false positive).
    """
    order = np.argsort(-np.asarray(scores), kind="mergesort")[:max_detections]
    crowd = np.asarray(gt_crowd, bool)
    gt_order = np.argsort(crowd, kind="mergesort")  # regular boxes first, as COCO sorts them
    crowd = crowd[gt_order]
    ious = box_iou(np.asarray(boxes)[order], np.asarray(gt_boxes)[gt_order], crowd)
    used = np.zeros(len(gt_order), bool)
    true_positive = np.zeros(len(order), bool)
    ignored = np.zeros(len(order), bool)
    for d in range(len(order)):
        best, match = min(iou_threshold, 1 - 1e-10), -1
        for g in range(len(gt_order)):
            if used[g] and not crowd[g]:
                continue
            if match > -1 and not crowd[match] and crowd[g]:
                break
            if ious[d, g] < best:
                continue
            best, match = ious[d, g], g
        if match > -1:
            used[match] = True
            ignored[d] = crowd[match]
            true_positive[d] = not crowd[match]
    return order, true_positive, ignored


def match_dataset(dataset, detections, iou_threshold=0.5, max_detections=100):
    """Match every image's detections to its ground truth, class by class.

    Args:
        dataset: a `DetectionDataset` (ground truth in original-image pixels).
        detections: list of dicts `{"image_id", "boxes" (N, 4) xyxy original pixels,
            "scores" (N,), "labels" (N,) contiguous class indices}`.
        iou_threshold: IoU for a true positive.
        max_detections: per image and class, as COCO's `maxDets`.

    Returns:
        `(scores, true_positive, labels, num_gt)`: the counted (non-ignored) detections of the
        whole dataset and `(num_classes,)` counts of regular ground-truth boxes.
    """
    by_image = {int(d["image_id"]): d for d in detections}
    scores, hits, labels = [], [], []
    num_gt = np.zeros(dataset.num_classes, np.int64)
    for record in dataset.records:
        regular = ~record.crowd
        num_gt += np.bincount(record.labels[regular], minlength=dataset.num_classes)
        found = by_image.get(int(record.image_id))
        if found is None:
            continue
        det_labels = np.asarray(found["labels"]).reshape(-1)
        det_boxes = np.asarray(found["boxes"]).reshape(-1, 4)
        det_scores = np.asarray(found["scores"]).reshape(-1)
        for c in np.unique(det_labels):
            mine = det_labels == c
            gt = record.labels == c
            order, tp, ignored = match_image(
                det_boxes[mine],
                det_scores[mine],
                record.boxes[gt],
                record.crowd[gt],
                iou_threshold,
                max_detections,
            )
            scores.append(det_scores[mine][order][~ignored])
            hits.append(tp[~ignored])
            labels.append(np.full(int((~ignored).sum()), c, np.int64))
    if not scores:
        return np.zeros(0), np.zeros(0, bool), np.zeros(0, np.int64), num_gt
    return np.concatenate(scores), np.concatenate(hits), np.concatenate(labels), num_gt


def interpolated_precision(recall, precision):
    """COCO's precision at the 101 recall thresholds of one curve (detections by score).

    Precision is first made monotone (the envelope from the right); at each recall threshold
    the precision of the first point reaching it is taken, 0 where recall never reaches it.
    """
    if len(recall) == 0:
        return np.zeros(len(RECALL_THRESHOLDS))
    envelope = np.maximum.accumulate(np.asarray(precision)[::-1])[::-1]
    index = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
    return np.where(index < len(envelope), envelope[np.minimum(index, len(envelope) - 1)], 0.0)


def precision_recall_curves(scores, true_positive, labels, num_gt):
    """Per-class curves from matched detections (see `match_dataset`).

    Returns:
        A dict with, for `C` classes:
        - `"ap"` `(C,)`: 101-point AP at the matching IoU (NaN for classes without ground truth);
        - `"recall_grid"` `(101,)` and `"pr_precision"` `(C, 101)`: interpolated precision at
          each recall (the curve the AP averages);
        - `"confidence"` `(1000,)` and `"precision"`, `"recall"`, `"f1"` `(C, 1000)`: the
          metrics of the detections at or above each confidence;
        - `"num_gt"` `(C,)`, and `"has_gt"` `(C,)` bool.
    """
    num_classes = len(num_gt)
    ap = np.full(num_classes, np.nan)
    pr_precision = np.zeros((num_classes, len(RECALL_THRESHOLDS)))
    precision = np.zeros((num_classes, len(CONFIDENCE_GRID)))
    recall = np.zeros((num_classes, len(CONFIDENCE_GRID)))
    for c in range(num_classes):
        if num_gt[c] == 0:
            continue
        mine = labels == c
        order = np.argsort(-scores[mine], kind="mergesort")
        conf = scores[mine][order]
        tp = np.cumsum(true_positive[mine][order])
        fp = np.cumsum(~true_positive[mine][order])
        rec = tp / num_gt[c]
        prec = tp / np.maximum(tp + fp, 1)
        pr_precision[c] = interpolated_precision(rec, prec)
        ap[c] = pr_precision[c].mean()
        if len(conf):
            # Interpolate on descending confidence: x and xp negated to be increasing.
            recall[c] = np.interp(-CONFIDENCE_GRID, -conf, rec, left=0)
            precision[c] = np.interp(-CONFIDENCE_GRID, -conf, prec, left=1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-16)
    return {
        "ap": ap,
        "recall_grid": RECALL_THRESHOLDS,
        "pr_precision": pr_precision,
        "confidence": CONFIDENCE_GRID,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "num_gt": np.asarray(num_gt),
        "has_gt": np.asarray(num_gt) > 0,
    }


def best_f1_summary(curves):
    """Precision, recall and F1 at the confidence maximising the mean F1 over classes with GT.

    Returns a dict of scalars `precision`, `recall`, `f1`, `best_f1_confidence` (means over the
    classes with ground truth) and per-class `(C,)` arrays under `per_class_precision`,
    `per_class_recall`.
    """
    has_gt = curves["has_gt"]
    if not has_gt.any():
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "best_f1_confidence": 0.0}
    mean_f1 = curves["f1"][has_gt].mean(0)
    i = int(np.argmax(mean_f1))
    return {
        "precision": float(curves["precision"][has_gt, i].mean()),
        "recall": float(curves["recall"][has_gt, i].mean()),
        "f1": float(mean_f1[i]),
        "best_f1_confidence": float(curves["confidence"][i]),
        "per_class_precision": np.where(has_gt, curves["precision"][:, i], np.nan),
        "per_class_recall": np.where(has_gt, curves["recall"][:, i], np.nan),
    }


def confusion_matrix(dataset, detections, confidence_threshold=0.25, iou_threshold=0.45):
    """Counts of predicted vs true classes, with a background row and column.

    Per image, detections with score >= `confidence_threshold` and regular ground-truth boxes
    are paired one-to-one by descending IoU (above `iou_threshold`, any classes). Detections
    left over that overlap a crowd box that much are ignored, like COCO.

    Returns:
        `(C + 1, C + 1)` int64 matrix `M[predicted, true]`; index C is background:
        `M[C, t]` ground truths of class t nobody detected, `M[p, C]` detections of class p
        with no ground truth.
    """
    num_classes = dataset.num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    by_image = {int(d["image_id"]): d for d in detections}
    for record in dataset.records:
        found = by_image.get(int(record.image_id), {})
        scores = np.asarray(found.get("scores", np.zeros(0))).reshape(-1)
        keep = scores >= confidence_threshold
        det_boxes = np.asarray(found.get("boxes", np.zeros((0, 4)))).reshape(-1, 4)[keep]
        det_labels = np.asarray(found.get("labels", np.zeros(0)), np.int64).reshape(-1)[keep]
        regular = ~record.crowd
        gt_boxes, gt_labels = record.boxes[regular], record.labels[regular]

        ious = box_iou(gt_boxes, det_boxes)
        gt_used = np.zeros(len(gt_boxes), bool)
        det_used = np.zeros(len(det_boxes), bool)
        pairs = np.argwhere(ious > iou_threshold)
        for g, d in pairs[np.argsort(-ious[pairs[:, 0], pairs[:, 1]], kind="mergesort")]:
            if not gt_used[g] and not det_used[d]:
                gt_used[g] = det_used[d] = True
                matrix[det_labels[d], gt_labels[g]] += 1
        np.add.at(matrix, (num_classes, gt_labels[~gt_used]), 1)

        crowd_boxes = record.boxes[record.crowd]
        in_crowd = np.zeros(len(det_boxes), bool)
        if len(crowd_boxes):
            in_crowd = (
                box_iou(det_boxes, crowd_boxes, np.ones(len(crowd_boxes), bool)) > iou_threshold
            ).any(1)
        np.add.at(matrix, (det_labels[~det_used & ~in_crowd], num_classes), 1)
    return matrix
