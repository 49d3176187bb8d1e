"""Batched NMS and post-processing against a plain NumPy greedy reference, on every backend."""

import keras
import numpy as np
import pytest

from keras_yolov7.ops import boxes_to_original
from keras_yolov7.ops import decode_predictions
from keras_yolov7.ops import non_max_suppression
from keras_yolov7.ops import postprocess

BACKEND = keras.backend.backend()
ANCHORS = np.array(
    [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "float32",
).reshape(3, 3, 2)
STRIDES = (8, 16, 32)


# --- NumPy reference: the official algorithm, written as plainly as possible -----------------


def iou(box, others):
    """IoU of one xyxy box with each of `(n, 4)` others."""
    lo = np.maximum(box[:2], others[:, :2])
    hi = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    return inter / (area + np.prod(others[:, 2:] - others[:, :2], axis=1) - inter)


def reference_nms(boxes, scores, labels, iou_threshold, score_threshold, max_detections):
    """Indices kept by greedy NMS: by score (ties: lower index first), same-label suppression."""
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > score_threshold]
    kept = []
    for i in order:
        rivals = [j for j in kept if labels[j] == labels[i]]
        if not rivals or np.all(iou(boxes[i], boxes[rivals]) <= iou_threshold):
            kept.append(i)
            if len(kept) == max_detections:
                break
    return kept


def reference_postprocess(decoded, conf, iou_threshold, max_det, multi_label, top_k):
    """One image of `decode_predictions` output -> (boxes, scores, labels) like official YOLOv7."""
    xy, wh = decoded[:, :2], decoded[:, 2:4]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], -1)
    scores = decoded[:, 4:5] * decoded[:, 5:]
    if multi_label:
        rows, cols = np.nonzero(scores > conf)
        cand_boxes, cand_scores, cand_labels = boxes[rows], scores[rows, cols], cols
    else:
        best = scores.max(1)
        keep = best > conf
        cand_boxes, cand_scores = boxes[keep], best[keep]
        cand_labels = scores.argmax(1)[keep]
    if len(cand_scores) > top_k:
        first = np.sort(np.argsort(-cand_scores, kind="stable")[:top_k])
        cand_boxes, cand_scores, cand_labels = (
            cand_boxes[first],
            cand_scores[first],
            cand_labels[first],
        )
    kept = reference_nms(cand_boxes, cand_scores, cand_labels, iou_threshold, conf, max_det)
    return cand_boxes[kept], cand_scores[kept], cand_labels[kept]


# --- helpers ---------------------------------------------------------------------------------


def fast(fn):
    """JAX compiles every eager while loop anew; jit once per configuration instead."""
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    return fn


def numpy_dict(out):
    return {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}


def random_boxes(rng, batch, k, extent=100.0):
    xy = rng.uniform(0, extent, (batch, k, 2))
    wh = rng.uniform(5, 40, (batch, k, 2))
    return np.concatenate([xy, xy + wh], -1).astype("float32")


def check_against_reference(out, b, boxes, scores, labels, max_det):
    n = int(out["num_detections"][b])
    assert n == len(scores)
    np.testing.assert_array_equal(out["confidence"][b, :n], scores)
    np.testing.assert_array_equal(out["labels"][b, :n], labels)
    np.testing.assert_allclose(out["boxes"][b, :n], boxes, atol=1e-4)
    # Padding rows are -1 everywhere.
    assert np.all(out["confidence"][b, n:] == -1)
    assert np.all(out["labels"][b, n:] == -1)
    assert np.all(out["boxes"][b, n:] == -1)
    assert out["boxes"].shape == (len(out["num_detections"]), max_det, 4)


def random_raw(rng, batch, size, num_classes, obj_mean=0.0, scale=2.0):
    outputs = []
    for stride in STRIDES:
        n = size // stride
        raw = rng.normal(0, 1, (batch, n, n, 3, 5 + num_classes)).astype("float32")
        raw[..., 4:] = rng.normal(obj_mean, scale, raw[..., 4:].shape)
        outputs.append(raw)
    return outputs


# --- non_max_suppression ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "tile_size, max_det, threshold", [(16, 10, 0.3), (37, 200, 0.5), (256, 40, 0.7)]
)
def test_nms_matches_reference_on_random_boxes(tile_size, max_det, threshold):
    run = fast(
        lambda b, s, c: non_max_suppression(b, s, c, threshold, 0.1, max_det, tile_size=tile_size)
    )
    for seed in range(8):
        rng = np.random.default_rng(seed)
        batch, k = 3, 150
        boxes = random_boxes(rng, batch, k)
        scores = rng.uniform(0, 1, (batch, k)).astype("float32")
        labels = rng.integers(0, 3, (batch, k)).astype("int32")
        out = numpy_dict(run(boxes, scores, labels))
        for b in range(batch):
            kept = reference_nms(boxes[b], scores[b], labels[b], threshold, 0.1, max_det)
            check_against_reference(
                out, b, boxes[b][kept], scores[b][kept], labels[b][kept], max_det
            )


def test_nms_is_class_aware_unless_agnostic():
    # Two identical boxes of different classes and a third overlapping the first of class 0.
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10]]], "float32")
    scores = np.array([[0.9, 0.8, 0.7]], "float32")
    labels = np.array([[0, 1, 0]], "int32")
    aware = numpy_dict(non_max_suppression(boxes, scores, labels, 0.5, 0.0, 5))
    assert aware["num_detections"][0] == 2
    np.testing.assert_array_equal(aware["labels"][0, :2], [0, 1])
    agnostic = numpy_dict(
        non_max_suppression(boxes, scores, labels, 0.5, 0.0, 5, class_agnostic=True)
    )
    assert agnostic["num_detections"][0] == 1
    np.testing.assert_array_equal(agnostic["labels"][0, :1], [0])
    run = fast(lambda b, s, c: non_max_suppression(b, s, c, 0.4, 0.0, 80, class_agnostic=True))
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        boxes = random_boxes(rng, 2, 80, extent=40)
        scores = rng.uniform(0, 1, (2, 80)).astype("float32")
        labels = rng.integers(0, 4, (2, 80)).astype("int32")
        out = numpy_dict(run(boxes, scores, labels))
        for b in range(2):
            kept = reference_nms(boxes[b], scores[b], np.zeros(80), 0.4, 0.0, 80)
            check_against_reference(out, b, boxes[b][kept], scores[b][kept], labels[b][kept], 80)


def test_nms_breaks_ties_by_lower_index():
    # Quantised scores make many exact ties between near-copies of the same boxes, so the tie
    # decides which copy survives (and the copies differ, so the output shows it).
    def nms(b, s, c):
        return non_max_suppression(b, s, c, 0.5, 0.0, 120, tile_size=32)

    runners = [fast(nms)]
    if BACKEND == "tensorflow":
        runners.append(compile_fn(nms))
    for seed in range(6):
        rng = np.random.default_rng(200 + seed)
        base = random_boxes(rng, 1, 20, extent=60)
        boxes = base[:, rng.integers(0, 20, 120)] + rng.uniform(-1, 1, (1, 120, 4))
        boxes = boxes.astype("float32")
        scores = (rng.integers(1, 6, (1, 120)) / 5).astype("float32")
        labels = rng.integers(0, 2, (1, 120)).astype("int32")
        kept = reference_nms(boxes[0], scores[0], labels[0], 0.5, 0.0, 120)
        assert kept != sorted(kept)  # order is by score, not index
        for run in runners:
            out = numpy_dict(run(boxes, scores, labels))
            check_against_reference(out, 0, boxes[0][kept], scores[0][kept], labels[0][kept], 120)


def test_nms_threshold_is_strict_and_empty_input_gives_padding():
    boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 5], [50, 50, 60, 60]]], "float32")
    scores = np.array([[0.9, 0.8, 0.2]], "float32")
    # IoU of the first two is exactly 0.5: not above 0.5, so both stay.
    # Thresholds as arguments: one compilation on JAX for the three calls.
    run = fast(lambda b, s, iou, conf: non_max_suppression(b, s, None, iou, conf, 4))
    out = numpy_dict(run(boxes, scores, 0.5, 0.2))
    assert out["num_detections"][0] == 2  # the third box has score == threshold: ignored
    assert out["boxes"].shape == (1, 4, 4)
    np.testing.assert_array_equal(out["labels"][0], [0, 0, -1, -1])
    out = numpy_dict(run(boxes, scores, 0.49, 0.0))
    np.testing.assert_array_equal(out["confidence"][0], np.float32([0.9, 0.2, -1, -1]))
    empty = numpy_dict(run(boxes, scores, 0.5, 0.95))
    assert empty["num_detections"][0] == 0
    assert np.all(empty["boxes"] == -1) and np.all(empty["labels"] == -1)


# --- postprocess -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "multi_label, conf, iou_threshold, top_k",
    [(True, 0.001, 0.65, 3000), (False, 0.25, 0.45, 3000), (True, 0.05, 0.5, 40)],
    ids=["evaluation", "detection", "top_k_binds"],
)
def test_postprocess_matches_reference(multi_label, conf, iou_threshold, top_k):
    num_classes, size, max_det = 4, 64, 30
    run = fast(
        lambda raw: postprocess(
            raw,
            ANCHORS,
            STRIDES,
            num_classes,
            conf,
            iou_threshold,
            max_det,
            multi_label=multi_label,
            pre_nms_top_k=top_k,
            tile_size=64,
        )
    )
    for seed in range(4):
        rng = np.random.default_rng(300 + seed)
        raw = random_raw(rng, 2, size, num_classes, obj_mean=-1.0)
        out = numpy_dict(run(raw))
        decoded = keras.ops.convert_to_numpy(decode_predictions(raw, ANCHORS, STRIDES))
        for b in range(2):
            expected = reference_postprocess(
                decoded[b], conf, iou_threshold, max_det, multi_label, top_k
            )
            assert len(expected[1]) > 0
            check_against_reference(out, b, *expected, max_det)


def test_postprocess_multi_label_gives_one_row_per_class():
    # One confident box whose two classes both pass: two detections with the same box.
    num_classes = 3
    raw = [np.full((1, 64 // s, 64 // s, 3, 5 + num_classes), -20.0, "float32") for s in STRIDES]
    raw[0][0, 2, 3, 1, :4] = 0.0
    raw[0][0, 2, 3, 1, 4] = 5.0
    raw[0][0, 2, 3, 1, 5:] = [3.0, -20.0, 2.0]
    multi = numpy_dict(postprocess(raw, ANCHORS, STRIDES, 3, 0.25, 0.45, 5, multi_label=True))
    best = numpy_dict(postprocess(raw, ANCHORS, STRIDES, 3, 0.25, 0.45, 5, multi_label=False))
    assert multi["num_detections"][0] == 2 and best["num_detections"][0] == 1
    np.testing.assert_array_equal(multi["labels"][0, :2], [0, 2])
    np.testing.assert_array_equal(multi["boxes"][0, 0], multi["boxes"][0, 1])
    # Decoded by hand: sigmoid(0) = 0.5 -> centre (3 + 0.5, 2 + 0.5) * 8, size anchor * 1.
    np.testing.assert_allclose(best["boxes"][0, 0], [28 - 8, 20 - 15, 28 + 8, 20 + 15], atol=1e-4)
    obj = 1 / (1 + np.exp(-5.0))
    np.testing.assert_allclose(best["confidence"][0, 0], obj / (1 + np.exp(-3.0)), rtol=1e-6)


def test_postprocess_letterbox_metadata_and_formats():
    rng = np.random.default_rng(7)
    raw = random_raw(rng, 2, 64, 2, obj_mean=-1.0)
    scale = np.array([0.5, 2.0], "float32")
    pad = np.array([[4.0, 0.0], [0.0, 8.0]], "float32")
    size = np.array([[100, 120], [24, 32]], "int32")
    base = numpy_dict(fast(lambda r: postprocess(r, ANCHORS, STRIDES, 2))(raw))
    mapped = numpy_dict(
        fast(
            lambda r, s, p, o: postprocess(r, ANCHORS, STRIDES, 2, scale=s, pad=p, original_size=o)
        )(raw, scale, pad, size)
    )
    for b in range(2):
        n = base["num_detections"][b]
        assert n > 0 and mapped["num_detections"][b] == n
        expected = (base["boxes"][b, :n] - np.tile(pad[b], 2)) / scale[b]
        expected = np.clip(expected, 0, np.array([size[b, 1], size[b, 0]] * 2))
        np.testing.assert_allclose(mapped["boxes"][b, :n], expected, rtol=1e-5, atol=1e-4)
        assert np.all(mapped["boxes"][b, n:] == -1)
    assert np.any(base["boxes"][1, : base["num_detections"][1]] > 32)  # clipping mattered

    unclipped = keras.ops.convert_to_numpy(boxes_to_original(base["boxes"], scale, pad))
    np.testing.assert_allclose(
        unclipped[0, :1], (base["boxes"][0, :1] - np.tile(pad[0], 2)) / scale[0], rtol=1e-6
    )

    xywh = numpy_dict(
        fast(lambda r: postprocess(r, ANCHORS, STRIDES, 2, bounding_box_format="xywh"))(raw)
    )
    rel = numpy_dict(
        fast(lambda r: postprocess(r, ANCHORS, STRIDES, 2, bounding_box_format="rel_xyxy"))(raw)
    )
    n = base["num_detections"][0]
    b = base["boxes"][0, :n]
    np.testing.assert_allclose(xywh["boxes"][0, :n], np.c_[b[:, :2], b[:, 2:] - b[:, :2]], 1e-5)
    np.testing.assert_allclose(rel["boxes"][0, :n], b / 64.0, rtol=1e-6)
    assert np.all(xywh["boxes"][0, n:] == -1) and np.all(rel["boxes"][0, n:] == -1)


def test_postprocess_rejects_bad_arguments():
    raw = [np.zeros((1, 64 // s, 64 // s, 3, 7), "float32") for s in STRIDES]
    with pytest.raises(ValueError, match="7 channels per anchor but num_classes is 3"):
        postprocess(raw, ANCHORS, STRIDES, 3)
    with pytest.raises(ValueError, match="both scale and pad"):
        postprocess(raw, ANCHORS, STRIDES, 2, scale=np.ones(1))


# --- compilation -----------------------------------------------------------------------------


def compile_fn(fn):
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    pytest.skip("XLA compilation is checked on the TensorFlow and JAX backends")


@pytest.mark.parametrize("multi_label", [True, False])
def test_postprocess_compiles_with_xla(multi_label):
    rng = np.random.default_rng(11)
    raw = random_raw(rng, 2, 64, 3, obj_mean=-1.0)
    scale = np.array([0.5, 1.0], "float32")
    pad = np.array([[0.0, 16.0], [0.0, 0.0]], "float32")
    size = np.array([[96, 128], [64, 64]], "int32")

    def run(r0, r1, r2, scale, pad, size):
        return postprocess(
            [r0, r1, r2],
            ANCHORS,
            STRIDES,
            3,
            0.01,
            0.6,
            20,
            multi_label=multi_label,
            pre_nms_top_k=200,
            scale=scale,
            pad=pad,
            original_size=size,
            tile_size=48,
        )

    compiled = numpy_dict(compile_fn(run)(*raw, scale, pad, size))
    eager = numpy_dict(run(*raw, scale, pad, size))
    assert compiled["boxes"].shape == (2, 20, 4)
    assert np.all(eager["num_detections"] > 0)
    for key in eager:
        np.testing.assert_allclose(compiled[key], eager[key], rtol=1e-5, atol=1e-4)


def test_nms_compiles_with_xla():
    rng = np.random.default_rng(12)
    boxes = random_boxes(rng, 2, 100)
    scores = rng.uniform(0, 1, (2, 100)).astype("float32")
    labels = rng.integers(0, 2, (2, 100)).astype("int32")
    compiled = numpy_dict(
        compile_fn(lambda b, s, c: non_max_suppression(b, s, c, 0.5, 0.2, 50, tile_size=32))(
            boxes, scores, labels
        )
    )
    for b in range(2):
        kept = reference_nms(boxes[b], scores[b], labels[b], 0.5, 0.2, 50)
        check_against_reference(compiled, b, boxes[b][kept], scores[b][kept], labels[b][kept], 50)
