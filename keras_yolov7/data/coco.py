"""COCO JSON (instances) reader and the category-id mapping pycocotools needs."""

import json
import pathlib

import numpy as np

from keras_yolov7.data.checks import ProblemLog
from keras_yolov7.data.checks import choose_orientation
from keras_yolov7.data.checks import clean_boxes
from keras_yolov7.data.checks import finish
from keras_yolov7.data.checks import inspect_images
from keras_yolov7.data.records import ImageRecord


def read_coco(annotation_file, image_dir=None):
    """Reads a COCO instances JSON file into a `DetectionDataset`.

    Category ids (non-contiguous in COCO: 1..90 for 80 classes) are sorted and mapped to
    contiguous class indices `0 .. C-1`; `dataset.category_ids[i]` gives the original id back (see
    `to_category_ids`). Images without annotations are kept as negatives. `iscrowd` boxes are kept
    with `crowd=True`: the training pipeline leaves them out of its targets, evaluation ignores
    them. The `info` and `licenses` keys are not needed.

    Box pixels follow the stored image unless the JSON size matches only the EXIF-rotated size
    (see `checks.choose_orientation`); COCO's own tools read stored pixels.

    Problems (counted in `dataset.problems`, reported once in a logged warning, never fatal unless
    no image is left): missing or corrupt image files, duplicate image ids (first kept),
    duplicate category ids, annotations for unknown images or categories, malformed `bbox`
    fields, and the box problems of `checks.clean_boxes`.

    Args:
        annotation_file: path of the JSON file, e.g. `annotations/instances_val2017.json`.
        image_dir: folder holding the images' `file_name`s. Default: the first existing of
            `<root>/<split>` and `<root>/images/<split>`, where `<root>` is the folder above the
            JSON's folder and `<split>` the JSON name without `instances_` (e.g. `val2017`).

    Returns:
        A `DetectionDataset` with `category_ids` set; record `image_id`s are the COCO ids and boxes
        are xyxy in original-image pixels.
    """
    annotation_file = pathlib.Path(annotation_file)
    with open(annotation_file, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{annotation_file} is not valid JSON: {error}") from error
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise ValueError(
            f"{annotation_file} has no {missing} key(s); expected a COCO instances file with "
            "'images', 'annotations' and 'categories'"
        )
    image_dir = pathlib.Path(image_dir) if image_dir else _default_image_dir(annotation_file)
    log = ProblemLog(annotation_file)

    categories = {}
    for category in data["categories"]:
        if category["id"] in categories:
            log.add("duplicate category id", f"{annotation_file} (category id {category['id']})")
            continue
        categories[category["id"]] = category["name"]
    category_ids = sorted(categories)
    class_of = {category_id: i for i, category_id in enumerate(category_ids)}

    images = {}
    for image in data["images"]:
        if image["id"] in images:
            log.add("duplicate image id", f"{annotation_file} (image id {image['id']})")
            continue
        images[image["id"]] = image

    boxes_of = {image_id: [] for image_id in images}
    for annotation in data["annotations"]:
        where = f"{annotation_file} (annotation id {annotation.get('id')})"
        if annotation.get("image_id") not in images:
            log.add("annotation for unknown image id", where)
            continue
        if annotation.get("category_id") not in class_of:
            log.add("unknown category id", where)
            continue
        bbox = annotation.get("bbox")
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            log.add("malformed bbox", where)
            continue
        boxes_of[annotation["image_id"]].append(
            (
                (x, y, x + w, y + h),
                class_of[annotation["category_id"]],
                bool(annotation.get("iscrowd", 0)),
            )
        )

    entries = list(images.values())
    paths = [str(image_dir / entry["file_name"]) for entry in entries]
    records = []
    for entry, path, info in zip(entries, paths, inspect_images(paths)):
        if isinstance(info, Exception):
            log.add(info.kind, path)
            continue
        annotated = (
            (entry["width"], entry["height"]) if "width" in entry and "height" in entry else None
        )
        orientation, width, height = choose_orientation(info, annotated, log, path)
        found = boxes_of[entry["id"]]
        boxes, labels, crowd = clean_boxes(
            [b for b, _, _ in found],
            [c for _, c, _ in found],
            [k for _, _, k in found],
            width,
            height,
            len(category_ids),
            log,
            path,
        )
        records.append(
            ImageRecord(path, int(entry["id"]), width, height, boxes, labels, crowd, orientation)
        )
    return finish(records, [categories[i] for i in category_ids], log, category_ids)


def to_category_ids(dataset, labels):
    """Maps contiguous class indices back to the dataset's original COCO category ids.

    Args:
        dataset: a `DetectionDataset` read from COCO JSON (`category_ids` set).
        labels: int array of contiguous class indices, any shape.

    Returns:
        int64 array of the same shape, e.g. for `pycocotools.COCO.loadRes`.
    """
    if dataset.category_ids is None:
        raise ValueError("dataset.category_ids is None: only COCO JSON datasets carry category ids")
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(dataset.category_ids)):
        raise ValueError(
            f"labels span {labels.min()}..{labels.max()} but the dataset has "
            f"{len(dataset.category_ids)} classes (0..{len(dataset.category_ids) - 1})"
        )
    return np.asarray(dataset.category_ids, np.int64)[labels]


def _default_image_dir(annotation_file):
    root = annotation_file.parent.parent
    split = annotation_file.stem.removeprefix("instances_")
    candidates = [root / split, root / "images" / split]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ValueError(
        f"no image folder found for {annotation_file}: tried {', '.join(map(str, candidates))}; "
        "pass image_dir="
    )
