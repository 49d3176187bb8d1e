"""A DetectionDataset as constant tensors, for random access by index inside tf.data functions."""

import dataclasses

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class RecordTable:
    """Every record's file, size and boxes as tensors; boxes of image `i` are rows
    `row_splits[i]:row_splits[i + 1]` of `boxes` / `labels`.

    Attributes:
        paths: `(N,)` string.
        orientations: `(N,)` int32 EXIF codes.
        sizes: `(N, 2)` int32 `(height, width)` original pixels.
        image_ids: `(N,)` int64.
        boxes: `(total, 4)` float32 xyxy original pixels.
        labels: `(total,)` int32.
        row_splits: `(N + 1,)` int32.
        max_boxes_per_image: python int, at least 1.
    """

    paths: tf.Tensor
    orientations: tf.Tensor
    sizes: tf.Tensor
    image_ids: tf.Tensor
    boxes: tf.Tensor
    labels: tf.Tensor
    row_splits: tf.Tensor
    max_boxes_per_image: int

    @classmethod
    def from_dataset(cls, dataset):
        """Builds the table; crowd / difficult boxes are left out (they are never targets)."""
        if not len(dataset):
            raise ValueError("the dataset has no records")
        kept = [~record.crowd for record in dataset.records]
        counts = np.array([int(k.sum()) for k in kept], np.int64)
        boxes = [record.boxes[k] for record, k in zip(dataset.records, kept)]
        labels = [record.labels[k] for record, k in zip(dataset.records, kept)]
        return cls(
            paths=tf.constant([str(r.image_path) for r in dataset.records]),
            orientations=tf.constant([int(r.orientation) for r in dataset.records], tf.int32),
            sizes=tf.constant([[r.height, r.width] for r in dataset.records], tf.int32),
            image_ids=tf.constant([int(r.image_id) for r in dataset.records], tf.int64),
            boxes=tf.constant(np.concatenate(boxes).reshape(-1, 4), tf.float32),
            labels=tf.constant(np.concatenate(labels).reshape(-1), tf.int32),
            row_splits=tf.constant(np.concatenate([[0], np.cumsum(counts)]), tf.int32),
            max_boxes_per_image=max(1, int(counts.max())),
        )

    def __len__(self):
        return int(self.paths.shape[0])

    def boxes_of(self, index, pad_to=None):
        """`(boxes (n, 4), labels (n,))` of image `index`; padded with -1 to `pad_to` rows."""
        start, end = self.row_splits[index], self.row_splits[index + 1]
        boxes, labels = self.boxes[start:end], self.labels[start:end]
        if pad_to is not None:
            boxes = tf.pad(boxes, [[0, pad_to - (end - start)], [0, 0]], constant_values=-1.0)
            labels = tf.pad(labels, [[0, pad_to - (end - start)]], constant_values=-1)
        return boxes, labels
