"""From raw YOLOv7 outputs to final detections: decode, candidate selection, batched NMS.

Follows the official `non_max_suppression` of YOLOv7 with static shapes:

- score = objectness * class probability; a candidate needs score > `confidence_threshold`
  (the official code also filters objectness > threshold first, which the score test implies,
  since class probabilities are at most 1);
- multi-label (evaluation): every (box, class) pair above the threshold is a candidate; otherwise
  (detection) each box keeps its best class only;
- the official code sorts the candidates and keeps at most `max_nms = 30000` before NMS. Static
  shapes need a fixed capacity, so the `pre_nms_top_k` highest-scoring candidates go to NMS: the
  same rule with a smaller cap. When it binds, only the lowest-scoring candidates are dropped.
  The default 3000 keeps NMS cheap; `pre_nms_top_k=30000` reproduces the official cap exactly,
  at up to about ten times the NMS cost when few candidates survive (see
  `benchmarks/nms_cost.py`);
- class-aware greedy NMS (IoU strictly above `iou_threshold` suppresses), at most
  `max_detections` results per image by descending score.
"""

from keras import ops
from keras.utils import bounding_boxes

from keras_yolov7.ops.boxes import center_xywh_to_xyxy
from keras_yolov7.ops.decode import decode_predictions
from keras_yolov7.ops.nms import non_max_suppression

EVALUATION_SETTINGS = {
    "confidence_threshold": 0.001,
    "iou_threshold": 0.65,
    "max_detections": 300,
    "multi_label": True,
}
"""The official YOLOv7 test.py settings, used for COCO mAP."""

DETECTION_SETTINGS = {
    "confidence_threshold": 0.25,
    "iou_threshold": 0.45,
    "max_detections": 300,
    "multi_label": False,
}
"""The official YOLOv7 detect.py settings (the `postprocess` defaults)."""


def select_candidates(predictions, confidence_threshold, multi_label, pre_nms_top_k):
    """The `pre_nms_top_k` best (box, class) candidates of decoded predictions.

    Args:
        predictions: `(batch, N, 5 + num_classes)` from `decode_predictions`: center_xywh pixel
            boxes, objectness and class probabilities.
        confidence_threshold: candidates need objectness * class probability above this.
        multi_label: every class above the threshold is a candidate (else the best class only).
        pre_nms_top_k: K, the candidate capacity.

    Returns:
        `(boxes, scores, labels)`: `(batch, K, 4)` xyxy pixels, `(batch, K)` scores (-1 where
        there is no candidate) and `(batch, K)` int32 labels. Candidates are ordered by flat
        index (box-major, then class), which makes tie-breaking in NMS deterministic even where
        the backend's `top_k` is not stable.
    """
    predictions = ops.convert_to_tensor(predictions)
    num_classes = predictions.shape[2] - 5
    boxes = center_xywh_to_xyxy(predictions[..., :4])
    class_scores = predictions[..., 4:5] * predictions[..., 5:]
    if multi_label and num_classes > 1:
        flat = ops.reshape(class_scores, (ops.shape(class_scores)[0], -1))
    else:
        flat = ops.max(class_scores, axis=-1)
    flat = ops.where(flat > confidence_threshold, flat, -1.0)
    capacity = int(pre_nms_top_k)
    if flat.shape[1] is None or flat.shape[1] < capacity:
        # Fewer candidates than the capacity (or a count unknown while tracing, e.g. in Keras'
        # predict function on images of any size): pad with non-candidates so top_k's k is static.
        flat = ops.concatenate([flat, -ops.ones((ops.shape(flat)[0], capacity), flat.dtype)], axis=1)
    scores, index = ops.top_k(flat, capacity)
    order = ops.argsort(index, axis=-1)
    scores = ops.take_along_axis(scores, order, axis=1)
    index = ops.take_along_axis(index, order, axis=1)
    # Padding entries point past the real candidates; any in-range index serves (their score is -1).
    index = ops.minimum(index, ops.shape(predictions)[1] * max(num_classes, 1) - 1)
    if multi_label and num_classes > 1:
        box_index, labels = index // num_classes, index % num_classes
    else:
        index = ops.minimum(index, ops.shape(predictions)[1] - 1)
        box_index = index
        labels = ops.take_along_axis(
            ops.argmax(class_scores, axis=-1), ops.cast(index, "int32"), axis=1
        )
    boxes = ops.take_along_axis(boxes, ops.expand_dims(box_index, -1), axis=1)
    return boxes, scores, ops.cast(labels, "int32")


def boxes_to_original(boxes, scale, pad, original_size=None):
    """Undo letterboxing: network-input pixels -> original-image pixels.

    Args:
        boxes: `(batch, D, 4)` xyxy in letterboxed (network input) pixels.
        scale: `(batch,)` original -> letterboxed resize factor.
        pad: `(batch, 2)` `(x, y)` offset added after scaling.
        original_size: optional `(batch, 2)` `(height, width)`; boxes are clipped to it.

    Returns:
        `(batch, D, 4)` xyxy in original-image pixels: `x = (x_letterboxed - pad_x) / scale`.
    """
    boxes = ops.convert_to_tensor(boxes)
    scale = ops.reshape(ops.cast(scale, boxes.dtype), (-1, 1, 1))
    pad = ops.cast(pad, boxes.dtype)
    offset = ops.expand_dims(ops.concatenate([pad, pad], axis=-1), 1)
    boxes = (boxes - offset) / scale
    if original_size is not None:
        size = ops.cast(original_size, boxes.dtype)
        height, width = size[:, 0:1], size[:, 1:2]
        limit = ops.expand_dims(ops.concatenate([width, height, width, height], axis=-1), 1)
        boxes = ops.minimum(ops.maximum(boxes, 0.0), limit)
    return boxes


def postprocess(
    raw_outputs,
    anchors,
    strides,
    num_classes,
    confidence_threshold=0.25,
    iou_threshold=0.45,
    max_detections=300,
    multi_label=False,
    bounding_box_format="xyxy",
    pre_nms_top_k=3000,
    class_agnostic=False,
    scale=None,
    pad=None,
    original_size=None,
    tile_size=256,
):
    """Decode raw YOLOv7 outputs and run batched, class-aware NMS (static shapes, any backend).

    Two standard settings:
    - detection (default): `confidence_threshold=0.25, iou_threshold=0.45, multi_label=False`;
    - COCO evaluation (official test.py): `confidence_threshold=0.001, iou_threshold=0.65,
      multi_label=True, max_detections=300`.

    Args:
        raw_outputs: list of per-level logits `(batch, H_l, W_l, num_anchors, 5 + num_classes)`
            as returned by `YOLOv7ObjectDetector`; auxiliary levels past `len(strides)` are ignored.
        anchors: `(num_levels, num_anchors, 2)` anchors in pixels (`model.anchors`).
        strides: per-level strides (`model.strides`).
        num_classes: number of classes (checked against the outputs).
        confidence_threshold: candidates need objectness * class probability above this.
        iou_threshold: NMS suppresses a same-class box overlapping a kept one by more than this.
        max_detections: D, detections returned per image.
        multi_label: every class above the threshold is a candidate (evaluation setting), else
            only each box's best class.
        bounding_box_format: a Keras bounding box format for the returned boxes ("xyxy",
            "xywh", "center_xywh", "yxyx", "rel_xyxy", ...). Relative formats are relative to
            the network input, or to `original_size` when letterbox metadata is given.
        pre_nms_top_k: candidates kept (by score) before NMS; the official code caps at 30000.
        class_agnostic: NMS across classes (official `--agnostic-nms`).
        scale, pad: optional letterbox metadata, `(batch,)` and `(batch, 2)` `(x, y)`: boxes are
            mapped back to original-image pixels, `x = (x_input - pad_x) / scale`.
        original_size: optional `(batch, 2)` `(height, width)` of the original images; boxes in
            original pixels are clipped to it.
        tile_size: NMS tile (memory vs sequential steps; no effect on the result).

    Returns:
        A dict, each image's rows sorted by descending confidence and padded with -1 after
        `num_detections`:
        `"boxes"` `(batch, D, 4)` float32 in `bounding_box_format`, pixels of the network input
        (of the original image with letterbox metadata); `"confidence"` `(batch, D)` float32
        (objectness * class probability); `"labels"` `(batch, D)` int32 class indices;
        `"num_detections"` `(batch,)` int32.
    """
    if len(raw_outputs) < len(strides):
        raise ValueError(f"got {len(raw_outputs)} output levels but {len(strides)} strides")
    channels = raw_outputs[0].shape[-1]
    if channels != 5 + num_classes:
        raise ValueError(
            f"outputs have {channels} channels per anchor but num_classes is {num_classes}; "
            f"expected 5 + num_classes = {5 + num_classes}"
        )
    if (scale is None) != (pad is None):
        raise ValueError("letterbox metadata needs both scale and pad, got only one of them")
    if original_size is not None and scale is None:
        raise ValueError("original_size needs the letterbox scale and pad to map boxes back")

    predictions = decode_predictions(raw_outputs, anchors, strides)
    boxes, scores, labels = select_candidates(
        ops.cast(predictions, "float32"), confidence_threshold, multi_label, pre_nms_top_k
    )
    detections = non_max_suppression(
        boxes,
        scores,
        labels,
        iou_threshold=iou_threshold,
        score_threshold=confidence_threshold,
        max_detections=max_detections,
        class_agnostic=class_agnostic,
        tile_size=tile_size,
    )

    boxes = detections["boxes"]
    if scale is not None:
        boxes = boxes_to_original(boxes, scale, pad, original_size)
    if bounding_box_format.lower() != "xyxy":
        height, width = _reference_size(raw_outputs[0], strides[0], original_size)
        boxes = bounding_boxes.convert_format(
            boxes, source="xyxy", target=bounding_box_format, height=height, width=width
        )
    found = ops.expand_dims(detections["labels"] >= 0, -1)
    detections["boxes"] = ops.where(found, boxes, -1.0)
    return detections


def _reference_size(first_level, first_stride, original_size):
    """Height and width that relative box formats refer to, shaped to broadcast over boxes."""
    if original_size is not None:
        size = ops.cast(original_size, "float32")
        return ops.reshape(size[:, 0], (-1, 1, 1)), ops.reshape(size[:, 1], (-1, 1, 1))
    shape = ops.shape(first_level)
    return shape[1] * first_stride, shape[2] * first_stride
