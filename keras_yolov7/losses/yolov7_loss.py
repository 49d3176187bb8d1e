"""The YOLOv7 training loss: OTA box / objectness / class terms with lead-guided coarse-to-fine assignment.

Equal, to float precision, to the official `ComputeLossOTA` (models without auxiliary heads) and
`ComputeLossAuxOTA` (P6 models in training form), without their data-dependent shapes.
"""

import keras
import numpy as np
from keras import ops

from keras_yolov7.losses.assigner import COARSE_OFFSET
from keras_yolov7.losses.assigner import FINE_OFFSET
from keras_yolov7.losses.assigner import candidates
from keras_yolov7.losses.assigner import gather_cells
from keras_yolov7.losses.assigner import simota
from keras_yolov7.losses.target_checks import sanitize_targets
from keras_yolov7.ops.boxes import complete_iou

OFFICIAL_GAINS = {
    "p5": {"box": 0.05, "obj": 0.7, "cls": 0.3},
    "tiny": {"box": 0.05, "obj": 1.0, "cls": 0.5},
    "p6": {"box": 0.05, "obj": 0.7, "cls": 0.3},
}
"""Official loss gains before scaling (data/hyp.scratch.{p5,tiny,p6}.yaml)."""

_DEFAULT_BALANCE = {3: (4.0, 1.0, 0.4), 4: (4.0, 1.0, 0.25, 0.06)}

# Stand-in target (grid units, relative to the cell) for candidates that are not positive: keeps the
# masked-out CIoU and its gradient finite.
_NEUTRAL_BOX = (0.5, 0.5, 1.0, 1.0)


@keras.saving.register_keras_serializable(package="keras_yolov7")
class YOLOv7Loss(keras.losses.Loss):
    """YOLOv7's loss (arXiv 2207.02696): SimOTA-assigned CIoU box, objectness and class terms.

    Assignment: every target proposes candidate cells per level and anchor (anchor ratio below
    `anchor_t`; the centre cell and neighbours), and SimOTA picks each target's positives among all
    candidates of its image using the lead head's predictions (no gradient). The lead head is
    trained on the fine assignment (the centre cell and the neighbours less than half a cell away,
    usually 2); auxiliary outputs, when given, on the coarse one (the centre cell and its 4
    neighbours), also chosen on the lead head's predictions, weighted `aux_weight`.

    Per level: `box = mean(1 - CIoU)` over positives (grid units, relative to the cell);
    objectness BCE over all cells against `clamp(CIoU, 0)` at the positives (no gradient through the
    target) times `balance[level]`; class BCE over positives with targets `1 - eps/2` / `eps/2`
    (`eps = label_smoothing`), only when `num_classes > 1`.

    Gains: pass the official hyperparameters as written in the hyp files (`OFFICIAL_GAINS`); the
    official scaling is applied inside: `box * 3 / nl`, `cls * num_classes / 80 * 3 / nl`,
    `obj * (height * width / 640^2) * 3 / nl`, with `nl` the number of lead levels and
    `height, width` the network input size, read from the predictions' shapes times the strides.

    Deliberate differences from the official code: a batch without targets gives the
    objectness-only loss instead of crashing; target boxes are clipped to the image
    (`clip_boxes`); boxes that are padding, empty after clipping, non-finite or of a class
    outside `[0, num_classes)` are ignored; when positives of different targets share a cell and
    anchor, the objectness target there is the largest of their CIoUs (the official result depends
    on write order).

    Args:
        num_classes: number of classes.
        anchors: `(num_levels, num_anchors, 2)` anchor widths and heights in pixels (or
            `(num_levels, 2 * num_anchors)`, as in the architecture configs).
        strides: per-level strides in pixels.
        box, obj, cls: gains before the official scaling (see above). Defaults: P5 / P6 values.
        label_smoothing: class label smoothing `eps`.
        anchor_t: anchor ratio threshold of the candidates.
        balance: per-level objectness weights; default `[4, 1, 0.4]` (3 levels),
            `[4, 1, 0.25, 0.06]` (4 levels).
        aux_weight: weight of the auxiliary head's terms.
        topk: number of best IoUs summed into SimOTA's `dynamic_k`; default 10 without auxiliary
            outputs (`ComputeLossOTA`), 20 with them (`ComputeLossAuxOTA`, for both assignments).
        clip_boxes: clip target boxes to the image first. The official loss takes boxes as given
            (its data pipeline has clipped them); `False` reproduces it on unclipped boxes.

    Call `compute_components(y_true, y_pred)` for all terms, or the loss itself for the training
    objective:
        y_true: `{"boxes": (batch, max_boxes, 4), "labels": (batch, max_boxes)}`: xyxy boxes in
            pixels of the network input and class indices, padded with -1 (`"classes"` is
            accepted for `"labels"`).
        y_pred: the model's list of raw outputs, lead levels then (optionally) auxiliary levels,
            each `(batch, height / stride, width / stride, num_anchors, 5 + num_classes)`.

    Example:
    >>> model = YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=3)
    >>> loss = YOLOv7Loss.from_detector(model)
    >>> parts = loss.compute_components(y_true, model(images, training=True))
    >>> parts["loss"], parts["box"], parts["obj"], parts["cls"]
    """

    def __init__(
        self,
        num_classes,
        anchors,
        strides,
        box=0.05,
        obj=0.7,
        cls=0.3,
        label_smoothing=0.0,
        anchor_t=4.0,
        balance=None,
        aux_weight=0.25,
        topk=None,
        clip_boxes=True,
        name="yolov7_loss",
        reduction="sum",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.num_classes = int(num_classes)
        self.strides = [int(s) for s in strides]
        num_levels = len(self.strides)
        anchors = np.asarray(anchors, "float32")
        if anchors.shape[0] != num_levels or anchors[0].size % 2:
            raise ValueError(
                f"anchors must be (num_levels={num_levels}, num_anchors, 2) pixels, got shape {anchors.shape}"
            )
        self.anchors = anchors.reshape(num_levels, -1, 2).tolist()
        if balance is None:
            if num_levels not in _DEFAULT_BALANCE:
                raise ValueError(f"no default balance for {num_levels} levels; pass balance=[...]")
            balance = _DEFAULT_BALANCE[num_levels]
        self.balance = [float(b) for b in balance][:num_levels]
        if len(self.balance) != num_levels:
            raise ValueError(f"balance has {len(self.balance)} weights for {num_levels} levels")
        self.box, self.obj, self.cls = float(box), float(obj), float(cls)
        self.label_smoothing = float(label_smoothing)
        self.anchor_t = float(anchor_t)
        self.aux_weight = float(aux_weight)
        self.topk = topk
        self.clip_boxes = bool(clip_boxes)

    @classmethod
    def from_detector(cls, model, /, **kwargs):
        """The official loss of a `YOLOv7ObjectDetector`: its classes, anchors and strides, and the gains
        of its family (`model.family`: "tiny", "p5" or "p6"; see `OFFICIAL_GAINS`). Keyword
        arguments override any constructor argument."""
        config = {
            "num_classes": model.num_classes,
            "anchors": model.anchors,
            "strides": model.strides,
            **OFFICIAL_GAINS[model.family],
        }
        config.update(kwargs)
        return cls(**config)

    def call(self, y_true, y_pred):
        return self.compute_components(y_true, y_pred)["loss"]

    def compute_components(self, y_true, y_pred, replica_sum=None, compact_targets=False):
        """All terms of the loss, as float32 scalars.

        Args:
            y_true, y_pred: see the class docstring.
            replica_sum: for a batch split over replicas that each compute the loss of their
                share (tf.distribute), a function summing a value over the replicas
                (`keras_yolov7.training.sum_over_replicas`): every normaliser (positives per
                level, objectness cells, batch size) is then the global batch's, so that the
                replicas' terms add up to the terms of the global batch, and their gradients to
                its gradient. None: the call sees the whole batch.
            compact_targets: first cut the padded target rows down to the batch's largest count
                (through the last valid row, so nothing valid is dropped and the order is kept).
                The assignment's matrices grow with the square of the rows (each target owns
                candidate columns), so on a batch of COCO images padded to 200 rows this saves
                most of the loss's time; the result is the same (padding rows have no
                candidates). It makes the shapes depend on the data: pass True only where that is
                allowed (a TensorFlow graph without XLA, eager PyTorch or JAX outside `jit`);
                `YOLOv7ObjectDetector.compute_loss` does.

        Returns:
            A dict: `"box"`, `"obj"`, `"cls"` the gain-weighted terms (lead plus `aux_weight` times
            auxiliary, as the official `loss_items`), `"total" = box + obj + cls`, `"aux"` the
            auxiliary head's share of `total` (0 without auxiliary outputs) and `"loss" =
            total * batch_size`, the official training objective.
        """
        num_levels = len(self.strides)
        replica_sum = replica_sum or _whole_batch
        outputs = [ops.cast(p, "float32") for p in y_pred]
        if len(outputs) not in (num_levels, 2 * num_levels):
            raise ValueError(
                f"expected {num_levels} lead outputs, optionally followed by {num_levels} auxiliary "
                f"outputs; got {len(outputs)}"
            )
        lead, auxiliary = outputs[:num_levels], outputs[num_levels:]
        topk = self.topk if self.topk is not None else (20 if auxiliary else 10)

        labels = y_true["labels"] if "labels" in y_true else y_true["classes"]
        first = ops.shape(lead[0])
        batch = first[0]
        image_height, image_width = first[1] * self.strides[0], first[2] * self.strides[0]
        boxes, labels, valid = sanitize_targets(
            y_true["boxes"], labels, self.num_classes, image_height, image_width, clip=self.clip_boxes
        )
        if compact_targets:
            boxes, labels, valid = _compact(boxes, labels, valid)
        targets = (boxes, labels, valid)

        grid_sizes = [tuple(ops.shape(p)[1:3]) for p in lead]

        fine = self._slots(targets, grid_sizes, FINE_OFFSET)
        lead_raw = gather_cells(lead, fine["index"])
        lead_terms = self._head_terms(
            lead, fine, lead_raw, self._assign(targets, fine, lead_raw, topk), replica_sum
        )

        gains = self.scaled_gains(image_height, image_width)
        lead_terms = [t * g for t, g in zip(lead_terms, gains)]
        aux_terms = [ops.zeros((), "float32")] * 3
        if auxiliary:
            coarse = self._slots(targets, grid_sizes, COARSE_OFFSET)
            # Coarse positives are chosen on the lead head's predictions, then trained on the auxiliary.
            assignment = self._assign(targets, coarse, gather_cells(lead, coarse["index"]), topk)
            aux_terms = self._head_terms(
                auxiliary, coarse, gather_cells(auxiliary, coarse["index"]), assignment, replica_sum
            )
            aux_terms = [t * g * self.aux_weight for t, g in zip(aux_terms, gains)]

        box, obj, cls = (a + b for a, b in zip(lead_terms, aux_terms))
        total = box + obj + cls
        return {
            "loss": total * replica_sum(ops.cast(batch, "float32")),
            "total": total,
            "box": box,
            "obj": obj,
            "cls": cls,
            "aux": aux_terms[0] + aux_terms[1] + aux_terms[2],
        }

    def scaled_gains(self, image_height, image_width):
        """`(box, obj, cls)` gains after the official scaling, for a network input of this size.

        `box * 3 / nl`, `obj * (image_height * image_width / 640^2) * 3 / nl` and
        `cls * num_classes / 80 * 3 / nl` (`nl` lead levels); the sizes may be tensors.
        """
        scale = 3.0 / len(self.strides)
        area = ops.cast(image_height * image_width, "float32") / 640.0**2
        return self.box * scale, self.obj * scale * area, self.cls * self.num_classes / 80.0 * scale

    def _slots(self, targets, grid_sizes, offset):
        boxes, _, valid = targets
        return candidates(boxes, valid, grid_sizes, self.anchors, self.strides, offset, self.anchor_t)

    def _assign(self, targets, slots, raw, topk):
        """SimOTA over all levels' candidates: `(positive, target box, target label)`, each
        `(batch, num_levels, K, ...)`."""
        boxes, labels, valid = targets
        positive, matched = simota(boxes, labels, valid, slots, ops.stop_gradient(raw), self.strides, topk)
        # A positive learns from the target it was matched to, which may not be the one that proposed it.
        shape = ops.shape(matched)
        matched = ops.reshape(matched, (shape[0], -1))
        matched_boxes = ops.reshape(ops.take_along_axis(boxes, matched[..., None], axis=1), (*shape, 4))
        matched_labels = ops.reshape(ops.take_along_axis(labels, matched, axis=1), shape)
        return positive, matched_boxes, matched_labels

    def _head_terms(self, outputs, slots, raw, assignment, replica_sum):
        """Unweighted box, objectness (balanced) and class terms of one head, summed over levels.

        `raw`: `(batch, num_levels, K, 5 + num_classes)` the head's logits at the candidates;
        `replica_sum` turns a local count into the global batch's (see `compute_components`).
        """
        positive, target_box, target_label = assignment
        stride = ops.convert_to_tensor([float(s) for s in self.strides], "float32")[:, None, None]
        weight = ops.cast(positive, "float32")
        # Positives per level over the (global) batch; empty levels add 0.
        count = ops.maximum(replica_sum(ops.sum(weight, axis=(0, 2))), 1.0)

        s = ops.sigmoid(raw[..., :4])
        predicted = ops.concatenate(
            [s[..., :2] * 2.0 - 0.5, (s[..., 2:4] * 2.0) ** 2 * (slots["anchor"] / stride)], -1
        )
        target = ops.concatenate(
            [target_box[..., :2] / stride - slots["cell"], target_box[..., 2:4] / stride], -1
        )
        target = ops.where(positive[..., None], target, ops.convert_to_tensor(_NEUTRAL_BOX, "float32"))
        ciou = complete_iou(predicted, target)  # (B, L, K)
        box = ops.sum(ops.sum(weight * (1.0 - ciou), axis=(0, 2)) / count)

        if self.num_classes > 1:
            positive_value, negative_value = 1.0 - 0.5 * self.label_smoothing, 0.5 * self.label_smoothing
            class_target = ops.one_hot(target_label, self.num_classes) * (positive_value - negative_value)
            class_target = class_target + negative_value
            per_candidate = ops.sum(_bce_with_logits(raw[..., 5:], class_target), axis=-1)
            cls = ops.sum(ops.sum(weight * per_candidate, axis=(0, 2)) / (count * self.num_classes))
        else:
            cls = ops.zeros((), "float32")

        # Dense objectness target: clamp(CIoU, 0) at positive cells, 0 elsewhere.
        quality = ops.stop_gradient(ops.maximum(ciou, 0.0)) * weight
        obj = ops.zeros((), "float32")
        for level, output in enumerate(outputs):
            shape = ops.shape(output)
            cells_per_image = shape[1] * shape[2] * shape[3]
            ids = slots["index"][:, level] + ops.arange(shape[0], dtype="int32")[:, None] * cells_per_image
            objectness_target = ops.segment_max(
                ops.reshape(quality[:, level], (-1,)),
                ops.reshape(ids, (-1,)),
                num_segments=shape[0] * cells_per_image,
            )
            objectness_target = ops.maximum(objectness_target, 0.0)  # empty segments hold -inf
            level_bce = _bce_with_logits(ops.reshape(output[..., 4], (-1,)), objectness_target)
            cells = replica_sum(ops.cast(ops.size(level_bce), "float32"))
            level_obj = ops.sum(level_bce) / cells
            obj = obj + level_obj * self.balance[level]
        return box, obj, cls

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            anchors=self.anchors,
            strides=self.strides,
            box=self.box,
            obj=self.obj,
            cls=self.cls,
            label_smoothing=self.label_smoothing,
            anchor_t=self.anchor_t,
            balance=self.balance,
            aux_weight=self.aux_weight,
            topk=self.topk,
            clip_boxes=self.clip_boxes,
        )
        return config


def _compact(boxes, labels, valid):
    """The target rows up to the last valid one of the batch (at least one row): data-dependent
    shapes."""
    rows = ops.arange(1, ops.shape(valid)[1] + 1, dtype="int32")
    keep = ops.maximum(ops.max(ops.where(valid, rows[None, :], 0)), 1)
    if keras.backend.backend() != "tensorflow":
        keep = int(ops.convert_to_numpy(keep))  # eager: a Python int slices
    return boxes[:, :keep], labels[:, :keep], valid[:, :keep]


def _whole_batch(value):
    """The `replica_sum` of a call that sees the whole batch."""
    return value


def _bce_with_logits(logits, targets):
    """Element-wise binary cross-entropy on logits, in the overflow-free form."""
    return ops.relu(logits) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))
