"""The training and validation pipelines end to end, on small generated images (S = 128).

The generated objects are solid rectangles of one colour per class, so the tests check the
geometry by pixels: after mosaic, perspective and flips every target box must still cover its
object, and no object may be left outside the boxes.
"""

import io
import logging
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from fixtures.data_factory import CLASS_COLORS
from fixtures.data_factory import color_fraction
from fixtures.data_factory import rotated_with_exif
from fixtures.data_factory import synthetic_dataset
from fixtures.data_factory import write_yolo_dataset
from PIL import Image

from keras_yolov7.data import AugmentationConfig
from keras_yolov7.data import DetectionDataset
from keras_yolov7.data import ImageRecord
from keras_yolov7.data import make_train_dataset
from keras_yolov7.data import make_val_dataset
from keras_yolov7.data import plot_augmented_samples
from keras_yolov7.data import read_coco
from keras_yolov7.data import read_yolo
from keras_yolov7 import ops as kyv7_ops

SIZE = 128
GEOMETRY = AugmentationConfig(
    mosaic=1.0, mosaic9=0.5, mixup=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, scale=0.5
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_images=8)


def boxes_to_original(boxes, scale, pad, original_size=None):
    """The package's mapping back to original pixels (keras.ops), on one image or a batch."""
    single = np.ndim(boxes) == 2
    if single:
        boxes, scale, pad = boxes[None], [scale], [pad]
        original_size = None if original_size is None else [original_size]
    mapped = keras.ops.convert_to_numpy(
        kyv7_ops.boxes_to_original(
            np.asarray(boxes, np.float32),
            np.asarray(scale, np.float32),
            np.asarray(pad, np.float32),
            None if original_size is None else np.asarray(original_size),
        )
    )
    return mapped[0] if single else mapped


def batches(dataset, count=None):
    out = []
    for images, targets in dataset:
        out.append((np.asarray(images), {k: np.asarray(v) for k, v in targets.items()}))
        if count is not None and len(out) == count:
            break
    return out


def check_boxes_cover_objects(images, boxes, labels):
    """Every box covers its class colour, and almost no object pixel lies outside its boxes."""
    object_pixels = outside_pixels = 0
    for image, image_boxes, image_labels in zip(images, boxes, labels):
        valid = image_labels >= 0
        for box, label in zip(image_boxes[valid], image_labels[valid]):
            width, height = box[2] - box[0], box[3] - box[1]
            # a bilinear warp blurs about one pixel around each edge
            expected = (width - 2) * (height - 2) / (width * height)
            assert color_fraction(image, box, label) >= expected - 0.05, (box, label)
        for label, color in enumerate(CLASS_COLORS):
            mask = np.abs(image.astype(int) - color.astype(int)).max(-1) <= 30
            covered = np.zeros_like(mask)
            for box in image_boxes[valid & (image_labels == label)]:
                x1, y1, x2, y2 = (
                    np.floor(box[:2]).astype(int).tolist() + np.ceil(box[2:]).astype(int).tolist()
                )
                covered[y1:y2, x1:x2] = True
            object_pixels += mask.sum()
            outside_pixels += (mask & ~covered).sum()
    # what the official box filter drops (slivers under 10% of their area, thinner than 2 px)
    assert outside_pixels <= 0.05 * object_pixels, (outside_pixels, object_pixels)


def test_train_batches_geometry_and_format(synthetic):
    dataset = make_train_dataset(
        synthetic,
        image_size=SIZE,
        batch_size=4,
        max_boxes=40,
        augmentation=GEOMETRY,
        seed=1,
        pool_size=4,
    )
    assert dataset.cardinality().numpy() == 2
    spec_images, spec_targets = dataset.element_spec
    assert spec_images.shape.as_list() == [None, SIZE, SIZE, 3] and spec_images.dtype == tf.uint8
    assert (
        spec_targets["boxes"].shape.as_list() == [None, 40, 4]
        and spec_targets["labels"].dtype == tf.int32
    )
    found = batches(dataset)
    assert [b[0].shape[0] for b in found] == [4, 4]
    for images, targets in found:
        boxes, labels = targets["boxes"], targets["labels"]
        assert (labels >= 0).sum() > 0
        np.testing.assert_array_equal(boxes[labels < 0], -1)  # padding
        valid = boxes[labels >= 0]
        assert (valid >= 0).all() and (valid <= SIZE).all()
        assert ((valid[:, 2] - valid[:, 0]) > 2).all() and ((valid[:, 3] - valid[:, 1]) > 2).all()
        check_boxes_cover_objects(images, boxes, labels)


def test_geometry_with_rotation_shear_and_single_images(synthetic):
    # no mosaic: one letterboxed image through a rotated / sheared warp; boxes enclose the
    # rotated objects, so only the "nothing left outside" half of the check applies.
    config = AugmentationConfig(
        mosaic=0.0, degrees=20, shear=5, translate=0.1, scale=0.3, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0
    )
    images, targets = batches(
        make_train_dataset(
            synthetic, image_size=SIZE, batch_size=8, augmentation=config, seed=2, pool_size=4
        ),
        1,
    )[0]
    boxes, labels = targets["boxes"], targets["labels"]
    for image, image_boxes, image_labels in zip(images, boxes, labels):
        for box, label in zip(image_boxes[image_labels >= 0], image_labels[image_labels >= 0]):
            assert (
                color_fraction(image, box, label) > 0.25
            )  # a rotated rectangle fills much of its box
    object_pixels = outside = 0
    for image, image_boxes, image_labels in zip(images, boxes, labels):
        for label, color in enumerate(CLASS_COLORS):
            mask = np.abs(image.astype(int) - color.astype(int)).max(-1) <= 30
            covered = np.zeros_like(mask)
            for box in image_boxes[image_labels == label]:
                covered[int(box[1]) : int(np.ceil(box[3])), int(box[0]) : int(np.ceil(box[2]))] = (
                    True
                )
            object_pixels += mask.sum()
            outside += (mask & ~covered).sum()
    assert outside <= 0.05 * object_pixels


def test_flip_mirrors_images_and_boxes(synthetic):
    def first(flip):
        config = AugmentationConfig(mixup=0.3, flip_lr=flip, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)
        return batches(
            make_train_dataset(
                synthetic, image_size=SIZE, batch_size=8, augmentation=config, seed=5, pool_size=4
            ),
            1,
        )[0]

    plain, flipped = first(0.0), first(1.0)
    np.testing.assert_array_equal(flipped[0], plain[0][:, :, ::-1])
    valid = plain[1]["labels"] >= 0
    mirrored = plain[1]["boxes"][..., [2, 1, 0, 3]] * [-1, 1, -1, 1] + [SIZE, 0, SIZE, 0]
    np.testing.assert_allclose(flipped[1]["boxes"][valid], mirrored[valid], atol=1e-4)


def test_seed_determinism_epochs_and_box_formats(synthetic):
    def build(seed, box_format):
        return make_train_dataset(
            synthetic,
            image_size=SIZE,
            batch_size=8,
            seed=seed,
            pool_size=4,
            bounding_box_format=box_format,
        )

    dataset = build(3, "xyxy")
    (images, xyxy), (images_next, _) = batches(dataset, 1)[0], batches(dataset, 1)[0]
    same_seed = batches(build(3, "center_xywh"), 1)[0]
    other_seed = batches(build(4, "rel_yxyx"), 1)[0]
    np.testing.assert_array_equal(same_seed[0], images)  # same seed, same first pass
    assert not np.array_equal(images_next, images)  # a new pass draws new augmentations
    assert not np.array_equal(other_seed[0], images)
    valid = xyxy["labels"] >= 0
    np.testing.assert_array_equal(same_seed[1]["labels"], xyxy["labels"])
    b = xyxy["boxes"][valid]
    center = np.stack(
        [(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1
    )
    np.testing.assert_allclose(same_seed[1]["boxes"][valid], center, atol=1e-3)
    np.testing.assert_array_equal(same_seed[1]["boxes"][~valid], -1)
    relative = other_seed[1]
    assert (relative["boxes"][relative["labels"] >= 0] <= 1).all() and (
        relative["boxes"][relative["labels"] >= 0] >= 0
    ).all()
    np.testing.assert_array_equal(relative["boxes"][relative["labels"] < 0], -1)


def test_file_lost_after_reading_does_not_stop_an_epoch(tmp_path):
    dataset = synthetic_dataset(tmp_path, num_images=6)
    pipeline = make_train_dataset(dataset, image_size=SIZE, batch_size=4, seed=0, pool_size=3)
    pathlib.Path(dataset.records[2].image_path).write_bytes(b"overwritten after the read")
    found = batches(pipeline)
    assert [b[0].shape[0] for b in found] == [4, 2]  # the epoch keeps its length


def test_bad_pipeline_arguments(synthetic):
    with pytest.raises(ValueError, match="bounding_box_format='corners'"):
        make_train_dataset(synthetic, image_size=SIZE, bounding_box_format="corners")
    with pytest.raises(ValueError, match="image_size 100 is not a multiple of the stride 32"):
        make_train_dataset(synthetic, image_size=100)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        make_train_dataset(synthetic, image_size=SIZE, augmentation="huge")


def test_crowd_boxes_are_not_targets_and_truncation_is_reported(tmp_path, caplog):
    base = synthetic_dataset(tmp_path, num_images=4)
    records = []
    for r in base.records:
        crowd = r.labels == 0  # every "red" box is a crowd box
        records.append(
            ImageRecord(r.image_path, r.image_id, r.width, r.height, r.boxes, r.labels, crowd)
        )
    dataset = DetectionDataset(records, base.class_names)
    caplog.set_level(logging.WARNING)
    config = AugmentationConfig(mixup=1.0)
    found = batches(
        make_train_dataset(
            dataset,
            image_size=SIZE,
            batch_size=4,
            max_boxes=2,
            augmentation=config,
            seed=0,
            pool_size=4,
        )
    )
    labels = np.concatenate([targets["labels"] for _, targets in found])
    assert labels.max() > 0 and not (labels == 0).any()
    messages = [r.getMessage() for r in caplog.records if "max_boxes is 2" in r.getMessage()]
    assert len(messages) == 1 and "the 2 largest are kept" in messages[0]


class CountingModel(keras.Model):
    """Tiny model whose loss reads the target dict, like the detector's compute_loss."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, images):
        pooled = keras.ops.mean(keras.ops.cast(images, "float32") / 255.0, axis=(1, 2))
        return self.dense(pooled)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        count = keras.ops.sum(keras.ops.cast(y["labels"] >= 0, "float32"), axis=1, keepdims=True)
        box_sum = keras.ops.sum(keras.ops.where(y["boxes"] >= 0, y["boxes"], 0.0), axis=(1, 2))[
            :, None
        ]
        return keras.ops.mean((y_pred - count - 0.0 * box_sum) ** 2)


def test_feeds_model_fit_on_this_backend(synthetic):
    dataset = make_train_dataset(synthetic, image_size=SIZE, batch_size=4, seed=0, pool_size=4)
    model = CountingModel()
    model.compile(optimizer="sgd")
    history = model.fit(dataset, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    validation = make_val_dataset(synthetic, image_size=SIZE, batch_size=4)
    assert np.isfinite(model.evaluate(validation, verbose=0))


def test_validation_letterbox_and_inverse(synthetic):
    found = batches(make_val_dataset(synthetic, image_size=SIZE, batch_size=3, max_boxes=5))
    assert [b[0].shape[0] for b in found] == [3, 3, 2]
    images = np.concatenate([b[0] for b in found])
    targets = {k: np.concatenate([b[1][k] for b in found]) for k in found[0][1]}
    assert targets["image_id"].dtype == np.int64 and targets["scale"].dtype == np.float32
    np.testing.assert_array_equal(targets["image_id"], [r.image_id for r in synthetic.records])
    for i, record in enumerate(synthetic.records):
        scale, (pad_x, pad_y) = targets["scale"][i], targets["pad"][i]
        np.testing.assert_array_equal(targets["original_size"][i], [record.height, record.width])
        assert scale == pytest.approx(SIZE / max(record.width, record.height))
        assert (pad_x, pad_y) == (
            (SIZE - round(record.width * scale)) // 2,
            (SIZE - round(record.height * scale)) // 2,
        )
        # padding is 114, content starts at the pad offset
        assert (images[i, : int(pad_y)] == 114).all() and (images[i, :, : int(pad_x)] == 114).all()
        valid = targets["labels"][i] >= 0
        np.testing.assert_array_equal(targets["labels"][i][valid], record.labels)
        for box, label in zip(targets["boxes"][i][valid], record.labels):
            width, height = box[2] - box[0], box[3] - box[1]
            assert (
                color_fraction(images[i], box, label)
                >= (width - 2) * (height - 2) / (width * height) - 0.05
            )
        back = boxes_to_original(
            targets["boxes"][i][valid], scale, targets["pad"][i], targets["original_size"][i]
        )
        np.testing.assert_allclose(back, record.boxes, atol=1e-3)
    batch_back = boxes_to_original(targets["boxes"][:3], targets["scale"][:3], targets["pad"][:3])
    np.testing.assert_allclose(
        batch_back[1][targets["labels"][1] >= 0], synthetic.records[1].boxes, atol=1e-3
    )


def test_validation_on_real_coco_images(shared_data):
    dataset = read_coco(shared_data / "coco_tiny" / "annotations" / "instances_val2017.json")
    dataset.records = dataset.records[:3]
    images, targets = batches(
        make_val_dataset(dataset, image_size=320, batch_size=3, max_boxes=100), 1
    )[0]
    assert images.shape == (3, 320, 320, 3)
    for i, record in enumerate(dataset.records):
        valid = targets["labels"][i] >= 0
        back = boxes_to_original(targets["boxes"][i][valid], targets["scale"][i], targets["pad"][i])
        np.testing.assert_allclose(back, record.boxes[~record.crowd], atol=1e-3)
        assert targets["image_id"][i] == record.image_id


def test_exif_grayscale_and_rgba_images_through_the_pipelines(tmp_path):
    upright = Image.new("RGB", (64, 48), (114, 114, 114))
    upright.paste(tuple(int(v) for v in CLASS_COLORS[2]), (4, 4, 28, 20))
    stored, exif = rotated_with_exif(upright, 8)
    rotated = io.BytesIO()
    stored.save(rotated, "JPEG", exif=exif, quality=95)
    gray = io.BytesIO()
    Image.new("L", (40, 30), 200).save(gray, "JPEG")
    rgba = io.BytesIO()
    Image.new("RGBA", (30, 40), (230, 30, 30, 10)).save(rgba, "PNG")
    images = {
        "rotated.jpg": rotated.getvalue(),
        "gray.jpg": gray.getvalue(),
        "rgba.png": rgba.getvalue(),
    }
    labels = {
        "rotated": "2 0.25 0.25 0.375 0.3333333\n",
        "gray": "1 0.5 0.5 0.5 0.5\n",
        "rgba": "0 0.5 0.5 0.5 0.5\n",
    }
    dataset = read_yolo(write_yolo_dataset(tmp_path, images, labels))
    validation = batches(make_val_dataset(dataset, image_size=64, batch_size=3), 1)[0]
    by_name = {r.image_path.rsplit("/", 1)[1]: i for i, r in enumerate(dataset.records)}
    i = by_name["rotated.jpg"]
    box = validation[1]["boxes"][i][0]
    assert color_fraction(validation[0][i], box, 2) > 0.9  # the box lands on the object
    assert (validation[0][by_name["rgba.png"], 20:40, 20:40] == CLASS_COLORS[0]).all()
    training = batches(
        make_train_dataset(dataset, image_size=64, batch_size=3, seed=0, pool_size=3), 1
    )[0]
    assert training[0].shape == (3, 64, 64, 3)


def test_keras_augmentation_layer_hook(synthetic):
    layer = keras.layers.RandomFlip("horizontal", bounding_box_format="xyxy", seed=3)
    config = AugmentationConfig(mixup=0.0, flip_lr=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)
    found = batches(
        make_train_dataset(
            synthetic,
            image_size=SIZE,
            batch_size=8,
            max_boxes=30,
            augmentation=config,
            seed=4,
            pool_size=4,
            augment_layer=layer,
        ),
        1,
    )
    images, targets = found[0]
    assert (
        images.dtype == np.uint8
        and targets["boxes"].shape == (8, 30, 4)
        and targets["labels"].dtype == np.int32
    )
    np.testing.assert_array_equal(targets["boxes"][targets["labels"] < 0], -1)
    check_boxes_cover_objects(images, targets["boxes"], targets["labels"])


def test_keras_cv_layer_hook_and_format_names(synthetic):
    keras_cv = pytest.importorskip("keras_cv", reason="keras-cv is not installed (optional extra)")
    layer = keras_cv.layers.RandomFlip("horizontal", bounding_box_format="center_xywh", seed=3)
    config = AugmentationConfig(mixup=0.0, flip_lr=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)
    dataset = make_train_dataset(
        synthetic,
        image_size=SIZE,
        batch_size=8,
        max_boxes=30,
        augmentation=config,
        seed=4,
        pool_size=4,
        bounding_box_format="center_xywh",
        augment_layer=layer,
    )
    images, targets = batches(dataset, 1)[0]
    valid = targets["labels"] >= 0
    np.testing.assert_array_equal(targets["boxes"][~valid], -1)
    center = targets["boxes"]
    xyxy = np.concatenate(
        [center[..., :2] - center[..., 2:] / 2, center[..., :2] + center[..., 2:] / 2], -1
    )
    check_boxes_cover_objects(images, np.where(valid[..., None], xyxy, -1), targets["labels"])


def test_plot_augmented_samples(synthetic, tmp_path):
    path = tmp_path / "samples.png"
    dataset = make_val_dataset(synthetic, image_size=SIZE, batch_size=4)
    assert (
        plot_augmented_samples(
            dataset, path, synthetic.class_names, num_images=6, columns=3, tile_size=SIZE
        )
        == 6
    )
    picture = np.asarray(Image.open(path).convert("RGB"))
    assert picture.shape == (2 * SIZE, 3 * SIZE, 3)
    images, targets = batches(dataset, 1)[0]
    # the first sample is drawn at full size in the top-left cell: the left edge of its tallest
    # box carries the outline (one colour), which the sample itself does not have there
    valid = targets["labels"][0] >= 0
    boxes = targets["boxes"][0][valid]
    box = boxes[np.argmax(boxes[:, 3] - boxes[:, 1])].round().astype(int)
    edge = picture[box[1] + 3 : box[3] - 3, box[0]]
    assert len(edge) > 3 and (edge == edge[0]).all()
    assert not (images[0][box[1] + 3 : box[3] - 3, box[0]] == edge[0]).all()


def test_pipelines_run_without_the_autotuning_model(synthetic):
    # Deleting an iterator waits for tf.data's autotuning thread to wake (up to 60 s), which stalled
    # the first step of about half the epochs of `fit(dataset, epochs=N)`; see pipeline_options.
    train = make_train_dataset(synthetic, image_size=64, batch_size=2, augmentation="yolov7_tiny")
    val = make_val_dataset(synthetic, image_size=64, batch_size=2)
    for dataset in (train, val):
        assert dataset.options().autotune.enabled is False
        # Still parallel: AUTOTUNE maps run one call per core with the model off.
        assert len(batches(dataset, 2)) == 2
