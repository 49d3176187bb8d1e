"""A seeded synthetic detection dataset: coloured shapes on a textured background, exact boxes.

It lets the demo, the examples and the tests train and evaluate a detector with nothing
downloaded. Five classes differ in both shape and colour (red rectangles, green ellipses, blue
triangles, yellow crosses, magenta rings); each image holds 1 to 6 of them, 8% to 45% of the
image side, never touching one another and with box IoU at most 0.3, over a smooth random
background with grey clutter lines and pixel noise. Every box is the axis-aligned box of the
object's drawn pixels, so it is exact.

Image `i` of a stream depends only on `(seed, stream, i)`: asking for more images extends a
dataset without changing the first ones, and the train and validation splits written by
`write_synthetic_dataset` are different streams.
"""

import json
import os
import pathlib

import keras
import numpy as np
from PIL import Image
from PIL import ImageDraw

from keras_yolov7.evaluation.metrics import box_iou

SYNTHETIC_CLASS_NAMES = ("rectangle", "ellipse", "triangle", "cross", "ring")
_CLASS_COLOURS = np.array(
    [[220, 40, 40], [40, 190, 60], [40, 80, 230], [235, 200, 30], [200, 50, 200]], np.float32
)
_COLOUR_JITTER = 20  # per channel; keeps every class far from the others and from grey
_NOISE_AMPLITUDE = 14.0  # pixel noise, uniform in +-14 (standard deviation 8)
_TRAIN_STREAM, _VAL_STREAM = 0, 1


def make_synthetic_arrays(
    num_images,
    image_size=256,
    seed=0,
    max_objects=6,
    min_objects=1,
    size_range=(0.08, 0.45),
    max_iou=0.3,
    background="noise",
    stream=_TRAIN_STREAM,
    progress=False,
):
    """Images and padded targets, ready for `model.fit(images, targets)`.

    Args:
        num_images: number of images.
        image_size: side `S` of the square images in pixels (at least 32).
        seed: the dataset seed; the same arguments always give the same arrays.
        max_objects: the most objects in an image, also the padded length `M` of the targets.
        min_objects: the fewest objects an image asks for (placement always succeeds for one).
        size_range: `(low, high)` of the object's longer box side as a fraction of `S`.
        max_iou: placements whose box IoU with an already placed box exceeds this are redrawn.
        background: `"noise"` (smooth random colours, grey clutter lines, pixel noise, the
            default) or `"plain"` (one flat grey per image, no noise: every non-background pixel
            belongs to an object).
        stream: an independent sequence of images for the same seed (the dataset writer uses 0
            for training images and 1 for validation images).
        progress: show a progress bar.

    Returns:
        `(images, targets, class_names)`: images `(N, S, S, 3)` uint8 RGB; targets
        `{"boxes": (N, M, 4) float32 xyxy in pixels, "labels": (N, M) int32}` with the objects
        first and padding `-1` (every coordinate and the label) after them; the box of an object
        is the box of its drawn pixels, pixel `(row, col)` covering `[col, col + 1) x [row, row
        + 1)`, so `x2 - x1` is its width in pixels; class_names `SYNTHETIC_CLASS_NAMES`.
    """
    _check_arguments(num_images, image_size, max_objects, min_objects, size_range, max_iou, background)
    images = np.zeros((num_images, image_size, image_size, 3), np.uint8)
    boxes = np.full((num_images, max_objects, 4), -1.0, np.float32)
    labels = np.full((num_images, max_objects), -1, np.int32)
    bar = keras.utils.Progbar(num_images, unit_name="image") if progress else None
    for index in range(num_images):
        rng = np.random.default_rng([seed, stream, index])
        image, image_boxes, image_labels = _draw_image(
            rng, image_size, max_objects, min_objects, size_range, max_iou, background
        )
        images[index] = image
        boxes[index, : len(image_boxes)] = image_boxes
        labels[index, : len(image_labels)] = image_labels
        if bar is not None:
            bar.update(index + 1)
    return images, {"boxes": boxes, "labels": labels}, list(SYNTHETIC_CLASS_NAMES)


def write_synthetic_dataset(
    directory,
    num_train=512,
    num_val=128,
    image_size=256,
    seed=0,
    format="coco",
    image_format="jpg",
    progress=True,
    **options,
):
    """Write a synthetic dataset as files the dataset readers and the CLI understand.

    Layout (the YOLO files follow Ultralytics: labels found by replacing `images` by `labels`):
    ```
    directory/images/{train,val}/000000.jpg ...
    directory/annotations/instances_{train,val}.json     format "coco" or "both"
    directory/labels/{train,val}/000000.txt ...          format "yolo" or "both"
    directory/data.yaml                                  format "yolo" or "both"
    ```
    COCO JSON: image ids from 1, category ids 1..5 in `SYNTHETIC_CLASS_NAMES` order, `bbox`
    `[x, y, width, height]` in pixels, `area` the box area, `iscrowd` 0. YOLO txt: one row
    `class cx cy w h` per object, class from 0, coordinates normalised by the image side.
    Validation images are a different stream than training images (a held-out split).

    Args:
        directory: output folder (created; existing files of the same names are overwritten).
        num_train, num_val: number of training and validation images.
        image_size: side of the square images in pixels.
        seed: the dataset seed.
        format: `"coco"`, `"yolo"` or `"both"`.
        image_format: `"jpg"` (quality 95) or `"png"` (lossless).
        progress: show a progress bar per split.
        **options: passed to `make_synthetic_arrays` (`max_objects`, `size_range`, ...).

    Returns:
        A dict of the paths written: `"root"`, `"train_images"`, `"val_images"`, and
        `"train_annotations"`, `"val_annotations"` (COCO JSON) and/or `"data_yaml"` (YOLO).
    """
    if format not in ("coco", "yolo", "both"):
        raise ValueError(f"format is {format!r}; expected 'coco', 'yolo' or 'both'")
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format is {image_format!r}; expected 'jpg' or 'png'")
    root = pathlib.Path(directory)
    paths = {"root": root}
    for split, count, stream in (("train", num_train, _TRAIN_STREAM), ("val", num_val, _VAL_STREAM)):
        if progress:
            print(f"synthetic {split} split: {count} images of {image_size}x{image_size} -> {root}")
        images, targets, _ = make_synthetic_arrays(
            count, image_size, seed, stream=stream, progress=progress, **options
        )
        image_dir = root / "images" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        file_names = [f"{index:06d}.{image_format}" for index in range(count)]
        for name, image in zip(file_names, images, strict=True):
            Image.fromarray(image).save(image_dir / name, quality=95)
        paths[f"{split}_images"] = image_dir
        objects = [
            (boxes[labels >= 0], labels[labels >= 0])
            for boxes, labels in zip(targets["boxes"], targets["labels"], strict=True)
        ]
        if format in ("coco", "both"):
            paths[f"{split}_annotations"] = _write_coco(
                root / "annotations" / f"instances_{split}.json", file_names, objects, image_size
            )
        if format in ("yolo", "both"):
            _write_yolo_labels(root / "labels" / split, file_names, objects, image_size)
    if format in ("yolo", "both"):
        paths["data_yaml"] = _write_data_yaml(root)
    return paths


def _check_arguments(num_images, image_size, max_objects, min_objects, size_range, max_iou, background):
    if num_images < 0:
        raise ValueError(f"num_images is {num_images}; expected a count >= 0")
    if image_size < 32:
        raise ValueError(f"image_size is {image_size}; expected at least 32 pixels")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"min_objects {min_objects} and max_objects {max_objects}; expected 1 <= min <= max")
    low, high = size_range
    if not 0 < low <= high <= 1:
        raise ValueError(f"size_range is {size_range}; expected fractions 0 < low <= high <= 1")
    if not 0 <= max_iou <= 1:
        raise ValueError(f"max_iou is {max_iou}; expected a value in [0, 1]")
    if background not in ("noise", "plain"):
        raise ValueError(f"background is {background!r}; expected 'noise' or 'plain'")


def _draw_image(rng, size, max_objects, min_objects, size_range, max_iou, background):
    """One image `(S, S, 3)` uint8 with its boxes `(n, 4)` xyxy pixels and labels `(n,)`."""
    image = _background(rng, size, background)
    # Object pixels grown by one pixel (8-neighbourhood), on a canvas with a one-pixel margin:
    # objects never overlap nor touch, so each is one connected blob whose box is its own.
    occupied = np.zeros((size + 2, size + 2), bool)
    boxes, labels = [], []
    wanted = rng.integers(min_objects, max_objects + 1)
    attempts = 0
    while len(boxes) < wanted and attempts < 30 * wanted:
        attempts += 1
        label = int(rng.integers(len(SYNTHETIC_CLASS_NAMES)))
        mask = _shape_mask(rng, label, size, size_range)
        height, width = mask.shape
        top, left = int(rng.integers(0, size - height + 1)), int(rng.integers(0, size - width + 1))
        box = np.array([left, top, left + width, top + height])
        if np.any(occupied[top + 1 : top + 1 + height, left + 1 : left + 1 + width] & mask):
            continue
        if boxes and box_iou(box, np.array(boxes)).max() > max_iou:
            continue
        colour = _CLASS_COLOURS[label] + rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, 3)
        image[top : top + height, left : left + width][mask] = colour
        occupied[top : top + height + 2, left : left + width + 2] |= _grow(mask)
        boxes.append(box)
        labels.append(label)
    if background == "noise":
        # Uniform noise: as good a texture as Gaussian here and several times cheaper to draw.
        image += (rng.random(image.shape, dtype=np.float32) - 0.5) * (2 * _NOISE_AMPLITUDE)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int32)


def _background(rng, size, background):
    """A float32 `(S, S, 3)` background: flat grey, or smooth low-saturation colour and clutter."""
    if background == "plain":
        return np.full((size, size, 3), rng.uniform(90, 170), np.float32)
    grey = rng.uniform(70, 185, (4, 4, 1))
    tint = rng.normal(0.0, 12.0, (4, 4, 3))
    coarse = Image.fromarray(np.clip(grey + tint, 0, 255).astype(np.uint8))
    canvas = coarse.resize((size, size), Image.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 5))):  # thin grey clutter the detector must ignore
        points = [tuple(p) for p in rng.uniform(0, size, (int(rng.integers(2, 4)), 2)).tolist()]
        level = int(rng.uniform(40, 220))
        draw.line(points, fill=(level, level, level), width=int(rng.integers(1, 4)))
    return np.array(canvas, np.float32)


def _shape_mask(rng, label, image_size, size_range):
    """The drawn pixels of one object: a bool array cropped to them (its shape is the object's
    box), the longer side drawn in `size_range` times the image side."""
    longer = rng.uniform(*size_range) * image_size
    name = SYNTHETIC_CLASS_NAMES[label]
    aspect = (
        np.exp(rng.uniform(np.log(0.6), np.log(1.6))) if name in ("rectangle", "ellipse", "triangle") else 1.0
    )
    width = max(4, int(round(longer * min(1.0, aspect))))
    height = max(4, int(round(longer * min(1.0, 1.0 / aspect))))
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    right, bottom = width - 1, height - 1
    if name == "rectangle":
        draw.rectangle([0, 0, right, bottom], fill=1)
    elif name == "ellipse":
        draw.ellipse([0, 0, right, bottom], fill=1)
    elif name == "triangle":
        angles = rng.uniform(0, 2 * np.pi) + np.array([0.0, 2.0, 4.0]) * np.pi / 3
        corners = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        corners = (corners - corners.min(0)) / np.ptp(corners, axis=0) * [right, bottom]
        draw.polygon([tuple(c) for c in corners.tolist()], fill=1)
    elif name == "cross":
        arm = max(2, int(round(rng.uniform(0.25, 0.4) * width)))
        start = (width - arm) // 2
        draw.rectangle([start, 0, start + arm - 1, bottom], fill=1)
        draw.rectangle([0, start, right, start + arm - 1], fill=1)
    else:  # ring
        draw.ellipse(
            [0, 0, right, bottom], outline=1, width=max(2, int(round(rng.uniform(0.15, 0.3) * width)))
        )
    mask = np.asarray(canvas, bool)
    rows, cols = np.nonzero(mask)
    return mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _grow(mask):
    """`(h + 2, w + 2)`: the mask dilated by one pixel in the 8-neighbourhood."""
    height, width = mask.shape
    grown = np.zeros((height + 2, width + 2), bool)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            grown[dy : dy + height, dx : dx + width] |= mask
    return grown


def _write_coco(path, file_names, objects, image_size):
    images, annotations = [], []
    for image_id, (name, (boxes, labels)) in enumerate(zip(file_names, objects, strict=True), start=1):
        images.append({"id": image_id, "file_name": name, "width": image_size, "height": image_size})
        for box, label in zip(boxes.tolist(), labels.tolist(), strict=True):
            width, height = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label + 1,
                    "bbox": [box[0], box[1], width, height],
                    "area": width * height,
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": index + 1, "name": name, "supercategory": "shape"}
        for index, name in enumerate(SYNTHETIC_CLASS_NAMES)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _write_yolo_labels(directory, file_names, objects, image_size):
    directory.mkdir(parents=True, exist_ok=True)
    for name, (boxes, labels) in zip(file_names, objects, strict=True):
        rows = []
        for box, label in zip(boxes / image_size, labels, strict=True):
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            rows.append(f"{label} {cx:.6f} {cy:.6f} {box[2] - box[0]:.6f} {box[3] - box[1]:.6f}\n")
        (directory / f"{os.path.splitext(name)[0]}.txt").write_text("".join(rows))


def _write_data_yaml(root):
    names = ", ".join(SYNTHETIC_CLASS_NAMES)
    text = (
        f"path: {root.resolve()}\n"
        "train: images/train\n"
        "val: images/val\n"
        f"nc: {len(SYNTHETIC_CLASS_NAMES)}\n"
        f"names: [{names}]\n"
    )
    path = root / "data.yaml"
    path.write_text(text)
    return path
