"""YOLOv7's label assignment: candidate cells per target, then SimOTA on the lead head's predictions.

Everything has a fixed shape so it compiles under XLA (TensorFlow, JAX) and runs eagerly on torch:
targets are padded to `max_boxes` (M); each target owns `num_anchors * 5` candidate slots per level
(anchor x {centre, left, up, right, down} cell), and a slot that the official code would not generate
is masked instead of removed. A level's candidates are ordered `(target, anchor, offset)`, and the
candidates of all levels are concatenated, so one image has `N = num_levels * M * num_anchors * 5`
columns in the SimOTA matrices.

Two slots (of two targets) may name the same cell and anchor. The official code keeps such duplicates
as separate columns, each matched and penalised on its own; so does this one.
"""

from keras import ops

from keras_yolov7.ops.boxes import center_xywh_to_xyxy
from keras_yolov7.ops.boxes import pairwise_iou

FINE_OFFSET = 0.5
"""Neighbour rule of the lead head's (fine) candidates: the centre cell and up to two neighbours."""

COARSE_OFFSET = 1.0
"""Neighbour rule of the auxiliary head's (coarse) candidates: the centre cell and four neighbours."""

# (dx, dy) of the centre, left, up, right and down cells, in units of the offset rule g.
_OFFSETS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))

# Cost of an impossible (target, candidate) pair: above any real cost (at most ~70 per class plus
# 3 * 18.4), small enough that sums stay finite.
_IMPOSSIBLE = 1e9


def level_candidates(boxes, valid, grid_height, grid_width, anchors, stride, offset, anchor_t):
    """The candidate slots of one output level.

    A target pairs with anchor `a` when `max(r, 1 / r) < anchor_t` for its width and height,
    `r = target / anchor`. Each pair proposes the cell holding the target's centre plus neighbours:
    left when `gx mod 1 < offset` and `gx > 1`, up likewise in y, right when
    `(grid_width - gx) mod 1 < offset` and `grid_width - gx > 1`, down likewise, where `gx, gy` is
    the centre in grid units; a neighbour's cell is `floor(g_xy - offset * (dx, dy))`, clamped to
    the grid.

    Args:
        boxes: `(batch, M, 4)` center_xywh targets in pixels of the network input.
        valid: `(batch, M)` bool, false for padding.
        grid_height, grid_width: size of the level's grid.
        anchors: `(num_anchors, 2)` anchor widths and heights in pixels.
        stride: the level's stride in pixels.
        offset: `FINE_OFFSET` or `COARSE_OFFSET`.
        anchor_t: the anchor ratio threshold (official 4.0).

    Returns:
        A dict of `(batch, K)` tensors, `K = M * num_anchors * 5` ordered (target, anchor, offset):
        `"cell"` `(batch, K, 2)` float32 column and row of the cell; `"index"` int32 flat position
        `(row * grid_width + column) * num_anchors + anchor` in the level's
        `(grid_height, grid_width, num_anchors)` cells; `"anchor"` `(batch, K, 2)` anchor in
        pixels; `"target"` int32 index of the proposing target; `"valid"` bool.
    """
    anchors = ops.cast(ops.convert_to_tensor(anchors), "float32")
    num_anchors = anchors.shape[0]
    num_offsets = len(_OFFSETS)
    batch, max_boxes = ops.shape(valid)[0], ops.shape(valid)[1]

    ratio = boxes[:, :, None, 2:4] / anchors  # (B, M, A, 2)
    # A zero-sized (padding) box gives an infinite inverse ratio, which correctly fails the test.
    anchor_ok = ops.max(ops.maximum(ratio, 1.0 / ratio), axis=-1) < anchor_t  # (B, M, A)

    grid_size = ops.cast(ops.stack([grid_width, grid_height]), "float32")
    centre = boxes[..., :2] / stride  # (B, M, 2) grid units
    inverse = grid_size - centre
    near_low = (ops.mod(centre, 1.0) < offset) & (centre > 1.0)
    near_high = (ops.mod(inverse, 1.0) < offset) & (inverse > 1.0)
    offset_ok = ops.stack(
        [
            ops.ones_like(near_low[..., 0]),
            near_low[..., 0],
            near_low[..., 1],
            near_high[..., 0],
            near_high[..., 1],
        ],
        axis=-1,
    )  # (B, M, O)

    shifts = ops.convert_to_tensor(_OFFSETS, "float32") * offset  # (O, 2)
    cell = ops.floor(centre[:, :, None, :] - shifts)  # (B, M, O, 2)
    cell = ops.minimum(ops.maximum(cell, 0.0), grid_size - 1.0)

    slot_valid = valid[:, :, None, None] & anchor_ok[..., None] & offset_ok[:, :, None, :]  # (B, M, A, O)
    cell_index = ops.cast(cell[..., 1] * ops.cast(grid_width, "float32") + cell[..., 0], "int32")
    anchor_ids = ops.arange(num_anchors, dtype="int32")
    index = cell_index[:, :, None, :] * num_anchors + anchor_ids[:, None]  # (B, M, A, O)

    k = max_boxes * num_anchors * num_offsets
    cell = ops.broadcast_to(cell[:, :, None], (batch, max_boxes, num_anchors, num_offsets, 2))
    anchor = ops.broadcast_to(anchors[:, None, :], (batch, max_boxes, num_anchors, num_offsets, 2))
    target = ops.broadcast_to(
        ops.arange(max_boxes, dtype="int32")[:, None, None], (batch, max_boxes, num_anchors, num_offsets)
    )
    return {
        "cell": ops.reshape(cell, (batch, k, 2)),
        "index": ops.reshape(index, (batch, k)),
        "anchor": ops.reshape(anchor, (batch, k, 2)),
        "target": ops.reshape(target, (batch, k)),
        "valid": ops.reshape(slot_valid, (batch, k)),
    }


def gather_cells(raw, index):
    """Pick cells of one level: `(batch, H, W, A, D)` and `(batch, K)` flat indices -> `(batch, K, D)`.

    One gather on the flattened tensor, whose gradient is a sparse scatter back into the level.
    """
    shape = ops.shape(raw)
    cells = shape[1] * shape[2] * shape[3]
    flat = ops.reshape(raw, (-1, shape[4]))
    offsets = ops.arange(shape[0], dtype="int32")[:, None] * cells
    return ops.take(flat, index + offsets, axis=0)


def simota(
    boxes,
    labels,
    valid,
    candidate_raw,
    candidate_cell,
    candidate_anchor,
    candidate_stride,
    candidate_valid,
    topk,
):
    """SimOTA matching of one image's targets to all of its candidates, batched over images.

    For each target: `dynamic_k = max(1, int(sum of its top min(topk, n) IoUs))`; its cost to every
    candidate is `sum_c BCE(sqrt(sigmoid(cls_c) * sigmoid(obj)), one_hot_c) + 3 * -log(IoU + 1e-8)`;
    it takes its `dynamic_k` cheapest candidates. A candidate taken by several targets goes to the
    target of lowest cost among all targets of the image (as the official code does).

    Args:
        boxes: `(batch, M, 4)` center_xywh targets in pixels.
        labels: `(batch, M)` int32 class indices.
        valid: `(batch, M)` bool.
        candidate_raw: `(batch, N, 5 + num_classes)` raw lead-head logits at the candidates. Pass
            them with stopped gradient: the assignment is not differentiated.
        candidate_cell: `(batch, N, 2)` column and row of each candidate's cell.
        candidate_anchor: `(batch, N, 2)` anchor in pixels.
        candidate_stride: `(N,)` stride in pixels of each candidate's level.
        candidate_valid: `(batch, N)` bool.
        topk: how many of the best IoUs set `dynamic_k` (official: 10, or 20 with auxiliary heads).

    Returns:
        `(positive, matched)`: `(batch, N)` bool, true for candidates assigned to a target, and
        `(batch, N)` int32 index of that target (0 where not positive).
    """
    num_candidates = ops.shape(candidate_raw)[1]
    batch, max_boxes = ops.shape(valid)[0], ops.shape(valid)[1]
    num_classes = candidate_raw.shape[-1] - 5

    stride = candidate_stride[:, None]
    s = ops.sigmoid(candidate_raw[..., :4])
    xy = (s[..., :2] * 2.0 - 0.5 + candidate_cell) * stride
    wh = (s[..., 2:4] * 2.0) ** 2 * candidate_anchor
    predicted = center_xywh_to_xyxy(ops.concatenate([xy, wh], axis=-1))
    pair_valid = valid[:, :, None] & candidate_valid[:, None, :]  # (B, M, N)
    iou = ops.where(pair_valid, pairwise_iou(center_xywh_to_xyxy(boxes), predicted), 0.0)

    static_candidates = candidate_raw.shape[1]
    k = topk if static_candidates is None else min(topk, static_candidates)
    best_iou, _ = ops.top_k(iou, k)
    dynamic_k = ops.maximum(ops.cast(ops.floor(ops.sum(best_iou, axis=-1)), "int32"), 1)  # (B, M)

    cost = _class_cost(candidate_raw, labels, num_classes) + 3.0 * -ops.log(iou + 1e-8)
    cost = ops.where(pair_valid, cost, _IMPOSSIBLE)

    neg_cost, chosen_index = ops.top_k(-cost, k)  # (B, M, k), cheapest first
    chosen = (ops.arange(k, dtype="int32") < dynamic_k[..., None]) & (-neg_cost < _IMPOSSIBLE / 2)

    # How many targets took each candidate, and (when one did) which: sums over the chosen pairs.
    columns = ops.reshape(
        chosen_index + ops.arange(batch, dtype="int32")[:, None, None] * num_candidates, (-1,)
    )
    chosen = ops.cast(chosen, "int32")
    takers = ops.segment_sum(ops.reshape(chosen, (-1,)), columns, num_segments=batch * num_candidates)
    target_ids = ops.broadcast_to(ops.arange(max_boxes, dtype="int32")[:, None], (max_boxes, k))
    taker_sum = ops.segment_sum(
        ops.reshape(chosen * target_ids, (-1,)), columns, num_segments=batch * num_candidates
    )
    takers = ops.reshape(takers, (batch, num_candidates))
    taker_sum = ops.reshape(taker_sum, (batch, num_candidates))

    cheapest = ops.cast(ops.argmin(cost, axis=1), "int32")
    matched = ops.where(takers > 1, cheapest, taker_sum)
    return takers > 0, matched


def _class_cost(candidate_raw, labels, num_classes):
    """`(batch, M, N)`: `sum_c BCE(y_c, one_hot(label)_c)` with `y = sqrt(sigmoid(cls) * sigmoid(obj))`.

    `sum_c -log(1 - y_c)` is shared by all targets; a target of class `t` swaps one term for
    `-log(y_t)`. Computing the shared sum once per candidate and gathering the correction for each
    target's class avoids the `(M, N, num_classes)` tensor of the direct form. Logs are taken in
    log space (`log y = -(softplus(-obj) + softplus(-cls)) / 2`) so that a saturated sigmoid gives a
    large finite cost instead of infinity.
    """
    objectness = candidate_raw[..., 4:5]
    log_y = -0.5 * (ops.softplus(-objectness) + ops.softplus(-candidate_raw[..., 5:]))  # (B, N, C)
    log_not_y = ops.log(ops.maximum(-ops.expm1(log_y), 1e-30))
    background = -ops.sum(log_not_y, axis=-1)  # (B, N)
    correction = ops.transpose(log_not_y - log_y, (0, 2, 1))  # (B, C, N)
    batch = ops.shape(labels)[0]
    rows = labels + ops.arange(batch, dtype="int32")[:, None] * num_classes
    correction = ops.take(ops.reshape(correction, (-1, ops.shape(correction)[-1])), rows, axis=0)  # (B, M, N)
    return background[:, None, :] + correction
