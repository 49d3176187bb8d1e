"""YOLOv7Loss: parity with the official ComputeLossOTA / ComputeLossAuxOTA, compilation, robustness.

The parity fixtures `tests/fixtures/loss_*.npz` are the cases of `../shared/reference/loss_cases`
(official code, random logits), stored losslessly: each `pred_{i}` (official layout
`(batch, anchors, ny, nx, 5 + classes)`, float32) is kept as its little-endian bytes split into four
byte planes, `pred_{i}_planes` `(4, n)` uint8 plus `pred_{i}_shape`, which compresses below 5 MB;
every other array is unchanged.
"""

import math
import types

import keras
import numpy as np
import pytest
from conftest import FIXTURES
from keras import ops

from keras_yolov7.losses import OFFICIAL_GAINS
from keras_yolov7.losses import YOLOv7Loss
from keras_yolov7.losses import check_targets
from keras_yolov7.losses.target_checks import sanitize_targets

CASES = {
    "p5_tiny_160": "tiny",
    "p5_yolov7_160": "p5",
    "p5_tiny_nc3_smooth_192": "tiny",
    "p6_w6_aux_256": "p6",
}
MAX_BOXES = 12


def load_case(name):
    data = np.load(FIXTURES / f"loss_{name}.npz")
    case = {k: data[k] for k in data.files if not k.startswith("pred_")}
    preds, i = [], 0
    while f"pred_{i}_planes" in data.files:
        raw = np.frombuffer(data[f"pred_{i}_planes"].T.tobytes(), "<f4").reshape(data[f"pred_{i}_shape"])
        preds.append(np.ascontiguousarray(raw.transpose(0, 2, 3, 1, 4)))  # -> (B, ny, nx, na, no)
        i += 1
    case["preds"] = preds
    size, batch = int(case["image_size"]), preds[0].shape[0]
    boxes = -np.ones((batch, MAX_BOXES, 4), "float32")
    labels = -np.ones((batch, MAX_BOXES), "int32")
    targets = case["targets"].astype("float64")
    for b in range(batch):
        rows = targets[targets[:, 0] == b]
        centre, wh = rows[:, 2:4] * size, rows[:, 4:6] * size
        boxes[b, : len(rows)] = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)
        labels[b, : len(rows)] = rows[:, 1]
    case["y_true"] = {"boxes": boxes, "labels": labels}
    return case


def case_loss(case, family, **kwargs):
    num_levels = len(case["strides"])
    # The official loss takes boxes unclipped; some reference targets reach past the image border.
    config = dict(
        label_smoothing=float(case["label_smoothing"]),
        anchor_t=float(case["anchor_t"]),
        balance=np.round(case["balance"][:num_levels].astype("float64"), 6).tolist(),  # float32 in the file
        clip_boxes=False,
        **OFFICIAL_GAINS[family],
    )
    config.update(kwargs)
    return YOLOv7Loss(int(case["num_classes"]), case["anchors_px"], case["strides"], **config)


_COMPILED = {}


def components(loss, y_true, preds):
    """`loss.compute_components(y_true, preds)` plus `"call"`, the Keras `loss(y_true, preds)`.

    Jitted (and cached per configuration) on JAX, where eager execution compiles every operation
    on its own and takes far longer than one compilation.
    """

    def both(y, p):
        return {**loss.compute_components(y, p), "call": loss(y, p)}

    if keras.backend.backend() != "jax":
        return both(y_true, preds)
    import jax

    key = ("components", repr(sorted(loss.get_config().items())))
    if key not in _COMPILED:
        _COMPILED[key] = jax.jit(both)
    return _COMPILED[key](y_true, preds)


def objective_and_grad(loss, y_true, preds):
    """The training objective and its gradient w.r.t. each raw output (jitted on JAX, see above)."""
    if keras.backend.backend() != "jax":
        return value_and_grad(lambda p: loss.compute_components(y_true, p)["loss"], preds)
    import jax

    key = ("grad", repr(sorted(loss.get_config().items())))
    if key not in _COMPILED:
        clone = YOLOv7Loss.from_config(loss.get_config())
        _COMPILED[key] = jax.jit(jax.value_and_grad(lambda p, y: clone.compute_components(y, p)["loss"]))
    value, grads = _COMPILED[key](preds, y_true)
    return float(value), [np.asarray(g) for g in grads]


def items(result):
    return np.array([float(result[k]) for k in ("box", "obj", "cls", "total")])


def value_and_grad(fn, preds):
    """`fn(list of tensors) -> scalar` and its gradient w.r.t. each tensor, eagerly, on the backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        preds = [tf.constant(p) for p in preds]
        with tf.GradientTape() as tape:
            tape.watch(preds)
            value = fn(preds)
        return float(value), [g.numpy() for g in tape.gradient(value, preds)]
    if backend == "jax":
        import jax

        value, grads = jax.value_and_grad(fn)([jax.numpy.asarray(p) for p in preds])
        return float(value), [np.asarray(g) for g in grads]
    import torch

    preds = [torch.tensor(p, requires_grad=True) for p in preds]
    value = fn(preds)
    value.backward()
    return float(value), [p.grad.numpy() for p in preds]


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_official_loss(name):
    case = load_case(name)
    loss = case_loss(case, CASES[name])
    size = int(case["image_size"])
    np.testing.assert_allclose(
        [float(g) for g in loss.scaled_gains(size, size)],
        [case["hyp_box"], case["hyp_obj"], case["hyp_cls"]],
        rtol=1e-6,
    )
    result = components(loss, case["y_true"], case["preds"])
    np.testing.assert_allclose(items(result), case["loss_items"], rtol=1e-4)
    np.testing.assert_allclose(float(result["loss"]), float(case["loss"]), rtol=1e-4)
    np.testing.assert_allclose(float(result["call"]), float(case["loss"]), rtol=1e-4)
    assert (float(result["aux"]) > 0.0) == bool(case["aux"])


def test_from_detector_picks_the_family_gains():
    def detector(family, num_levels):
        anchors = np.ones((num_levels, 3, 2), "float32") * 10
        strides = (8, 16, 32, 64)[:num_levels]
        return types.SimpleNamespace(
            family=family, num_classes=3, anchors=anchors, strides=strides, num_levels=num_levels
        )

    tiny = YOLOv7Loss.from_detector(detector("tiny", 3), label_smoothing=0.1)
    assert (tiny.box, tiny.obj, tiny.cls, tiny.label_smoothing) == (0.05, 1.0, 0.5, 0.1)
    assert tiny.num_classes == 3 and tiny.strides == [8, 16, 32] and tiny.balance == [4.0, 1.0, 0.4]
    p5 = YOLOv7Loss.from_detector(detector("p5", 3))
    assert (p5.box, p5.obj, p5.cls) == (0.05, 0.7, 0.3)
    p6 = YOLOv7Loss.from_detector(detector("p6", 4))
    assert (p6.box, p6.obj, p6.cls) == (0.05, 0.7, 0.3) and p6.balance == [4.0, 1.0, 0.25, 0.06]
    assert [float(g) for g in p6.scaled_gains(1280, 1280)] == pytest.approx(
        [0.0375, 2.1, 0.3 * 3 / 80 * 0.75]
    )


def test_from_detector_reads_a_real_detector():
    if keras.backend.backend() == "jax":
        pytest.skip("building a detector eagerly on JAX compiles every initializer (~40 s); same Python")
    from keras_yolov7 import YOLOv7ObjectDetector

    case = load_case("p5_tiny_160")
    model = YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=80)
    loss = YOLOv7Loss.from_detector(model, clip_boxes=False)
    assert loss.get_config() == case_loss(case, "tiny").get_config()


def test_gradient_matches_finite_differences():
    case = load_case("p5_tiny_nc3_smooth_192")
    loss = case_loss(case, "tiny")
    y_true, preds = case["y_true"], case["preds"]
    value, grads = objective_and_grad(loss, y_true, preds)
    np.testing.assert_allclose(value, float(case["loss"]), rtol=1e-4)
    assert all(np.all(np.isfinite(g)) for g in grads)
    # The largest gradient entries (box and class logits of positives) and the largest objectness one.
    level = 0
    flat = np.abs(grads[level]).ravel()
    is_objectness = np.arange(flat.size) % grads[level].shape[-1] == 4
    picks = list(np.argsort(flat)[-4:]) + [int(np.argmax(np.where(is_objectness, flat, -1.0)))]
    eps = 1e-2
    for index in picks:
        shifted = []
        for sign in (1.0, -1.0):
            p = [x.copy() for x in preds]
            p[level].ravel()[index] += sign * eps
            shifted.append(float(components(loss, y_true, p)["loss"]))
        numeric = (shifted[0] - shifted[1]) / (2 * eps)
        np.testing.assert_allclose(grads[level].ravel()[index], numeric, rtol=2e-2, atol=2e-4)


def _compiled_step(loss):
    """Value and gradient of the objective under TF XLA (jit_compile=True) or jax.jit."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(preds, boxes, labels):
            with tf.GradientTape() as tape:
                tape.watch(preds)
                value = loss.compute_components({"boxes": boxes, "labels": labels}, preds)["loss"]
            return value, tape.gradient(value, preds)

        return lambda preds, y: step([tf.constant(p) for p in preds], y["boxes"], y["labels"])
    import jax

    return jax.jit(jax.value_and_grad(lambda preds, y: loss.compute_components(y, preds)["loss"]))


def _check_compiled_against_eager(name):
    case = load_case(name)
    loss = case_loss(case, CASES[name])
    eager_value, eager_grads = value_and_grad(
        lambda p: loss.compute_components(case["y_true"], p)["loss"], case["preds"]
    )
    value, grads = _compiled_step(loss)(case["preds"], case["y_true"])
    np.testing.assert_allclose(float(value), eager_value, rtol=1e-5)
    np.testing.assert_allclose(float(value), float(case["loss"]), rtol=1e-4)
    for compiled, eager in zip(grads, eager_grads, strict=True):
        assert np.all(np.isfinite(np.asarray(compiled)))
        np.testing.assert_allclose(np.asarray(compiled), eager, rtol=1e-4, atol=1e-7)


def test_compiled_value_and_gradient_match_eager():
    backend = keras.backend.backend()
    if backend == "torch":
        pytest.skip("torch trains eagerly (Inductor is not used); eager is what the other tests check")
    if backend == "jax":
        # Eager JAX compiles each of the loss's operations on its own (minutes); the slow variant
        # below compares with it. Here: jit against the official value and finite differences.
        case = load_case("p5_tiny_nc3_smooth_192")
        loss = case_loss(case, "tiny")
        value, grads = objective_and_grad(loss, case["y_true"], case["preds"])
        np.testing.assert_allclose(value, float(case["loss"]), rtol=1e-4)
        assert all(np.all(np.isfinite(g)) for g in grads)
        return
    _check_compiled_against_eager("p6_w6_aux_256")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["p5_tiny_nc3_smooth_192", "p6_w6_aux_256"])
def test_compiled_value_and_gradient_match_eager_slow(name):
    if keras.backend.backend() == "torch":
        pytest.skip("torch trains eagerly (Inductor is not used)")
    _check_compiled_against_eager(name)


def test_tensorflow_graph_with_unknown_shapes():
    """model.fit on TensorFlow without XLA traces with unknown batch, grid and max_boxes sizes."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow graph tracing")
    import tensorflow as tf

    case = load_case("p6_w6_aux_256")
    loss = case_loss(case, "p6")
    output_specs = [tf.TensorSpec((None, None, None, 3, 85), tf.float32) for _ in case["preds"]]
    target_specs = [tf.TensorSpec((None, None, 4), tf.float32), tf.TensorSpec((None, None), tf.int32)]

    @tf.function(input_signature=[output_specs, *target_specs])
    def total(preds, boxes, labels):
        return loss.compute_components({"boxes": boxes, "labels": labels}, preds)["total"]

    value = total(case["preds"], case["y_true"]["boxes"], case["y_true"]["labels"])
    np.testing.assert_allclose(float(value), float(case["loss_items"][3]), rtol=1e-4)


def test_batch_without_boxes_gives_objectness_only():
    case = load_case("p5_tiny_nc3_smooth_192")
    loss = case_loss(case, "tiny")
    empty = {"boxes": -np.ones((3, MAX_BOXES, 4), "float32"), "labels": -np.ones((3, MAX_BOXES), "int32")}
    value, grads = objective_and_grad(loss, empty, case["preds"])
    result = components(loss, empty, case["preds"])
    assert float(result["box"]) == 0.0 and float(result["cls"]) == 0.0
    # Every cell is background: mean BCE(logit, 0) per level, balanced, times the objectness gain.
    expected = 0.0
    for level, pred in enumerate(case["preds"]):
        expected += case["balance"][level] * np.mean(np.logaddexp(0.0, pred[..., 4].astype("float64")))
    np.testing.assert_allclose(float(result["obj"]), expected * float(case["hyp_obj"]), rtol=1e-5)
    np.testing.assert_allclose(value, float(result["total"]) * 3, rtol=1e-6)
    for grad in grads:  # only objectness logits get a gradient
        assert np.all(np.isfinite(grad))
        assert np.all(grad[..., :4] == 0.0) and np.all(grad[..., 5:] == 0.0)


def test_degenerate_nan_and_out_of_range_targets_are_ignored():
    case = load_case("p5_tiny_nc3_smooth_192")
    loss = case_loss(case, "tiny")
    boxes, labels = case["y_true"]["boxes"].copy(), case["y_true"]["labels"].copy()
    junk = [
        ([50.0, 50.0, 50.0, 90.0], 1),  # zero width
        ([60.0, 70.0, 40.0, 90.0], 2),  # negative width
        ([np.nan, 10.0, 30.0, 40.0], 0),  # NaN coordinate
        ([10.0, 10.0, np.inf, 40.0], 1),  # infinite coordinate
        ([10.0, 10.0, 60.0, 60.0], 3),  # class outside [0, num_classes)
        ([10.0, 10.0, 60.0, 60.0], -5),  # negative class
    ]
    for slot, (box, label) in enumerate(junk):
        boxes[slot % 3, 5 + slot // 3] = box
        labels[slot % 3, 5 + slot // 3] = label
    value, grads = objective_and_grad(loss, {"boxes": boxes, "labels": labels}, case["preds"])
    np.testing.assert_allclose(value, float(case["loss"]), rtol=1e-4)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_boxes_are_clipped_to_the_image():
    boxes = np.array(
        [[[-10, 5, 40, 30], [150, -20, 170, 10], [170, 10, 230, 60], [np.nan, 0, 5, 5]]], "float32"
    )
    labels = np.array([[0, 1, 2, 3]], "int32")
    centre, cleaned_labels, valid = sanitize_targets(boxes, labels, 4, image_height=128, image_width=160)
    np.testing.assert_allclose(
        ops.convert_to_numpy(centre),
        [[[20, 17.5, 40, 25], [155, 5, 10, 10], [0, 0, 0, 0], [0, 0, 0, 0]]],
    )
    assert ops.convert_to_numpy(valid).tolist() == [[True, True, False, False]]
    assert ops.convert_to_numpy(cleaned_labels).tolist() == [[0, 1, 0, 0]]


def test_check_targets():
    boxes = np.array([[[10, 10, 50, 60], [-1, -1, -1, -1]]], "float32")
    labels = np.array([[3, -1]])
    check_targets(boxes, labels, num_classes=80)
    check_targets(boxes, labels.astype("float32"), num_classes=80)
    with pytest.raises(ValueError, match="labels contain 91 but num_classes is 80"):
        check_targets(boxes, np.array([[91, -1]]), num_classes=80)
    with pytest.raises(ValueError, match="labels contain -2"):
        check_targets(boxes, np.array([[-2, -1]]), num_classes=80)
    with pytest.raises(ValueError, match="labels contain 1.5"):
        check_targets(boxes, np.array([[1.5, -1]]), num_classes=80)
    bad = boxes.copy()
    bad[0, 0, 2] = np.nan
    with pytest.raises(ValueError, match=r"boxes\[0, 0\] .* nan at index 2"):
        check_targets(bad, labels, num_classes=80)
    bad[0, 0, 2], bad[0, 1, 0] = 50, np.nan  # NaN in a padding row is not an error
    check_targets(bad, labels, num_classes=80)
    with pytest.raises(ValueError, match=r"boxes must have shape \(batch, max_boxes, 4\)"):
        check_targets(boxes[..., :3], labels, num_classes=80)
    with pytest.raises(ValueError, match="labels must have shape"):
        check_targets(boxes, labels[:, :1], num_classes=80)


# An independent loop-and-list rendering of the official algorithm (numpy, float64): candidates
# level by level, SimOTA image by image, target by target. Used on crowded random scenes with
# shared cells, which the reference cases avoid. Ties between equal costs go to the candidate
# listed first (level, target, anchor, offset order), the rule of the port.


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _bce(logits, targets):
    return np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))


def _ciou(a, b, eps=1e-7):
    (ax, ay, aw, ah), (bx, by, bw, bh) = a, b
    a1x, a2x, a1y, a2y = ax - aw / 2, ax + aw / 2, ay - ah / 2, ay + ah / 2
    b1x, b2x, b1y, b2y = bx - bw / 2, bx + bw / 2, by - bh / 2, by + bh / 2
    inter = max(min(a2x, b2x) - max(a1x, b1x), 0) * max(min(a2y, b2y) - max(a1y, b1y), 0)
    w1, h1, w2, h2 = a2x - a1x, a2y - a1y + eps, b2x - b1x, b2y - b1y + eps
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    c2 = (max(a2x, b2x) - min(a1x, b1x)) ** 2 + (max(a2y, b2y) - min(a1y, b1y)) ** 2 + eps
    rho2 = ((b1x + b2x - a1x - a2x) ** 2 + (b1y + b2y - a1y - a2y) ** 2) / 4
    v = 4 / math.pi**2 * (math.atan(w2 / (h2 + eps)) - math.atan(w1 / (h1 + eps))) ** 2
    return iou - (rho2 / c2 + v * v / (v - iou + 1 + eps))


def _iou_xyxy(a, b):
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference_head(guide, trained, targets, anchors, strides, g, topk, num_classes, smoothing):
    """Unweighted (box, objectness per level, class) of one head. targets: per image, rows
    (class, cx, cy, w, h) in pixels."""
    positives = []  # (level, image, anchor, row, column, target row)
    for b, image_targets in enumerate(targets):
        columns = []
        for level, stride in enumerate(strides):
            ny, nx = guide[level].shape[1:3]
            for t, (_, cx, cy, w, h) in enumerate(image_targets):
                for a, (aw, ah) in enumerate(anchors[level]):
                    if max(w / aw, aw / w, h / ah, ah / h) >= 4.0:
                        continue
                    gx, gy = cx / stride, cy / stride
                    rules = [
                        (True, 0, 0),
                        (gx % 1 < g and gx > 1, 1, 0),
                        (gy % 1 < g and gy > 1, 0, 1),
                        ((nx - gx) % 1 < g and nx - gx > 1, -1, 0),
                        ((ny - gy) % 1 < g and ny - gy > 1, 0, -1),
                    ]
                    for ok, dx, dy in rules:
                        if ok:
                            col = min(max(math.floor(gx - dx * g), 0), nx - 1)
                            row = min(max(math.floor(gy - dy * g), 0), ny - 1)
                            columns.append((level, a, row, col))
        if not columns:
            continue
        iou = np.zeros((len(image_targets), len(columns)))
        cost = np.zeros_like(iou)
        for n, (level, a, row, col) in enumerate(columns):
            p = guide[level][b, row, col, a].astype("float64")
            s = _sigmoid(p)
            x, y = (s[0] * 2 - 0.5 + col) * strides[level], (s[1] * 2 - 0.5 + row) * strides[level]
            w, h = (s[2] * 2) ** 2 * anchors[level][a][0], (s[3] * 2) ** 2 * anchors[level][a][1]
            y_score = np.sqrt(s[5:] * s[4])
            for t, (cls, cx, cy, tw, th) in enumerate(image_targets):
                iou[t, n] = _iou_xyxy(
                    (x - w / 2, y - h / 2, x + w / 2, y + h / 2),
                    (cx - tw / 2, cy - th / 2, cx + tw / 2, cy + th / 2),
                )
                one_hot = np.eye(num_classes)[int(cls)]
                class_cost = -np.sum(one_hot * np.log(y_score) + (1 - one_hot) * np.log(1 - y_score))
                cost[t, n] = class_cost + 3.0 * -np.log(iou[t, n] + 1e-8)
        matching = np.zeros_like(cost)
        for t in range(len(image_targets)):
            dynamic_k = max(1, int(np.sort(iou[t])[::-1][:topk].sum()))
            matching[t, np.argsort(cost[t], kind="stable")[:dynamic_k]] = 1
        for n in range(len(columns)):
            if matching[:, n].sum() > 1:
                matching[:, n] = 0
                matching[np.argmin(cost[:, n]), n] = 1
            if matching[:, n].sum():
                positives.append((columns[n], b, int(np.argmax(matching[:, n]))))

    box, objectness, cls = 0.0, [], 0.0
    for level, stride in enumerate(strides):
        tobj = np.zeros(trained[level].shape[:4])
        ious, class_terms = [], []
        for (lvl, a, row, col), b, t in positives:
            if lvl != level:
                continue
            p = trained[level][b, row, col, a].astype("float64")
            s = _sigmoid(p)
            pred = (s[0] * 2 - 0.5, s[1] * 2 - 0.5) + tuple(
                (s[2:4] * 2) ** 2 * np.asarray(anchors[level][a]) / stride
            )
            cls_id, cx, cy, w, h = targets[b][t]
            ciou = _ciou(pred, (cx / stride - col, cy / stride - row, w / stride, h / stride))
            ious.append(ciou)
            tobj[b, row, col, a] = max(tobj[b, row, col, a], max(ciou, 0.0))
            one_hot = np.full(num_classes, smoothing / 2)
            one_hot[int(cls_id)] = 1 - smoothing / 2
            class_terms.append(_bce(p[5:], one_hot))
        if ious:
            box += np.mean(1 - np.asarray(ious))
            if num_classes > 1:
                cls += np.mean(class_terms)
        objectness.append(np.mean(_bce(trained[level][..., 4].astype("float64"), tobj)))
    return box, objectness, cls


def _crowded_scene(seed, num_classes, size, strides, heads):
    rng = np.random.default_rng(seed)
    preds = [
        rng.normal(0, 1.5, (2, size // s, size // s, 3, 5 + num_classes)).astype("float16")
        for s in list(strides) * heads
    ]
    targets = []
    for b in range(2):
        rows = []
        for _ in range(9):
            cx, cy = rng.uniform(16, size - 16, 2)
            w, h = rng.uniform(6, 70, 2)
            rows.append([rng.integers(num_classes), cx, cy, w, h])
        rows.append([rows[0][0], 48.0, 40.0, 20.0, 30.0])  # centre on cell corners: 5 fine cells
        rows.append(list(rows[1]))  # an exact duplicate target
        rows.append([rng.integers(num_classes), rows[1][1] + 2, rows[1][2] - 1, rows[1][3], rows[1][4]])
        rows = np.asarray(rows)
        # Inside the image, so that the official rule (no clipping) and the port's agree.
        lo = np.clip(rows[:, 1:3] - rows[:, 3:5] / 2, 0, size)
        hi = np.clip(rows[:, 1:3] + rows[:, 3:5] / 2, 0, size)
        targets.append(np.concatenate([rows[:, :1], (lo + hi) / 2, hi - lo], axis=1))
    return preds, targets


def test_matches_a_literal_rendering_on_crowded_scenes():
    """Lead (fine, SimOTA on the lead) and auxiliary (coarse, guided by the lead) on two images of
    12 targets with shared cells, an exact duplicate target and a centre on cell corners; float16
    outputs, as under mixed precision; targets under the "classes" alias; default settings."""
    num_classes, size, strides = 4, 128, (8, 16, 32)
    anchors = [
        [(10, 13), (16, 30), (33, 23)],
        [(30, 61), (62, 45), (59, 119)],
        [(116, 90), (156, 198), (373, 326)],
    ]
    preds, targets = _crowded_scene(11, num_classes, size, strides, heads=2)
    smoothing, balance, topk = 0.1, (4.0, 1.0, 0.4), 20
    loss = YOLOv7Loss(num_classes, anchors, strides, label_smoothing=smoothing)
    boxes = -np.ones((2, 15, 4), "float32")
    labels = -np.ones((2, 15), "int32")
    for b, rows in enumerate(targets):
        centre, wh = rows[:, 1:3], rows[:, 3:5]
        boxes[b, : len(rows)] = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1)
        labels[b, : len(rows)] = rows[:, 0]
    result = components(loss, {"boxes": boxes, "classes": labels}, preds)
    assert str(ops.convert_to_numpy(result["loss"]).dtype) == "float32"

    gains = np.array([float(g) for g in loss.scaled_gains(size, size)])
    lead = _reference_head(preds[:3], preds[:3], targets, anchors, strides, 0.5, topk, num_classes, smoothing)
    aux = _reference_head(preds[:3], preds[3:], targets, anchors, strides, 1.0, topk, num_classes, smoothing)
    lead = np.array([lead[0], np.dot(lead[1], balance), lead[2]]) * gains
    aux = 0.25 * np.array([aux[0], np.dot(aux[1], balance), aux[2]]) * gains
    np.testing.assert_allclose(items(result)[:3], lead + aux, rtol=1e-4)
    np.testing.assert_allclose(float(result["aux"]), aux.sum(), rtol=1e-4)
    np.testing.assert_allclose(float(result["loss"]), (lead + aux).sum() * 2, rtol=1e-4)


def _padded(y_true, rows, hole=True):
    """`y_true` padded to `rows` target rows, with (optionally) an invalid row among the valid ones."""
    boxes, labels = y_true["boxes"], y_true["labels"]
    batch, count = labels.shape
    new_boxes = -np.ones((batch, rows, 4), "float32")
    new_labels = -np.ones((batch, rows), "int32")
    new_boxes[:, :count], new_labels[:, :count] = boxes, labels
    if hole:
        # Move image 0's first target one row down behind a padding row: still counted.
        new_boxes[0, 1:count + 1], new_labels[0, 1:count + 1] = boxes[0], labels[0]
        new_boxes[0, 0], new_labels[0, 0] = -1.0, -1
    return {"boxes": new_boxes, "labels": new_labels}


@pytest.mark.parametrize("name", ["p5_tiny_nc3_smooth_192", "p6_w6_aux_256"])
def test_compacted_targets_give_the_same_loss_and_gradient(name):
    """compact_targets cuts the padding (the assignment's cost grows with its square): same terms,
    same gradient, and still the official values."""
    if keras.backend.backend() == "jax":
        pytest.skip("JAX always jits the step, where shapes cannot depend on the data")
    case = load_case(name)
    loss = case_loss(case, CASES[name])
    y_true = _padded(case["y_true"], 40)
    full_value, full_grads = value_and_grad(lambda p: loss.compute_components(y_true, p)["loss"], case["preds"])
    value, grads = value_and_grad(
        lambda p: loss.compute_components(y_true, p, compact_targets=True)["loss"], case["preds"]
    )
    np.testing.assert_allclose(value, full_value, rtol=1e-6)
    np.testing.assert_allclose(value, float(case["loss"]), rtol=1e-4)
    for compacted, full in zip(grads, full_grads, strict=True):
        np.testing.assert_allclose(compacted, full, rtol=1e-5, atol=1e-8)
    empty = {"boxes": -np.ones((2, 7, 4), "float32"), "labels": -np.ones((2, 7), "int32")}
    preds = [p[:2] for p in case["preds"]]
    np.testing.assert_allclose(
        items(loss.compute_components(empty, preds, compact_targets=True)),
        items(loss.compute_components(empty, preds)),
        rtol=1e-6,
    )


def test_compacted_targets_in_a_tensorflow_graph():
    """The detector's TensorFlow graph (no XLA) compacts with unknown shapes."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow graph tracing")
    import tensorflow as tf

    case = load_case("p6_w6_aux_256")
    loss = case_loss(case, "p6")
    y_true = _padded(case["y_true"], 64)
    output_specs = [tf.TensorSpec((None, None, None, 3, 85), tf.float32) for _ in case["preds"]]
    target_specs = [tf.TensorSpec((None, None, 4), tf.float32), tf.TensorSpec((None, None), tf.int32)]

    @tf.function(input_signature=[output_specs, *target_specs])
    def total(preds, boxes, labels):
        return loss.compute_components({"boxes": boxes, "labels": labels}, preds, compact_targets=True)["total"]

    value = total(case["preds"], y_true["boxes"], y_true["labels"])
    np.testing.assert_allclose(float(value), float(case["loss_items"][3]), rtol=1e-4)
