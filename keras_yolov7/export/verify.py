"""Checks every export runs: exported outputs against the Keras model on the same images.

Figures (see docs/export.md):
- decoded: max abs difference of the pre-NMS candidates (boxes normalised to [0, 1], scores)
  between the exported model and `keras_yolov7.ops.decode_predictions` of the Keras model.
- nms: the exported model's in-graph NMS against a NumPy NMS of the same semantics run on the
  exported model's own candidates (counts and sorted scores per image).
- detections: agreement of the exported detections with NumPy NMS on the Keras model's
  candidates (recall / precision of matched detections, max box and score difference).
- threads (TFLite): the outputs at 1, 2 and 4 interpreter threads.
- mediapipe (TFLite "android"): MediaPipe's ObjectDetector against the interpreter.
- map (int8): mAP@0.5 of the int8 model next to the float model's on a validation set.
"""

import numpy as np

from keras_yolov7.evaluation.metrics import box_iou
from keras_yolov7.export.layout import BOX_UNITS
from keras_yolov7.export.layout import CLASS_SHIFT
from keras_yolov7.export.layout import NMS_BOX_RANGE

MATCH_IOU = 0.5
# Max abs difference of boxes (normalised) and scores allowed against the Keras model.
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2}
# The same TFLite model at another interpreter thread count: outputs may differ by float
# rounding at most (XNNPACK splits work across threads without reordering sums).
THREADS_TOLERANCE = 1e-5
# MediaPipe's ObjectDetector returns integer pixels: corner and size each truncated, so a right
# or bottom edge can be up to 2 pixels below the exact value.
MEDIAPIPE_BOX_TOLERANCE_PIXELS = 2.0
# int8 NMS against NumPy NMS on the same candidates: sorted kept scores may differ by score ties
# (about 13 int8 steps allowed); see formats._check_nms_figures.
INT8_NMS_TOLERANCE = 0.05
# Official evaluation settings, used for the int8-vs-float mAP comparison.
EVAL_SCORE_THRESHOLD = 0.001
EVAL_IOU_THRESHOLD = 0.65
EVAL_MAX_DETECTIONS = 300


class ExportVerificationError(RuntimeError):
    """An exported model disagrees with the Keras model beyond the format's tolerance."""


class NonBuiltinOpError(ValueError):
    """A TFLite model contains ops outside the builtin set (Flex / SELECT_TF_OPS or custom)."""


def synthetic_images(count, image_size, seed=0):
    """Deterministic sample images `(count, size, size, 3)` uint8: rectangles and discs on gray.

    Used when the caller gives no sample images: structured content makes the network produce
    varied boxes and scores (flat noise gives near-constant outputs and proves little).
    """
    rng = np.random.default_rng(seed)
    images = np.full((count, image_size, image_size, 3), 114, np.uint8)
    yy, xx = np.mgrid[:image_size, :image_size]
    for image in images:
        for _ in range(6):
            color = rng.integers(0, 256, 3)
            x0, y0 = rng.integers(0, image_size, 2)
            w, h = rng.integers(image_size // 10, image_size // 2, 2)
            if rng.random() < 0.5:
                image[y0 : y0 + h, x0 : x0 + w] = color
            else:
                disc = (xx - x0) ** 2 / (w / 2) ** 2 + (yy - y0) ** 2 / (h / 2) ** 2 <= 1
                image[disc] = color
    return images


def reference_candidates(raw, anchors, strides, image_size, clip=True):
    """Keras-side candidates from raw lead logits, in the exports' conventions.

    Args:
        raw: list of per-level logits `(batch, H_l, W_l, num_anchors, 5 + C)` (NumPy).
        anchors, strides: the model's anchors `(levels, anchors, 2)` pixels and strides.
        image_size: the square input size in pixels.
        clip: clip the boxes to [0, 1] (what the exports output; in-graph NMS of float models
            compares unclipped boxes).

    Returns:
        boxes `(batch, N, 4)` xyxy normalised to the input size, scores `(batch, N, C)`.
    """
    from keras import ops

    from keras_yolov7.ops import decode_predictions

    decoded = ops.convert_to_numpy(decode_predictions(raw, anchors, strides)).astype(np.float64)
    xy, wh = decoded[..., 0:2], decoded[..., 2:4]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], -1) / image_size
    if clip:
        boxes = np.clip(boxes, 0.0, 1.0)
    scores = decoded[..., 5:] * decoded[..., 4:5]
    return boxes, scores


def nms_view(boxes):
    """Normalised boxes as the in-graph NMS sees them: clamped to `NMS_BOX_RANGE` and rounded to
    1 / BOX_UNITS."""
    return np.round(np.clip(boxes, *NMS_BOX_RANGE) * BOX_UNITS) / BOX_UNITS


def decoded_difference(boxes, scores, ref_boxes, ref_scores):
    """`{"boxes_max_abs_diff", "scores_max_abs_diff"}` between exported and Keras candidates."""
    boxes, scores = np.asarray(boxes, np.float64), np.asarray(scores, np.float64)
    if boxes.shape != ref_boxes.shape or scores.shape != ref_scores.shape:
        raise ExportVerificationError(
            f"exported candidates have shapes {boxes.shape} / {scores.shape}; expected "
            f"{ref_boxes.shape} / {ref_scores.shape} as the Keras model"
        )
    return {
        "boxes_max_abs_diff": float(np.abs(boxes - ref_boxes).max()),
        "scores_max_abs_diff": float(np.abs(scores - ref_scores).max()),
    }


def _greedy_nms(boxes, scores, iou_threshold, limit):
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size and len(keep) < limit:
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[box_iou(boxes[best], boxes[order])[0] < iou_threshold]
    return np.asarray(keep, np.int64)


def reference_nms(boxes, scores, max_detections, iou_threshold, score_threshold):
    """NumPy NMS with the exports' semantics (those of `predict()`), for one image.

    Each candidate keeps its best class; boxes are clamped, integerised and shifted per class
    exactly as the in-graph V4 / V5 NMS does, so boxes of different classes never suppress each
    other; the kept boxes are clipped to [0, 1] after the NMS.

    Args:
        boxes: `(N, 4)` normalised boxes, unclipped (as the float in-graph NMS compares them) or
            clipped (int8); any corner order: IoU is symmetric in it.
        scores: `(N, C)` scores.

    Returns:
        dict of boxes `(K, 4)` clipped to [0, 1], scores `(K,)`, classes `(K,)` sorted by
        descending score.
    """
    boxes, scores = np.asarray(boxes, np.float64), np.asarray(scores, np.float64)
    best = scores.max(-1)
    classes = scores.argmax(-1)
    candidates = np.flatnonzero(best > score_threshold)
    fixed = nms_view(boxes[candidates]) * BOX_UNITS
    fixed[:, 2:] = np.maximum(fixed[:, 2:], fixed[:, :2] + 1)  # as the graph: no zero-area box
    shifted = fixed + classes[candidates, None] * CLASS_SHIFT
    index = candidates[_greedy_nms(shifted, best[candidates], iou_threshold, max_detections)]
    return {
        "boxes": np.clip(boxes[index], 0.0, 1.0),
        "scores": best[index],
        "classes": classes[index],
    }


def detection_agreement(detections, references):
    """Agreement of exported detections with reference detections over a list of images.

    Each reference detection is matched one-to-one (greedy by score) to the exported detection
    of the same class with the highest IoU, if that IoU is at least 0.5.

    Returns:
        dict: "reference_detections", "exported_detections", "recall" (matched / reference),
        "precision" (matched / exported), "boxes_max_abs_diff" and "scores_max_abs_diff" over
        matched pairs (0.0 when nothing matched).
    """
    total_ref = total_got = matched = 0
    box_diff = score_diff = 0.0
    for got, ref in zip(detections, references):
        total_ref += len(ref["scores"])
        total_got += len(got["scores"])
        free = np.ones(len(got["scores"]), bool)
        for box, score, cls in zip(ref["boxes"], ref["scores"], ref["classes"]):
            same = np.flatnonzero(free & (np.asarray(got["classes"]) == cls))
            if not same.size:
                continue
            ious = box_iou(np.asarray(box), np.asarray(got["boxes"])[same])[0]
            pick = int(np.argmax(ious))
            if ious[pick] < MATCH_IOU:
                continue
            j = same[pick]
            free[j] = False
            matched += 1
            box_diff = max(box_diff, float(np.abs(np.asarray(got["boxes"][j]) - box).max()))
            score_diff = max(score_diff, float(abs(got["scores"][j] - score)))
    return {
        "reference_detections": total_ref,
        "exported_detections": total_got,
        "recall": matched / total_ref if total_ref else 1.0,
        "precision": matched / total_got if total_got else 1.0,
        "boxes_max_abs_diff": box_diff,
        "scores_max_abs_diff": score_diff,
    }


def same_detections(got, expected, box_tolerance, score_tolerance):
    """How many detections two runtimes share, whatever order they return equal scores in.

    A detection of `expected` is found in `got` when `got` has an unmatched detection of the same
    class whose box corners and score are within the tolerances (in the boxes' own unit).

    Returns:
        dict: "expected_detections", "got_detections", "matched".
    """
    total_expected = total_got = matched = 0
    for found, reference in zip(got, expected):
        total_expected += len(reference["scores"])
        total_got += len(found["scores"])
        free = np.ones(len(found["scores"]), bool)
        boxes, scores = np.asarray(found["boxes"]), np.asarray(found["scores"])
        for box, score, cls in zip(reference["boxes"], reference["scores"], reference["classes"]):
            close = (
                free
                & (np.asarray(found["classes"]) == cls)
                & (np.abs(scores - score) <= score_tolerance)
                & (np.abs(boxes - box).max(axis=-1, initial=0.0) <= box_tolerance)
            )
            if close.any():
                free[np.argmax(close)] = False
                matched += 1
    return {"expected_detections": total_expected, "got_detections": total_got, "matched": matched}


def nms_consistency(detections, references):
    """Whether an exported NMS kept what the NumPy NMS keeps from the same candidates.

    Compares per image the number of detections and the sorted scores: the NMS kernels break
    score ties in their own order, which can swap equal-score boxes but leaves counts and score
    lists alone.

    Returns:
        dict: "images", "count_mismatches" (images whose counts differ),
        "sorted_scores_max_abs_diff" (over images with equal counts).
    """
    mismatches, diff = 0, 0.0
    for got, ref in zip(detections, references):
        if len(got["scores"]) != len(ref["scores"]):
            mismatches += 1
        elif len(ref["scores"]):
            diff = max(diff, float(np.abs(np.sort(got["scores"]) - np.sort(ref["scores"])).max()))
    return {
        "images": len(references),
        "count_mismatches": mismatches,
        "sorted_scores_max_abs_diff": diff,
    }


def unpack_detections(outputs):
    """Per-image detection dicts from padded `boxes`, `scores`, `classes`, `count` outputs."""
    images = []
    for b in range(len(outputs["count"])):
        n = int(np.asarray(outputs["count"][b]).reshape(()))
        images.append(
            {
                "boxes": np.asarray(outputs["boxes"][b][:n], np.float64),
                "scores": np.asarray(outputs["scores"][b][:n], np.float64),
                "classes": np.asarray(outputs["classes"][b][:n]).astype(np.int64),
            }
        )
    return images


def check(figures, tolerance, what):
    """Raise `ExportVerificationError` when a max-abs-diff figure exceeds `tolerance`."""
    for name, value in figures.items():
        if name.endswith("max_abs_diff") and not value <= tolerance:
            raise ExportVerificationError(
                f"{what}: {name} is {value:.3g}, above the tolerance {tolerance:g}"
            )


def map_comparison(dataset, float_detections, int8_detections):
    """COCO mAP of float and int8 detections on the same images.

    Args:
        dataset: the `DetectionDataset` holding the ground truth.
        float_detections, int8_detections: lists of `{"image_id", "boxes" (N, 4) xyxy original
            pixels, "scores" (N,), "labels" (N,)}` for the same images.

    Returns:
        dict: "images", "float_mAP50", "int8_mAP50", "mAP50_drop_points" (float minus int8,
        in percentage points), "float_mAP", "int8_mAP" (0.5:0.95).
    """
    from keras_yolov7.evaluation import evaluate_detections  # written by the evaluation task

    float_metrics = evaluate_detections(dataset, float_detections)
    int8_metrics = evaluate_detections(dataset, int8_detections)
    return {
        "images": len(float_detections),
        "float_mAP50": float(float_metrics["mAP50"]),
        "int8_mAP50": float(int8_metrics["mAP50"]),
        "mAP50_drop_points": 100.0 * float(float_metrics["mAP50"] - int8_metrics["mAP50"]),
        "float_mAP": float(float_metrics["mAP"]),
        "int8_mAP": float(int8_metrics["mAP"]),
    }
