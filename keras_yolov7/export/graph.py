"""The TensorFlow graph every export is built from: network, decode tail and NMS variants.

The tail is written for quantisation and mobile delegates: per-candidate constants are folded so
each step is one multiply or add, boxes are normalised to [0, 1] and kept apart from the scores
(one int8 scale cannot serve pixel boxes and [0, 1] scores), and every shape is static.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_yolov7.export.layout import BOX_UNITS
from keras_yolov7.export.layout import DECODE_SCOPE
from keras_yolov7.export.layout import CLASS_SHIFT
from keras_yolov7.export.layout import MAX_CLASSES
from keras_yolov7.export.layout import NMS_BOX_RANGE
from keras_yolov7.export.layout import NMS_OPS
from keras_yolov7.export.layout import SCORE_UNITS

# The int8 range of the head's logits. Calibrated min / max ranges are set by rare outliers (logits
# of -45 and +230 on a trained model), which leaves steps of 0.1 to 1 logit for the values that
# matter. Past +-8 the sigmoid is within 3.4e-4 of 0 or 1: saturating there changes no score that
# passes the 0.001 evaluation threshold and moves boxes by under 0.1%.
LOGIT_RANGE = 8.0


def nearest_upsample(x, size):
    """Nearest-neighbour upsampling as CONCATENATION + RESHAPE.

    Keras lowers `UpSampling2D(interpolation="nearest")` to TILE, which XNNPACK and most NPU
    delegates do not take (the graph then splits into several delegate partitions); copying
    through concat and reshape is the same result in ops every delegate supports.
    """
    rows, cols = size
    _, height, width, channels = x.shape
    x = tf.reshape(tf.concat([x] * cols, axis=-1), (-1, height, width * cols, channels))
    x = tf.concat([x] * rows, axis=2)
    return tf.reshape(x, (-1, height * rows, width * cols, channels))


def _delegate_friendly(operation):
    if isinstance(operation, keras.layers.UpSampling2D) and operation.interpolation == "nearest":
        return lambda x: nearest_upsample(x, operation.size)
    if isinstance(operation, keras.Model):
        # A nested functional model (the detector's backbone): replayed the same way.
        return lambda x, **_: operation._run_through_graph(x, operation_fn=_delegate_friendly)
    return operation


class ExportGraph:
    """Turns a fused, fixed-size YOLOv7ObjectDetector into the tensors the exports serve.

    Args:
        model: a fused `YOLOv7ObjectDetector` with a static square input
            (`keras_yolov7.export.fixed_size_model`).
        int8: the graph is for full-integer quantisation (pins the ranges the quantiser cannot
            calibrate: see `_normalise`).

    Output conventions (all exports):
        boxes: `(batch, N, 4)` xyxy normalised to [0, 1] of the network input, clipped.
        scores: `(batch, N, num_classes)` objectness times class probability.
        N = sum over lead levels of (size / stride)^2 * num_anchors (6300 at 320, 25200 at 640
        for the P5 models).
    """

    def __init__(self, model, int8=False):
        if not model.fused:
            raise ValueError("ExportGraph needs a fused model with a static input size")
        height, width = model.backbone.image_shape[:2]
        if height is None or height != width:
            raise ValueError(
                f"ExportGraph needs a static square input, got {height} x {width}"
            )
        self.model = model
        self.int8 = bool(int8)
        self.image_size = int(height)
        self.num_classes = int(model.num_classes)
        xy_gain, xy_offset, half_wh_gain = [], [], []
        for anchors, stride in zip(model.anchors, model.strides):
            cells = self.image_size // stride
            gy, gx = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
            grid = np.stack([gx, gy], -1)[:, :, None, :].astype(np.float64)  # (H, W, 1, 2)
            grid = np.broadcast_to(grid, (cells, cells, len(anchors), 2)).reshape(-1, 2)
            size = np.broadcast_to(anchors, (cells, cells, len(anchors), 2)).reshape(-1, 2)
            # decode: xy = (2 s - 0.5 + grid) * stride; wh = (2 s)^2 * anchor; all / image size
            xy_gain.append(np.full((len(grid), 1), 2.0 * stride / self.image_size))
            xy_offset.append((grid - 0.5) * stride / self.image_size)
            half_wh_gain.append(2.0 * size / self.image_size)
        self.num_candidates = sum(len(g) for g in xy_gain)
        # Per level: an int8 graph decodes each level in its own quantisation ranges (below).
        self._xy_gain = [g.astype(np.float32) for g in xy_gain]
        self._xy_offset = [o.astype(np.float32) for o in xy_offset]
        self._half_wh_gain = [g.astype(np.float32) for g in half_wh_gain]

    def raw(self, images):
        """Lead-level logits `(batch, H_l, W_l, num_anchors, 5 + num_classes)` for `images`."""
        # Functional graph replay with delegate-friendly ops swapped in (see nearest_upsample).
        outputs = self.model._run_through_graph(images, operation_fn=_delegate_friendly)
        return list(outputs)[: self.model.num_levels]

    def _sigmoid_levels(self, images):
        """Per lead level, the sigmoid of the logits `(batch, H_l * W_l * anchors, 5 + C)`."""
        levels = []
        outputs = self.raw(images)
        # Every op after the network is in the "decode" scope: ONNX int8 quantisation leaves
        # them in float by that name (see onnx.quantize).
        with tf.name_scope(DECODE_SCOPE):
            for raw in outputs:
                _, height, width, anchors, channels = raw.shape
                if self.int8:
                    raw = tf.quantization.fake_quant_with_min_max_args(
                        raw, -LOGIT_RANGE, LOGIT_RANGE
                    )
                levels.append(tf.reshape(tf.sigmoid(raw), (-1, height * width * anchors, channels)))
        return levels

    def decoded(self, images, clip=True):
        """`(boxes, scores)`: boxes `(batch, N, 4)` normalised xyxy, scores `(batch, N, C)`.

        Args:
            clip: clip the boxes to [0, 1]. An int8 graph always does: [0, 1] is their
                quantisation range.
        """
        # Each level is decoded on its own and the levels meet as [0, 1] boxes and scores. In an
        # int8 graph every intermediate then has the range of its own level: decoding all levels
        # in one tensor gave the half sizes the range of the largest anchor (up to 7 image sides
        # at 128 px), a step of several pixels for the smallest boxes.
        levels = self._sigmoid_levels(images)
        with tf.name_scope(DECODE_SCOPE):
            return self._decode_levels(levels, clip)

    def _decode_levels(self, levels, clip):
        boxes, scores = [], []
        for level, s in enumerate(levels):
            xy = s[..., 0:2] * self._xy_gain[level] + self._xy_offset[level]
            # (s * gain) * s rather than s * s * gain: the int8 product keeps the level's range.
            half_wh = s[..., 2:4] * self._half_wh_gain[level] * s[..., 2:4]  # SQUARE: no int8 kernel
            level_boxes = tf.concat([xy - half_wh, xy + half_wh], axis=-1)
            if self.int8:
                # The [0, 1] quantisation range clips by saturation, with no op: XNNPACK does not
                # delegate int8 MINIMUM / RELU, which would split the graph.
                level_boxes = tf.quantization.fake_quant_with_min_max_args(level_boxes, 0.0, 1.0)
            elif clip:
                level_boxes = tf.clip_by_value(level_boxes, 0.0, 1.0)
            boxes.append(level_boxes)
            scores.append(s[..., 5:] * s[..., 4:5])
        return tf.concat(boxes, axis=1), tf.concat(scores, axis=1)

    def nms(self, images, op, max_detections, iou_threshold, score_threshold):
        """Decode and class-aware NMS with the builtin NON_MAX_SUPPRESSION_V4 or _V5 op.

        The semantics of `predict()` (and the official YOLOv7 NMS): each candidate keeps its best
        class; boxes of different classes are shifted apart so one single-class NMS call is
        class-aware; the NMS compares the boxes before they are clipped to the image (clamped to
        `NMS_BOX_RANGE`), and the kept boxes are clipped after it. An int8 graph's boxes are
        clipped before (their quantisation range is [0, 1]).

        Returns:
            dict with boxes `(batch, max_detections, 4)` normalised xyxy, scores
            `(batch, max_detections)`, classes `(batch, max_detections)` int32 and count
            `(batch,)` int32; entries past count are 0 (classes -1).
        """
        if op not in NMS_OPS:
            raise ValueError(f"unknown NMS op {op!r}; expected one of {NMS_OPS}")
        if self.num_classes > MAX_CLASSES:
            raise ValueError(
                f"in-graph NMS supports at most {MAX_CLASSES} classes, the model has "
                f"{self.num_classes}"
            )
        boxes, scores = self.decoded(images, clip=False)

        def one_image(args):
            return _class_aware_nms(
                *args,
                op,
                max_detections,
                float(iou_threshold),
                float(score_threshold),
                self.int8,
            )

        if boxes.shape[0] == 1:  # static batch of one (TFLite): no loop in the graph
            outputs = one_image((boxes[0], scores[0]))
            outputs = [tf.expand_dims(o, 0) for o in outputs]
        else:
            signature = (
                tf.TensorSpec((max_detections, 4), tf.float32),
                tf.TensorSpec((max_detections,), tf.float32),
                tf.TensorSpec((max_detections,), tf.int32),
                tf.TensorSpec((), tf.int32),
            )
            outputs = tf.map_fn(one_image, (boxes, scores), fn_output_signature=signature)
        return dict(zip(("boxes", "scores", "classes", "count"), outputs))

    def android(self, images, max_detections, iou_threshold, score_threshold):
        """The ObjectDetector layout: `nms(images, "v5", ...)` in SSD conventions.

        MediaPipe's and the Task Library's ObjectDetector read four float32 outputs (uint8 or
        float32 categories, nothing else) that TFLite_Detection_PostProcess defined: boxes
        ymin, xmin, ymax, xmax; classes and count as floats. The NMS itself is the builtin V5 op
        with the class-aware semantics of `predict()`, not TFLite_Detection_PostProcess, whose
        per-class NMS repeats a box for every class above the threshold, leaves boxes unclipped
        and, on runtimes of 2.21 / LiteRT 2.3, returns other detections with 2 or more threads.

        Returns:
            dict with boxes `(1, K, 4)` ymin, xmin, ymax, xmax normalised, classes `(1, K)`
            float32, scores `(1, K)`, count `(1,)` float32; entries past count are 0
            (classes -1).
        """
        outputs = self.nms(images, "v5", max_detections, iou_threshold, score_threshold)
        boxes = tf.gather(outputs["boxes"], [1, 0, 3, 2], axis=-1)
        return {
            "boxes": boxes,
            "classes": tf.cast(outputs["classes"], tf.float32),
            "scores": outputs["scores"],
            "count": tf.cast(outputs["count"], tf.float32),
        }


def _class_aware_nms(boxes, scores, op, max_detections, iou_threshold, score_threshold, pin_ranges):
    # Everything from the integer boxes on is int32 or float32 from int32: no op after the NMS is
    # quantisable, so an int8 model's outputs keep the decoded boxes' and scores' precision
    # instead of inheriting a scale calibrated on (possibly empty) NMS results.
    best = tf.reduce_max(scores, axis=-1)
    classes = tf.argmax(scores, axis=-1, output_type=tf.int32)
    if not pin_ranges:  # int8 boxes are within [0, 1] already (their quantisation range)
        boxes = tf.clip_by_value(boxes, *NMS_BOX_RANGE)
    fixed_boxes = tf.cast(tf.round(boxes * float(BOX_UNITS)), tf.int32)
    fixed_scores = tf.cast(tf.round(best * float(SCORE_UNITS)), tf.int32)
    # TFLite's NMS kernel never suppresses a zero-area box, not even by itself, and then selects
    # it again and again: give degenerate (e.g. clipped-away) boxes a one-unit extent.
    extent = tf.maximum(fixed_boxes[:, 2:], fixed_boxes[:, :2] + 1)
    nms_boxes = tf.concat([fixed_boxes[:, :2], extent], axis=-1) + classes[:, None] * CLASS_SHIFT
    shifted = tf.cast(nms_boxes, tf.float32)
    if op == "v4":
        # The unbatched padded NMS lowers to NonMaxSuppressionV4 (builtin NON_MAX_SUPPRESSION_V4).
        index, count = tf.image.non_max_suppression_padded(
            shifted,
            best,
            max_detections,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            pad_to_max_output_size=True,
        )
    else:
        index, _, count = tf.raw_ops.NonMaxSuppressionV5(
            boxes=shifted,
            scores=best,
            max_output_size=max_detections,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
            soft_nms_sigma=0.0,
            pad_to_max_output_size=True,
        )
    valid = tf.range(max_detections) < count
    kept = tf.clip_by_value(tf.gather(fixed_boxes, index), 0, BOX_UNITS)
    out_boxes = tf.where(valid[:, None], kept, 0)
    out_scores = tf.where(valid, tf.gather(fixed_scores, index), 0)
    out_classes = tf.where(valid, tf.gather(classes, index), -1)
    return (
        _normalise(out_boxes, BOX_UNITS, pin_ranges),
        _normalise(out_scores, SCORE_UNITS, pin_ranges),
        out_classes,
        tf.reshape(count, ()),
    )


def _normalise(fixed, units, pin_ranges):
    values = tf.cast(fixed, tf.float32)
    if not pin_ranges:
        return values / float(units)
    # int8: the quantiser would calibrate these ranges on the NMS results seen during
    # calibration (none at all when no calibration image has a detection, which collapses the
    # outputs to zero); their true ranges are known, so pin them.
    pin = tf.quantization.fake_quant_with_min_max_args
    return pin(pin(values, 0.0, float(units)) / float(units), 0.0, 1.0)
