"""Batched, class-aware greedy non-maximum suppression with static shapes (keras.ops only).

Greedy NMS keeps a box when no higher-scoring kept box of the same class overlaps it by more than
the IoU threshold. Done one box at a time that is a loop of K steps; here the score-sorted
candidates are processed in tiles of `tile_size` boxes instead:

1. boxes of the current tile overlapped by a box kept from an earlier tile are dropped. Earlier
   tiles are final and their survivors are exactly the output rows filled so far, so this is one
   `(max_detections, tile)` IoU product;
2. inside the tile, the rule "kept unless a kept earlier box of the tile overlaps it" is iterated
   to its fixed point. The rule defines the greedy answer uniquely (box i depends only on boxes
   before it), so the first unchanged iteration is exactly greedy NMS. It converges in as many
   iterations as the longest chain of "suppressor is itself suppressed" in the tile: a handful
   in practice, at most `tile_size`;
3. the tile's survivors are appended to the output rows.

The loop stops after the last tile holding a valid candidate, or once every image has
`max_detections` survivors, so a few hundred candidates cost one tile even when the candidate
capacity is thousands. Shapes are static everywhere: the function compiles under
`tf.function(jit_compile=True)` and `jax.jit`.
"""

from keras import ops

from keras_yolov7.ops.boxes import pairwise_iou


def sort_by_score(scores, valid):
    """Order `(batch, K)` candidates by descending score, ties by ascending index, invalid last.

    Returns `(batch, K)` int32 indices. The sort is stable on every backend (TensorFlow, JAX and
    PyTorch's Keras `argsort` all are), which makes tie-breaking deterministic.
    """
    key = ops.where(valid, -scores, float("inf"))
    return ops.argsort(key, axis=-1)


def greedy_nms(boxes, scores, labels, groups, valid, iou_threshold, max_detections, tile_size=256):
    """Greedy NMS over score-sorted candidates, collecting the survivors into fixed-size outputs.

    Args:
        boxes: `(batch, K, 4)` xyxy boxes, sorted by descending score.
        scores: `(batch, K)` scores, in the same order.
        labels: `(batch, K)` int32 class indices returned with each survivor.
        groups: `(batch, K)` int32; boxes only suppress boxes of the same group (the labels for
            class-aware NMS, zeros for class-agnostic NMS).
        valid: `(batch, K)` bool, false for padding. Valid candidates must come first (as
            `sort_by_score` puts them).
        iou_threshold: a box is suppressed by a kept box when their IoU is strictly greater.
        max_detections: D, the number of output rows per image.
        tile_size: candidates resolved together; any value gives the same answer, it only trades
            work per step `(batch, tile_size, D + tile_size)` against sequential steps.

    Returns:
        `(boxes, scores, labels, count)`: `(batch, D, 4)`, `(batch, D)`, `(batch, D)` int32 in
        candidate order, padded with -1 after `count` `(batch,)` int32 rows.
    """
    boxes = ops.convert_to_tensor(boxes)
    num_candidates = boxes.shape[1]
    if num_candidates is None:
        raise ValueError("greedy_nms needs a static number of candidates (boxes.shape[1])")
    tile = max(1, min(int(tile_size), num_candidates))
    num_tiles = -(-num_candidates // tile)
    padding = num_tiles * tile - num_candidates
    capacity = int(max_detections)
    tensors = [
        boxes,
        ops.cast(scores, boxes.dtype),
        ops.cast(labels, "int32"),
        ops.cast(groups, "int32"),
        ops.cast(valid, "bool"),
    ]
    if padding:
        tensors = [
            ops.pad(x, [[0, 0], [0, padding]] + [[0, 0]] * (len(x.shape) - 2)) for x in tensors
        ]
    batch = ops.shape(boxes)[0]
    tiled = [ops.reshape(x, (batch, num_tiles, tile) + tuple(x.shape[2:])) for x in tensors]
    positions = ops.arange(tile, dtype="int32")
    # earlier[j, i]: j comes before i inside a tile (candidates are in score order).
    earlier_in_tile = ops.expand_dims(positions, 1) < ops.expand_dims(positions, 0)
    slots = ops.arange(capacity, dtype="int32")

    def overlaps(boxes_a, groups_a, boxes_b, groups_b):
        # IoU is NaN for two empty boxes; NaN > threshold is false, so they never suppress.
        same_group = ops.expand_dims(groups_a, 2) == ops.expand_dims(groups_b, 1)
        return ops.logical_and(pairwise_iou(boxes_a, boxes_b) > iou_threshold, same_group)

    def resolve_tile(t, kept_boxes, kept_scores, kept_labels, kept_groups, count):
        tile_boxes, tile_scores, tile_labels, tile_groups, tile_valid = (
            ops.take(x, t, axis=1) for x in tiled
        )
        # Earlier tiles are final and their survivors are all in the output (the loop stops
        # once an image has `capacity` of them), so they are the only possible suppressors.
        filled = ops.expand_dims(slots, 0) < ops.expand_dims(count, 1)
        cross = overlaps(kept_boxes, kept_groups, tile_boxes, tile_groups)
        suppressed = ops.any(ops.logical_and(cross, ops.expand_dims(filled, 2)), axis=1)
        candidates = ops.logical_and(tile_valid, ops.logical_not(suppressed))

        inside = ops.logical_and(
            overlaps(tile_boxes, tile_groups, tile_boxes, tile_groups),
            ops.expand_dims(earlier_in_tile, 0),
        )

        def not_converged(_, changed):
            return changed

        def iterate(current, _):
            hit = ops.any(ops.logical_and(inside, ops.expand_dims(current, 2)), axis=1)
            updated = ops.logical_and(candidates, ops.logical_not(hit))
            return updated, ops.any(ops.not_equal(updated, current))

        survivors, _ = ops.while_loop(
            not_converged, iterate, (candidates, ops.convert_to_tensor(True))
        )

        # Append the survivors after the `count` rows already filled, in candidate order.
        first = min(tile, capacity)
        order_key = ops.where(survivors, ops.cast(tile - positions, "float32"), 0.0)
        _, survivor_index = ops.top_k(order_key, first)
        new = ops.sum(ops.cast(survivors, "int32"), axis=1)
        offset = ops.expand_dims(slots, 0) - ops.expand_dims(count, 1)
        writes = ops.logical_and(offset >= 0, offset < ops.expand_dims(new, 1))
        source = ops.take_along_axis(survivor_index, ops.clip(offset, 0, first - 1), axis=1)

        def append(kept, fresh):
            index = source
            for _ in range(len(fresh.shape) - 2):
                index = ops.expand_dims(index, -1)
            gathered = ops.take_along_axis(fresh, index, axis=1)
            mask = writes
            for _ in range(len(fresh.shape) - 2):
                mask = ops.expand_dims(mask, -1)
            return ops.where(mask, gathered, kept)

        return (
            t + 1,
            append(kept_boxes, tile_boxes),
            append(kept_scores, tile_scores),
            append(kept_labels, tile_labels),
            append(kept_groups, tile_groups),
            ops.minimum(count + new, capacity),
        )

    # Valid candidates come first, so tiles past the last valid one hold nothing.
    num_valid = ops.sum(ops.cast(tensors[4], "int32"), axis=1)
    active_tiles = (ops.max(num_valid) + tile - 1) // tile

    def more_work(t, *state):
        return ops.logical_and(t < active_tiles, ops.any(state[-1] < capacity))

    init = (
        ops.convert_to_tensor(0, "int32"),
        ops.full((batch, capacity, 4), -1.0, boxes.dtype),
        ops.full((batch, capacity), -1.0, boxes.dtype),
        ops.full((batch, capacity), -1, "int32"),
        ops.full((batch, capacity), -1, "int32"),
        ops.zeros((batch,), "int32"),
    )
    _, kept_boxes, kept_scores, kept_labels, _, count = ops.while_loop(
        more_work, resolve_tile, init
    )
    return kept_boxes, kept_scores, kept_labels, count


def non_max_suppression(
    boxes,
    scores,
    labels=None,
    iou_threshold=0.45,
    score_threshold=0.0,
    max_detections=300,
    class_agnostic=False,
    tile_size=256,
):
    """Batched greedy NMS with static output shapes, class-aware when `labels` are given.

    A candidate takes part when its score is strictly above `score_threshold`. Candidates are
    visited by descending score (ties: lower index first); a candidate is dropped when a kept
    candidate of the same label overlaps it with IoU strictly above `iou_threshold` (the
    semantics of `torchvision.ops.batched_nms`, which the official YOLOv7 uses through class
    offsets). Survivors are returned by descending score, at most `max_detections` per image.

    Args:
        boxes: `(batch, K, 4)` xyxy boxes (any consistent unit, e.g. pixels).
        scores: `(batch, K)` scores.
        labels: `(batch, K)` integer class indices, or `None` (all class 0).
        iou_threshold: IoU above which the lower-scoring box of a pair is suppressed.
        score_threshold: candidates with a score at or below this are ignored.
        max_detections: D, the number of output rows per image.
        class_agnostic: suppress across classes (labels are still returned).
        tile_size: see `greedy_nms` (no effect on the result).

    Returns:
        A dict, padded per image after `num_detections` rows with -1:
        `"boxes"` `(batch, D, 4)` xyxy, `"confidence"` `(batch, D)` float32, `"labels"`
        `(batch, D)` int32, `"num_detections"` `(batch,)` int32.
    """
    boxes = ops.cast(ops.convert_to_tensor(boxes), "float32")
    scores = ops.cast(ops.convert_to_tensor(scores), "float32")
    if labels is None:
        labels = ops.zeros(ops.shape(scores), "int32")
    labels = ops.cast(ops.convert_to_tensor(labels), "int32")
    if len(boxes.shape) != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (batch, K, 4) xyxy, got shape {tuple(boxes.shape)}")

    valid = scores > score_threshold
    order = sort_by_score(scores, valid)
    boxes = ops.take_along_axis(boxes, ops.expand_dims(order, -1), axis=1)
    scores = ops.take_along_axis(scores, order, axis=1)
    labels = ops.take_along_axis(labels, order, axis=1)
    valid = ops.take_along_axis(valid, order, axis=1)

    groups = ops.zeros_like(labels) if class_agnostic else labels
    boxes, scores, labels, count = greedy_nms(
        boxes, scores, labels, groups, valid, iou_threshold, max_detections, tile_size
    )
    return {"boxes": boxes, "confidence": scores, "labels": labels, "num_detections": count}
