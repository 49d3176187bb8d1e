"""YOLOv7's label assignment: candidate cells per target, then SimOTA on the lead head's predictions.

Everything has a fixed shape so it compiles under XLA (TensorFlow, JAX) and runs eagerly on torch:
targets are padded to `max_boxes` (M); each target owns `num_anchors * 5` candidate slots per level
(anchor x {centre, left, up, right, down} cell), and a slot that the official code would not generate
is masked instead of removed. The candidates are ordered `(level, target, anchor, offset)`, so one
image has `N = num_levels * M * num_anchors * 5` columns in the SimOTA matrices.

Two slots (of two targets) may name the same cell and anchor. The official code keeps such duplicates
as separate columns, each matched and penalised on its own; so does this one. When a target's last
place falls among equal-cost duplicates, the official choice depends on torch.topk's tie order;
here the lowest-numbered column wins, identically on every backend.
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


def candidates(boxes, valid, grid_sizes, anchors, strides, offset, anchor_t):
    """The candidate slots of every target on every level.

    A target pairs with anchor `a` of a level when `max(r, 1 / r) < anchor_t` for its width and
    height, `r = target / anchor`. Each pair proposes the cell holding the target's centre plus
    neighbours: left when `gx mod 1 < offset` and `gx > 1`, up likewise in y, right when
    `(grid_width - gx) mod 1 < offset` and `grid_width - gx > 1`, down likewise, where `gx, gy` is
    the centre in grid units; a neighbour's cell is `floor(g_xy - offset * (dx, dy))`, clamped to
    the grid.

    Args:
        boxes: `(batch, M, 4)` center_xywh targets in pixels of the network input.
        valid: `(batch, M)` bool, false for padding.
        grid_sizes: per level, the `(height, width)` of its grid.
        anchors: `(num_levels, num_anchors, 2)` anchor widths and heights in pixels.
        strides: per-level strides in pixels.
        offset: `FINE_OFFSET` or `COARSE_OFFSET`.
        anchor_t: the anchor ratio threshold (official 4.0).

    Returns:
        A dict; `K = M * num_anchors * 5` slots per level, ordered (target, anchor, offset):
        `"cell"` `(batch, num_levels, K, 2)` float32 column and row of the cell; `"index"`
        `(batch, num_levels, K)` int32 flat position `(row * grid_width + column) * num_anchors +
        anchor` among the level's `(grid_height, grid_width, num_anchors)` cells; `"anchor"`
        `(num_levels, K, 2)` anchor in pixels; `"valid"` `(batch, num_levels, K)` bool.
    """
    anchors = ops.cast(ops.convert_to_tensor(anchors), "float32")  # (L, A, 2)
    num_levels, num_anchors = anchors.shape[0], anchors.shape[1]
    num_offsets = len(_OFFSETS)
    batch, max_boxes = ops.shape(valid)[0], ops.shape(valid)[1]
    k = max_boxes * num_anchors * num_offsets

    ratio = boxes[:, None, :, None, 2:4] / anchors[None, :, None]  # (B, L, M, A, 2)
    # A zero-sized (padding) box gives an infinite inverse ratio, which correctly fails the test.
    anchor_ok = ops.max(ops.maximum(ratio, 1.0 / ratio), axis=-1) < anchor_t  # (B, L, M, A)

    grid = ops.cast(ops.stack([ops.stack([width, height]) for height, width in grid_sizes]), "float32")
    grid = grid[:, None, :]  # (L, 1, 2) as (x, y)
    stride = ops.convert_to_tensor([float(s) for s in strides], "float32")[:, None, None]  # (L, 1, 1)
    centre = boxes[:, None, :, :2] / stride  # (B, L, M, 2) grid units
    inverse = grid - centre
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
    )  # (B, L, M, O)

    shifts = ops.convert_to_tensor(_OFFSETS, "float32") * offset  # (O, 2)
    cell = ops.floor(centre[..., None, :] - shifts)  # (B, L, M, O, 2)
    cell = ops.minimum(ops.maximum(cell, 0.0), grid[..., None, :] - 1.0)

    slot_valid = (
        valid[:, None, :, None, None] & anchor_ok[..., None] & offset_ok[..., None, :]
    )  # (B, L, M, A, O)
    cell_index = ops.cast(cell[..., 1] * grid[..., None, 0] + cell[..., 0], "int32")  # (B, L, M, O)
    anchor_ids = ops.arange(num_anchors, dtype="int32")[:, None]
    index = cell_index[:, :, :, None, :] * num_anchors + anchor_ids  # (B, L, M, A, O)

    cell = ops.broadcast_to(cell[:, :, :, None], (batch, num_levels, max_boxes, num_anchors, num_offsets, 2))
    anchor = ops.broadcast_to(
        anchors[:, None, :, None, :], (num_levels, max_boxes, num_anchors, num_offsets, 2)
    )
    return {
        "cell": ops.reshape(cell, (batch, num_levels, k, 2)),
        "index": ops.reshape(index, (batch, num_levels, k)),
        "anchor": ops.reshape(anchor, (num_levels, k, 2)),
        "valid": ops.reshape(slot_valid, (batch, num_levels, k)),
    }


def gather_cells(outputs, index):
    """Pick candidate cells: per level `(batch, H, W, A, D)` and `(batch, num_levels, K)` indices
    -> `(batch, num_levels, K, D)`.

    One gather per level on the flattened output, whose gradient is a sparse scatter back into it.
    """
    picked = []
    for level, raw in enumerate(outputs):
        shape = ops.shape(raw)
        cells = shape[1] * shape[2] * shape[3]
        flat = ops.reshape(raw, (-1, shape[4]))
        offsets = ops.arange(shape[0], dtype="int32")[:, None] * cells
        picked.append(ops.take(flat, index[:, level] + offsets, axis=0))
    return ops.stack(picked, axis=1)


def simota(boxes, labels, valid, slots, candidate_raw, strides, topk):
    """SimOTA matching of each image's targets to all of its candidates, batched over images.

    For each target: `dynamic_k = max(1, int(sum of its top min(topk, n) IoUs))`; its cost to every
    candidate is `sum_c BCE(sqrt(sigmoid(cls_c) * sigmoid(obj)), one_hot_c) + 3 * -log(IoU + 1e-8)`;
    it takes its `dynamic_k` cheapest candidates. A candidate taken by several targets goes to the
    target of lowest cost among all targets of the image (as the official code does).

    Args:
        boxes: `(batch, M, 4)` center_xywh targets in pixels.
        labels: `(batch, M)` int32 class indices.
        valid: `(batch, M)` bool.
        slots: the candidates, as returned by `candidates`.
        candidate_raw: `(batch, num_levels, K, 5 + num_classes)` raw lead-head logits at the
            candidates. Pass them with stopped gradient: the assignment is not differentiated.
        strides: per-level strides in pixels.
        topk: how many of the best IoUs set `dynamic_k` (official: 10, or 20 with auxiliary heads).

    Returns:
        `(positive, matched)`: `(batch, num_levels, K)` bool, true for candidates assigned to a
        target, and `(batch, num_levels, K)` int32 index of that target (0 where not positive).
    """
    shape = ops.shape(slots["valid"])
    num_candidates = shape[1] * shape[2]
    max_boxes = ops.shape(valid)[1]
    num_classes = candidate_raw.shape[-1] - 5

    stride = ops.convert_to_tensor([float(s) for s in strides], "float32")[:, None, None]
    s = ops.sigmoid(candidate_raw[..., :4])
    xy = (s[..., :2] * 2.0 - 0.5 + slots["cell"]) * stride
    wh = (s[..., 2:4] * 2.0) ** 2 * slots["anchor"]
    predicted = ops.reshape(center_xywh_to_xyxy(ops.concatenate([xy, wh], axis=-1)), (shape[0], -1, 4))
    candidate_raw = ops.reshape(candidate_raw, (shape[0], num_candidates, -1))
    candidate_valid = ops.reshape(slots["valid"], (shape[0], num_candidates))
    pair_valid = valid[:, :, None] & candidate_valid[:, None, :]  # (B, M, N)
    iou = ops.where(pair_valid, pairwise_iou(center_xywh_to_xyxy(boxes), predicted), 0.0)

    static_candidates = candidate_raw.shape[1]
    k = topk if static_candidates is None else min(topk, static_candidates)
    best_iou, _ = ops.top_k(iou, k)
    dynamic_k = ops.maximum(ops.cast(ops.floor(ops.sum(best_iou, axis=-1)), "int32"), 1)  # (B, M)

    cost = _class_cost(candidate_raw, labels, num_classes) + 3.0 * -ops.log(iou + 1e-8)
    cost = ops.where(pair_valid, cost, _IMPOSSIBLE)

    # Each target takes the candidates cheaper than its dynamic_k-th lowest cost, then fills the
    # remaining places among those costing exactly that much (duplicated cells) in column order: the
    # result depends on the values only, never on how a backend's top_k orders ties.
    lowest_costs, _ = ops.top_k(-cost, k)
    threshold = -ops.take_along_axis(lowest_costs, dynamic_k[..., None] - 1, axis=-1)  # (B, M, 1)
    below = cost < threshold
    tied = cost == threshold
    missing = dynamic_k[..., None] - ops.sum(ops.cast(below, "int32"), axis=-1, keepdims=True)  # >= 1
    column = ops.cast(ops.arange(num_candidates), "float32")
    first_tied, _ = ops.top_k(ops.where(tied, ops.cast(num_candidates, "float32") - column, 0.0), k)
    last_taken = ops.cast(num_candidates, "float32") - ops.take_along_axis(first_tied, missing - 1, axis=-1)
    chosen = (below | (tied & (column <= last_taken))) & pair_valid

    # How many targets took each candidate, and (when one did) which.
    chosen = ops.cast(chosen, "int32")
    takers = ops.sum(chosen, axis=1)  # (B, N)
    taker_sum = ops.sum(chosen * ops.arange(max_boxes, dtype="int32")[:, None], axis=1)

    # First target of lowest cost; spelled as two plain reductions, which XLA runs far faster than
    # an argmin over a non-minor axis.
    lowest = ops.min(cost, axis=1, keepdims=True)
    target_column = ops.arange(max_boxes, dtype="int32")[:, None]
    cheapest = ops.min(ops.where(cost <= lowest, target_column, max_boxes), axis=1)
    matched = ops.where(takers > 1, cheapest, taker_sum)
    return ops.reshape(takers > 0, shape), ops.reshape(matched, shape)


def _class_cost(candidate_raw, labels, num_classes):
    """`(batch, M, N)`: `sum_c BCE(y_c, one_hot(label)_c)` with `y = sqrt(sigmoid(cls) * sigmoid(obj))`.

    `sum_c -log(1 - y_c)` is shared by all targets; a target of class `t` swaps one term for
    `-log(y_t)`. Computing the shared sum once per candidate and picking the correction
    `log(1 - y_t) - log(y_t)` of each target's class avoids the `(M, N, num_classes)` tensor of the
    direct form. Logs are taken in log space (`log y = (log sigmoid(obj) + log sigmoid(cls)) / 2`)
    so that a saturated sigmoid gives a large finite cost instead of infinity.
    """
    objectness = candidate_raw[..., 4:5]
    log_y = 0.5 * (_log_sigmoid(objectness) + _log_sigmoid(candidate_raw[..., 5:]))  # (B, N, C)
    log_not_y = ops.log(ops.maximum(-ops.expm1(log_y), 1e-30))
    background = -ops.sum(log_not_y, axis=-1)  # (B, N)
    # One-hot contraction rather than a gather: XLA would fuse a gather with the producer of
    # `correction` and recompute its logarithms for every (target, candidate) pair. Products with
    # exact zeros and ones keep the selected value exact.
    correction = ops.einsum("bmc,bnc->bmn", ops.one_hot(labels, num_classes), log_not_y - log_y)
    return background[:, None, :] + correction


def _log_sigmoid(x):
    """`log(sigmoid(x))` without overflow, in two transcendentals."""
    return ops.minimum(x, 0.0) - ops.log1p(ops.exp(-ops.abs(x)))
