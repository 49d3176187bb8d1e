"""The tf.data training pipeline with the official YOLOv7 augmentations, all in the TF graph.

Per epoch: the image order is shuffled; images are decoded, resized so the longer side is the
network size S (the official load_image) and gathered into pools of `pool_size`. Every image of a
pool is the main image of one sample, whose mosaic and mixup partners are drawn from the same
pool, so each file is decoded once per epoch however many images a sample mixes. Each sample is
then: a 4-image mosaic (or 9 with p 0.2; or with p 1 - mosaic one letterboxed image) -> random
perspective -> the official box filter -> mixup with a second mosaic (Beta(8, 8)) -> HSV jitter ->
flips -> boxes truncated/padded to max_boxes. Samples are shuffled across a few pools and
batched.

Randomness is stateless: every draw (the image order, the mosaic partners, each augmentation, the
shuffle across pools) is keyed on (an epoch key, the sample's position). Given `epochs`, the
dataset holds the epochs `initial_epoch .. epochs - 1` one after the other and the key of epoch
`e` is a function of `(seed, e)` alone, so a run resumed at epoch `e` sees exactly the batches an
uninterrupted run sees there. Without `epochs` the dataset is one epoch whose k-th pass draws the
k-th key of `tf.data.Dataset.random(seed)`: the same in every run with the same seed.
"""

import logging

import numpy as np
import tensorflow as tf

from keras_yolov7.data.augmentation import AugmentationConfig
from keras_yolov7.data.color import augment_hsv
from keras_yolov7.data.color import mixup
from keras_yolov7.data.decode import decode_image
from keras_yolov7.data.decode import pad_to_square
from keras_yolov7.data.decode import resize_longest_side
from keras_yolov7.data.mosaic import compose
from keras_yolov7.data.mosaic import mosaic4_offsets
from keras_yolov7.data.mosaic import mosaic9_offsets
from keras_yolov7.data.mosaic import shift_boxes
from keras_yolov7.data.perspective import box_candidates
from keras_yolov7.data.perspective import random_matrix
from keras_yolov7.data.perspective import sampled_window
from keras_yolov7.data.perspective import warp_boxes
from keras_yolov7.data.perspective import warp_image
from keras_yolov7.data.pipeline_options import pipeline_options
from keras_yolov7.data.tables import RecordTable
from keras_yolov7.data.fixed_size_targets import check_box_format
from keras_yolov7.data.fixed_size_targets import pad_targets

logger = logging.getLogger("keras_yolov7.data")

# Samples are shuffled in windows of this many pools: a batch then mixes images of about this
# many pools instead of repeating one pool's images.
_SHUFFLE_POOLS = 4


def make_train_dataset(
    dataset,
    image_size=640,
    batch_size=16,
    max_boxes=200,
    augmentation=None,
    bounding_box_format="xyxy",
    seed=0,
    shuffle=True,
    pool_size=16,
    stride=32,
    augment_layer=None,
    drop_remainder=False,
    epochs=None,
    initial_epoch=0,
):
    """Builds the augmented training `tf.data.Dataset` for `model.fit` (any Keras backend).

    Args:
        dataset: a `DetectionDataset` (from `read_coco`, `read_yolo`, `read_voc`, ...). Crowd and
            difficult boxes are left out of the targets.
        image_size: network input side S in pixels; a multiple of `stride`.
        batch_size: images per batch.
        max_boxes: targets per image M. A sample with more boxes keeps the M largest (by area,
            original order); the first time it happens a warning is logged, and the running count
            at every power of ten.
        augmentation: an `AugmentationConfig`, or a preset / family name for
            `AugmentationConfig.for_preset` ("yolov7_tiny", "yolov7", "p6", ...). Default: P5.
        bounding_box_format: format of the target boxes, any Keras name ("xyxy", "center_xywh",
            "rel_yxyx", ...); pixels of the S x S image for absolute formats.
        seed: int; the same seed gives the same batches, pass after pass.
        shuffle: shuffle the image order every epoch (and samples across pools).
        pool_size: images a sample draws its mosaic / mixup partners from (also decoded together).
        stride: the model's largest stride (32 for P5 models, 64 for P6).
        augment_layer: optional callable applied to every batch after the built-in augmentations,
            e.g. a Keras 3 or KerasCV bounding-box aware layer built with the same
            `bounding_box_format`. It gets `{"images": (B, S, S, 3) float32 0..255,
            "bounding_boxes": {"boxes": (B, M, 4), "labels": (B, M), "classes": (B, M)}}` ("classes"
            is KerasCV's name for the labels) and returns the same structure (dense padded with
            -1 or ragged).
        drop_remainder: drop the last incomplete batch of each epoch.
        epochs: None: the dataset is one epoch, iterate it once per epoch (`fit(dataset,
            epochs=...)`). An int: the dataset holds the epochs `initial_epoch .. epochs - 1`,
            each drawn from `(seed, epoch)` alone; pass it to `fit(dataset, epochs=epochs,
            initial_epoch=initial_epoch, steps_per_epoch=batches_per_epoch(...))`, which keeps
            one iterator over it, to resume a run at `initial_epoch` exactly.
        initial_epoch: the first epoch held when `epochs` is given.

    Returns:
        A `tf.data.Dataset` of `(images, {"boxes", "labels"})`: images `(B, S, S, 3)` uint8 RGB
        0..255 (the model rescales them), boxes `(B, M, 4)` float32 in `bounding_box_format`,
        labels `(B, M)` int32; padded rows are -1 in both. Its cardinality is
        `batches_per_epoch(len(dataset), batch_size, drop_remainder)` batches times the number
        of epochs held.
    """
    if image_size % stride:
        raise ValueError(
            f"image_size {image_size} is not a multiple of the stride {stride}; use e.g. "
            f"{max(1, round(image_size / stride)) * stride}"
        )
    for name, value in (
        ("batch_size", batch_size),
        ("max_boxes", max_boxes),
        ("pool_size", pool_size),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if augmentation is None:
        augmentation = AugmentationConfig()
    elif isinstance(augmentation, str):
        augmentation = AugmentationConfig.for_preset(augmentation)
    check_box_format(bounding_box_format)
    if epochs is not None and not 0 <= initial_epoch < epochs:
        raise ValueError(
            f"initial_epoch must be in [0, epochs) = [0, {epochs}), got {initial_epoch}"
        )
    table = RecordTable.from_dataset(dataset)
    sampler = _Sampler(table, image_size, max_boxes, augmentation, bounding_box_format)

    num_images = len(table)
    window = _SHUFFLE_POOLS * pool_size

    def one_epoch(key):
        samples = (
            sampler.epoch(key, pool_size, shuffle)
            .map(_graph_only(sampler.sample), num_parallel_calls=tf.data.AUTOTUNE)
            # An image that fails to decode mid-training (changed after the read-time check) is
            # skipped by the decode stage, and the epoch is topped up from a second pass so the
            # cardinality Keras relies on holds. Only when most files fail does the epoch come
            # up short, and assert_cardinality then stops training with an error.
            .repeat(2)
            .take(num_images)
            .apply(tf.data.experimental.assert_cardinality(num_images))
        )
        if shuffle:
            # Shuffled within windows of a few pools by a permutation keyed on the epoch (a
            # shuffle buffer would draw from the global seed and mix the epochs' samples).
            samples = (
                samples.batch(window)
                .enumerate()
                .map(_graph_only(lambda index, batch: _permuted(batch, key, index)))
                .unbatch()
            )
        return samples.batch(batch_size, drop_remainder=drop_remainder)

    if epochs is None:
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
        num_epochs = 1
    else:
        keys = tf.data.Dataset.range(initial_epoch, epochs).map(
            _graph_only(lambda epoch: epoch_key(seed, epoch))
        )
        num_epochs = epochs - initial_epoch
    batches = keys.flat_map(_graph_only(one_epoch)).apply(
        tf.data.experimental.assert_cardinality(
            num_epochs * batches_per_epoch(num_images, batch_size, drop_remainder)
        )
    )
    if augment_layer is not None:
        batches = batches.map(
            _graph_only(
                lambda images, targets: _apply_layer(augment_layer, images, targets, max_boxes)
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return batches.prefetch(tf.data.AUTOTUNE).with_options(pipeline_options())


def batches_per_epoch(num_images, batch_size, drop_remainder=False):
    """Batches in one epoch of `num_images` images (the `steps_per_epoch` of `fit`)."""
    if drop_remainder:
        return num_images // batch_size
    return -(-num_images // batch_size)


def epoch_key(seed, epoch):
    """The key every random draw of epoch `epoch` derives from: a function of `(seed, epoch)`
    alone (int64 scalar tensor)."""
    return tf.random.stateless_uniform(
        [],
        seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)]),
        minval=None,
        maxval=None,
        dtype=tf.int64,
    )


def _permuted(samples, key, window_index):
    """The samples of one shuffle window in an order drawn from `(key, window_index)`."""
    count = tf.shape(samples[0])[0]
    # Negative second halves: the epoch order uses -1 and the samples their positions (>= 0).
    seed = tf.stack([key, -2 - tf.cast(window_index, tf.int64)])
    order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=seed)
    return tf.nest.map_structure(lambda values: tf.gather(values, order), samples)


class _Sampler:
    """The graph functions of the pipeline, closed over the record table and the settings."""

    def __init__(self, table, image_size, max_boxes, config, bounding_box_format):
        self.table = table
        self.size = image_size
        self.max_boxes = max_boxes
        self.config = config
        self.bounding_box_format = bounding_box_format
        self.truncations = _TruncationCounter(max_boxes)

    def epoch(self, key, pool_size, shuffle):
        """Dataset of `(pool, index in pool, seed)` for one pass, keyed on `key`."""
        order = tf.range(len(self.table))
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([key, -1]))
        pools = (
            tf.data.Dataset.from_tensor_slices(order)
            .map(_graph_only(self.load_tile), num_parallel_calls=tf.data.AUTOTUNE)
            .ignore_errors(log_warning=True)
            .batch(pool_size)
            .prefetch(1)
            .enumerate()
        )

        def expand(pool_index, pool):
            count = tf.shape(pool["count"])[0]
            first = tf.cast(pool_index, tf.int64) * pool_size
            return tf.data.Dataset.range(tf.cast(count, tf.int64)).map(
                _graph_only(lambda j: (pool, tf.cast(j, tf.int32), tf.stack([key, first + j])))
            )

        return pools.flat_map(_graph_only(expand))

    def load_tile(self, index):
        """Decodes image `index`, resizes its longer side to S and stores it top-left in S x S."""
        image = decode_image(self.table.paths[index], self.table.orientations[index])
        image, _ = resize_longest_side(image, self.size)
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        original = tf.cast(self.table.sizes[index], tf.float32)
        scale = tf.stack(
            [tf.cast(width, tf.float32) / original[1], tf.cast(height, tf.float32) / original[0]]
        )
        boxes, labels = self.table.boxes_of(index, pad_to=self.table.max_boxes_per_image)
        count = self.table.row_splits[index + 1] - self.table.row_splits[index]
        boxes = tf.where(labels[:, None] >= 0, boxes * tf.tile(scale, [2]), -1.0)
        return {
            "image": pad_to_square(image, self.size),
            "size": tf.stack([height, width]),
            "boxes": boxes,
            "labels": labels,
            "count": count,
        }

    def sample(self, pool, main, seed):
        """One augmented sample: `(image (S, S, 3) uint8, {"boxes", "labels"})`."""
        config = self.config
        keys = tf.unstack(tf.random.experimental.stateless_split(seed, 8))
        draws = tf.random.stateless_uniform([4], keys[0])
        use_mosaic = _chance(draws[0], config.mosaic)
        image, boxes, labels = self._warped(pool, main, use_mosaic, keys[1])
        if config.mixup > 0 and config.mosaic > 0:
            pool_length = tf.shape(pool["count"])[0]
            partner = tf.random.stateless_uniform([], keys[2], 0, pool_length, tf.int32)

            def blend():
                image2, boxes2, labels2 = self._warped(pool, partner, True, keys[3])
                blended = mixup(image, image2, keys[4], config.mixup_alpha)
                return blended, tf.concat([boxes, boxes2], 0), tf.concat([labels, labels2], 0)

            image, boxes, labels = tf.cond(
                tf.logical_and(use_mosaic, draws[1] < config.mixup),
                blend,
                lambda: (image, boxes, labels),
            )
        if config.hsv_h or config.hsv_s or config.hsv_v:
            image = augment_hsv(image, keys[5], config.hsv_h, config.hsv_s, config.hsv_v)
        size = float(self.size)
        if config.flip_lr > 0:
            image, boxes = tf.cond(
                draws[2] < config.flip_lr,
                lambda: (
                    image[:, ::-1],
                    tf.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], 1),
                ),
                lambda: (image, boxes),
            )
        if config.flip_ud > 0:
            image, boxes = tf.cond(
                draws[3] < config.flip_ud,
                lambda: (
                    image[::-1],
                    tf.stack([boxes[:, 0], size - boxes[:, 3], boxes[:, 2], size - boxes[:, 1]], 1),
                ),
                lambda: (image, boxes),
            )
        boxes, labels = pad_targets(
            boxes, labels, self.max_boxes, self.size, self.bounding_box_format, self.truncations
        )
        return tf.ensure_shape(image, [self.size, self.size, 3]), {"boxes": boxes, "labels": labels}

    def _warped(self, pool, main, use_mosaic, key):
        """A mosaic (or one letterboxed image) through the random perspective and box filter."""
        keys = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        indices, offsets, canvas_size = self._layout(pool, main, use_mosaic, keys[0])
        matrix, scale = random_matrix(keys[1], canvas_size, self.size, self.config)
        window = sampled_window(matrix, canvas_size, self.size)
        canvas = compose(pool["image"], pool["size"], indices, offsets, window)
        image = warp_image(
            canvas, matrix, window, self.size, projective=self.config.perspective > 0
        )
        boxes, labels = shift_boxes(
            pool["boxes"], pool["labels"], pool["count"], indices, offsets, canvas_size
        )
        warped = warp_boxes(boxes, matrix, self.size)
        keep = box_candidates(boxes * scale, warped, self.config)
        return image, tf.boolean_mask(warped, keep), tf.boolean_mask(labels, keep)

    def _layout(self, pool, main, use_mosaic, key):
        """Which tiles go where: `(indices (n,), offsets (n, 2) (x, y), canvas side)`.

        A 4-image mosaic (centre drawn from U(S/2, 3S/2)) or a 9-image one (window corner drawn
        from U(0, S)) on a 2S canvas, or the main image alone, letterboxed (centred) on an S
        canvas. The main image is the first tile; partners are drawn from the pool.
        """
        size = self.size
        keys = tf.unstack(tf.random.experimental.stateless_split(key, 3))
        pool_length = tf.shape(pool["count"])[0]
        partners = tf.random.stateless_uniform([8], keys[0], 0, pool_length, tf.int32)

        def four():
            indices = tf.concat([[main], partners[:3]], 0)
            center = tf.random.stateless_uniform(
                [2], keys[1], size // 2, size + size // 2, tf.int32
            )
            return indices, mosaic4_offsets(tf.gather(pool["size"], indices), center), 2 * size

        def nine():
            indices = tf.concat([[main], partners], 0)
            corner = tf.random.stateless_uniform([2], keys[1], 0, size, tf.int32)
            return (
                indices,
                mosaic9_offsets(tf.gather(pool["size"], indices), size, corner),
                2 * size,
            )

        def mosaic():
            return _choose(
                _chance(tf.random.stateless_uniform([], keys[2]), self.config.mosaic9), nine, four
            )

        def single():
            height, width = pool["size"][main, 0], pool["size"][main, 1]
            offsets = tf.stack([(size - width) // 2, (size - height) // 2])[None]
            return main[None], offsets, size

        return _choose(use_mosaic, mosaic, single)


def _choose(condition, if_true, if_false):
    """`tf.cond`, or a direct call when the condition is a python bool."""
    if condition is True:
        return if_true()
    if condition is False:
        return if_false()
    return tf.cond(condition, if_true, if_false)


def _graph_only(function):
    """Skips AutoGraph: the functions use tf.cond / tf.while_loop explicitly, and converting
    their Python source on every trace took most of the time to build the pipeline."""
    return tf.autograph.experimental.do_not_convert(function)


def _chance(draw, probability):
    """`draw < probability` as a tensor, or a python bool when the probability is 0 or 1 (so the
    graph skips the branch that can never run)."""
    if probability >= 1.0:
        return True
    if probability <= 0.0:
        return False
    return draw < probability


class _TruncationCounter:
    """Counts samples cut to max_boxes; logs the first one and every power of ten."""

    def __init__(self, max_boxes):
        self.max_boxes = max_boxes
        self.samples = 0

    def __call__(self, count):
        self.samples += 1
        if self.samples == 1:
            logger.warning(
                "an augmented sample has %d boxes but max_boxes is %d: the %d largest are kept "
                "(raise max_boxes to keep all; further truncations are counted)",
                int(count),
                self.max_boxes,
                self.max_boxes,
            )
        elif np.log10(self.samples).is_integer():
            logger.warning(
                "%d augmented samples truncated to max_boxes=%d so far",
                self.samples,
                self.max_boxes,
            )
        return np.int32(0)


def _apply_layer(layer, images, targets, max_boxes):
    """Runs a user augmentation layer on a batch and restores the pipeline's output structure."""
    outputs = layer(
        {
            "images": tf.cast(images, tf.float32),
            "bounding_boxes": {
                "boxes": targets["boxes"],
                "labels": targets["labels"],
                "classes": targets["labels"],
            },
        }
    )
    found = outputs["bounding_boxes"]
    boxes = found["boxes"]
    labels = found["labels"] if "labels" in found else found["classes"]
    if isinstance(boxes, tf.RaggedTensor):
        boxes = boxes.to_tensor(default_value=-1.0, shape=[None, max_boxes, 4])
    if isinstance(labels, tf.RaggedTensor):
        labels = labels.to_tensor(default_value=-1, shape=[None, max_boxes])
    labels = tf.cast(labels, tf.int32)
    boxes = tf.where(labels[..., None] >= 0, tf.cast(boxes, tf.float32), -1.0)
    images = tf.cast(tf.clip_by_value(tf.round(outputs["images"]), 0.0, 255.0), tf.uint8)
    return images, {"boxes": boxes, "labels": labels}
