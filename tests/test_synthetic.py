"""The synthetic detection dataset: exact boxes, the promised statistics, determinism, files."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from keras_yolov7.datasets import SYNTHETIC_CLASS_NAMES
from keras_yolov7.datasets import make_synthetic_arrays
from keras_yolov7.datasets import write_synthetic_dataset

ndimage = pytest.importorskip("scipy.ndimage")

CLASS_COLOURS = np.array([[220, 40, 40], [40, 190, 60], [40, 80, 230], [235, 200, 30], [200, 50, 200]])


def _objects(targets, index):
    keep = targets["labels"][index] >= 0
    return targets["boxes"][index][keep], targets["labels"][index][keep]


def _pairwise_iou(boxes):
    x1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area[:, None] + area[None, :] - inter)


def test_shapes_dtypes_and_padding():
    images, targets, names = make_synthetic_arrays(10, image_size=160, seed=0, max_objects=6)
    assert images.shape == (10, 160, 160, 3) and images.dtype == np.uint8
    assert targets["boxes"].shape == (10, 6, 4) and targets["boxes"].dtype == np.float32
    assert targets["labels"].shape == (10, 6) and targets["labels"].dtype == np.int32
    assert names == list(SYNTHETIC_CLASS_NAMES) and len(names) == 5
    padded = targets["labels"] < 0
    np.testing.assert_array_equal(targets["boxes"][padded], -1.0)
    assert np.all(targets["boxes"][~padded] >= 0) and np.all(targets["boxes"][~padded] <= 160)
    # objects first, padding after
    counts = (~padded).sum(axis=1)
    assert all(np.all(~padded[i, : counts[i]]) for i in range(10))


def test_deterministic_and_stable_when_extended():
    images, targets, _ = make_synthetic_arrays(6, image_size=96, seed=3)
    again_images, again_targets, _ = make_synthetic_arrays(6, image_size=96, seed=3)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(targets["boxes"], again_targets["boxes"])
    more_images, more_targets, _ = make_synthetic_arrays(9, image_size=96, seed=3)
    np.testing.assert_array_equal(more_images[:6], images)
    np.testing.assert_array_equal(more_targets["labels"][:6], targets["labels"])
    for other in (dict(seed=4), dict(seed=3, stream=1)):
        other_images, _, _ = make_synthetic_arrays(6, image_size=96, **other)
        assert not np.array_equal(other_images, images)


@pytest.mark.parametrize("image_size", [96, 203, 320])
def test_boxes_are_exactly_the_drawn_pixels(image_size):
    """On a plain background every non-background pixel belongs to an object: the blobs (objects
    never touch) must be exactly the boxes, with the class's colour and shape."""
    images, targets, _ = make_synthetic_arrays(12, image_size=image_size, seed=5, background="plain")
    for index, image in enumerate(images):
        boxes, labels = _objects(targets, index)
        background = image[np.all(image == image[:, :, :1], axis=-1)]  # grey pixels
        grey = np.bincount(background[:, 0]).argmax()
        drawn = np.any(image != grey, axis=-1)
        blobs, count = ndimage.label(drawn, structure=np.ones((3, 3)))
        assert count == len(boxes)
        found = {}
        for blob, (rows, cols) in enumerate(ndimage.find_objects(blobs), start=1):
            found[(cols.start, rows.start, cols.stop, rows.stop)] = blob
        assert set(found) == {tuple(int(v) for v in box) for box in boxes}
        for box, label in zip(boxes.astype(int), labels, strict=True):
            x1, y1, x2, y2 = box
            pixels = blobs[y1:y2, x1:x2] == found[(x1, y1, x2, y2)]
            colour = image[y1:y2, x1:x2][pixels].mean(axis=0)
            assert np.argmin(np.abs(CLASS_COLOURS - colour).sum(axis=1)) == label
            assert np.abs(colour - CLASS_COLOURS[label]).max() <= 20.5
            _assert_shape(SYNTHETIC_CLASS_NAMES[label], pixels)


def _assert_shape(name, pixels):
    fill = pixels.mean()
    h, w = pixels.shape
    centre = pixels[h // 2, w // 2]
    corners = [pixels[0, 0], pixels[0, -1], pixels[-1, 0], pixels[-1, -1]]
    if name == "rectangle":
        assert fill == 1.0
    elif name == "ellipse":
        assert 0.68 < fill < 0.86 and centre and not any(corners)
    elif name == "triangle":
        assert 0.35 < fill < 0.65
    elif name == "cross":
        assert 0.35 < fill < 0.7 and centre and not any(corners)
    else:
        assert not centre and not any(corners) and fill < 0.72, name


def test_counts_sizes_overlap_and_classes():
    size = 256
    _, targets, _ = make_synthetic_arrays(80, image_size=size, seed=7)
    counts = (targets["labels"] >= 0).sum(axis=1)
    assert counts.min() >= 1 and counts.max() <= 6 and len(set(counts.tolist())) >= 4
    every = targets["labels"][targets["labels"] >= 0]
    frequencies = np.bincount(every, minlength=5) / len(every)
    assert np.all(frequencies > 0.12), frequencies
    longer = []
    for index in range(80):
        boxes, _ = _objects(targets, index)
        longer.extend(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).tolist())
        iou = _pairwise_iou(boxes)
        np.fill_diagonal(iou, 0)
        assert iou.max() <= 0.3 + 1e-6
    longer = np.array(longer) / size
    assert longer.min() >= 0.08 - 1.5 / size and longer.max() <= 0.45 + 1.5 / size
    assert longer.min() < 0.12 and longer.max() > 0.38  # the whole range is used


def test_noise_background_is_textured():
    images, targets, _ = make_synthetic_arrays(4, image_size=128, seed=2)
    for index, image in enumerate(images):
        outside = np.ones(image.shape[:2], bool)
        for x1, y1, x2, y2 in _objects(targets, index)[0].astype(int):
            outside[y1:y2, x1:x2] = False
        background = image[outside].astype(np.float32)
        neighbour_difference = np.abs(np.diff(image.astype(np.float32), axis=1)).mean()
        assert background.std() > 5 and neighbour_difference > 3


def test_writes_coco_yolo_and_data_yaml(tmp_path):
    pycocotools_coco = pytest.importorskip("pycocotools.coco")
    paths = write_synthetic_dataset(
        tmp_path / "shapes", 5, 3, image_size=96, seed=1, format="both", image_format="png", progress=False
    )
    for split, stream, count in (("train", 0, 5), ("val", 1, 3)):
        images, targets, _ = make_synthetic_arrays(count, image_size=96, seed=1, stream=stream)
        coco = pycocotools_coco.COCO(str(paths[f"{split}_annotations"]))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(SYNTHETIC_CLASS_NAMES)
        assert coco.getCatIds() == [1, 2, 3, 4, 5]
        assert sorted(coco.getImgIds()) == list(range(1, count + 1))
        for index in range(count):
            info = coco.loadImgs(index + 1)[0]
            assert (info["width"], info["height"]) == (96, 96)
            np.testing.assert_array_equal(
                np.asarray(Image.open(paths[f"{split}_images"] / info["file_name"])), images[index]
            )
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=index + 1))
            boxes, labels = _objects(targets, index)
            xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
            np.testing.assert_array_equal([a["bbox"] for a in annotations], xywh)
            assert [a["category_id"] for a in annotations] == (labels + 1).tolist()
            assert all(a["iscrowd"] == 0 and a["area"] == a["bbox"][2] * a["bbox"][3] for a in annotations)
            rows = np.loadtxt(tmp_path / "shapes" / "labels" / split / f"{index:06d}.txt", ndmin=2)
            np.testing.assert_array_equal(rows[:, 0], labels)
            centre_size = np.concatenate(
                [(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1
            )
            np.testing.assert_allclose(rows[:, 1:] * 96, centre_size, atol=1e-3)
    data = yaml.safe_load(paths["data_yaml"].read_text())
    assert data["nc"] == 5 and data["names"] == list(SYNTHETIC_CLASS_NAMES)
    assert (paths["root"] / data["train"]).resolve() == paths["train_images"].resolve()
    assert (paths["root"] / data["val"]).resolve() == paths["val_images"].resolve()


def test_default_jpeg_coco_layout(tmp_path):
    paths = write_synthetic_dataset(tmp_path, 2, 2, image_size=64, seed=0, progress=False)
    assert set(paths) == {"root", "train_images", "val_images", "train_annotations", "val_annotations"}
    coco = json.loads(paths["val_annotations"].read_text())
    assert [image["file_name"] for image in coco["images"]] == ["000000.jpg", "000001.jpg"]
    assert Image.open(paths["val_images"] / "000001.jpg").size == (64, 64)
    assert not (tmp_path / "labels").exists()


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="format is 'voc'"):
        write_synthetic_dataset(tmp_path, 1, 1, format="voc")
    with pytest.raises(ValueError, match="image_size is 16"):
        make_synthetic_arrays(1, image_size=16)
    with pytest.raises(ValueError, match="min_objects 3 and max_objects 2"):
        make_synthetic_arrays(1, min_objects=3, max_objects=2)
