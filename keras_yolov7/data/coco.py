"""COCO JSON (instances) reader and the category-id mapping pycocotools needs."""

import json
import math
import pathlib

import numpy as np

from keras_yolov7.data.checks import OUTSIDE_ROOT
from keras_yolov7.data.checks import ProblemLog
from keras_yolov7.data.checks import choose_orientation
from keras_yolov7.data.checks import clean_boxes
from keras_yolov7.data.checks import finish
from keras_yolov7.data.checks import inspect_images
from keras_yolov7.data.checks import is_inside
from keras_yolov7.data.checks import read_text
from keras_yolov7.data.checks import shown
from keras_yolov7.data.checks import shown_value
from keras_yolov7.data.records import ImageRecord

_SECTIONS = ("images", "annotations", "categories")


def read_coco(annotation_file, image_dir=None, allow_outside_root=False):
    """Reads a COCO instances JSON file into a `DetectionDataset`.

    Category ids (non-contiguous in COCO: 1..90 for 80 classes) are sorted and mapped to
    contiguous class indices `0 .. C-1`; `dataset.category_ids[i]` gives the original id back (see
    `to_category_ids`). Images without annotations are kept as negatives. `iscrowd` boxes are kept
    with `crowd=True`: the training pipeline leaves them out of its targets, evaluation ignores
    them. Each annotation's `area` is kept for evaluation (the box area when it has none). The
    `info` and `licenses` keys are not needed.

    Box pixels follow the stored image unless the JSON size matches only the EXIF-rotated size
    (see `checks.choose_orientation`); COCO's own tools read stored pixels.

    A file that is not UTF-8 JSON with `images`, `annotations` and `categories` lists raises a
    `ValueError` naming the file and what is wrong. Problems with entries are counted in
    `dataset.problems` (images left out in `dataset.skipped_images`, annotations in
    `dataset.dropped_annotations`), reported once in a logged warning, never fatal unless no
    image is left: categories without an integer `id` or a `name`, duplicate category ids,
    image entries without an integer `id` or a `file_name`, duplicate image ids (first kept),
    `file_name`s leading outside `image_dir`, missing or corrupt image files, annotations for
    unknown images or categories, `bbox` other than 4 numbers, `iscrowd` other than 0 / 1, the
    annotations of images left out, and the box problems of `checks.clean_boxes`.

    Args:
        annotation_file: path of the JSON file, e.g. `annotations/instances_val2017.json`.
        image_dir: folder holding the images' `file_name`s. Default: the first existing of
            `<root>/<split>` and `<root>/images/<split>`, where `<root>` is the folder above the
            JSON's folder and `<split>` the JSON name without `instances_` (e.g. `val2017`).
        allow_outside_root: also read images whose `file_name` leads outside `image_dir` (an
            absolute path, `..`); by default they are left out ("path outside dataset root").

    Returns:
        A `DetectionDataset` with `category_ids` set; record `image_id`s are the COCO ids and boxes
        are xyxy in original-image pixels.
    """
    annotation_file = pathlib.Path(annotation_file)
    data = _load_json(annotation_file)
    image_dir = pathlib.Path(image_dir) if image_dir else _default_image_dir(annotation_file)
    log = ProblemLog(annotation_file)
    categories = _categories(data["categories"], annotation_file, log)
    category_ids = sorted(categories)
    class_of = {category_id: i for i, category_id in enumerate(category_ids)}
    images = _images(data["images"], annotation_file, log)

    objects_of = {image_id: [] for image_id in images}
    for i, annotation in enumerate(data["annotations"]):
        where = f"{annotation_file} (annotation {_name(annotation, i)})"
        found = _annotation(annotation, images, class_of, log, where)
        if found is not None:
            objects_of[annotation["image_id"]].append(found)

    entries, paths = [], []
    for entry in images.values():
        path = image_dir / entry["file_name"]
        if not allow_outside_root and not is_inside(path, image_dir):
            log.skip_image(OUTSIDE_ROOT, path)
            skipped = len(objects_of[entry["id"]])
            log.drop_annotations("annotation of a skipped image", path, skipped)
            continue
        entries.append(entry)
        paths.append(str(path))
    records = []
    for entry, path, info in zip(entries, paths, inspect_images(paths)):
        found = objects_of[entry["id"]]
        if isinstance(info, Exception):
            log.skip_image(info.kind, path)
            log.drop_annotations("annotation of a skipped image", path, len(found))
            continue
        orientation, width, height = choose_orientation(
            info, _annotated_size(entry, annotation_file, log), log, path
        )
        boxes, labels, kept = clean_boxes(
            [box for box, _, _, _ in found],
            [label for _, label, _, _ in found],
            width,
            height,
            len(category_ids),
            log,
            path,
        )
        crowd = np.array([crowd for _, _, crowd, _ in found], bool)[kept]
        areas = np.array([area for _, _, _, area in found], np.float64).reshape(-1)[kept]
        sides = boxes[:, 2:] - boxes[:, :2]
        areas = np.where(np.isnan(areas), sides[:, 0] * sides[:, 1], areas)
        records.append(
            ImageRecord(
                path, entry["id"], width, height, boxes, labels, crowd, orientation, areas
            )
        )
    return finish(records, [categories[i] for i in category_ids], log, category_ids)


def _load_json(path):
    """The parsed file, checked to be an object with `images`, `annotations` and `categories`
    lists; a one-line ValueError otherwise."""
    text = read_text(path)
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError(f"{shown(path)} is not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{shown(path)} is not valid JSON: {error.msg} at line {error.lineno}, column "
            f"{error.colno}"
        ) from None
    except ValueError as error:  # an integer with more digits than Python converts
        raise ValueError(f"{shown(path)} is not valid JSON: {shown(error)}") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{shown(path)}: the top level is {shown_value(data)}; expected a COCO instances "
            "object with 'images', 'annotations' and 'categories'"
        )
    missing = [key for key in _SECTIONS if key not in data]
    if missing:
        raise ValueError(
            f"{shown(path)} has no {missing} key(s); expected a COCO instances file with "
            "'images', 'annotations' and 'categories'"
        )
    for key in _SECTIONS:
        if not isinstance(data[key], list):
            raise ValueError(
                f"{shown(path)}: '{key}' is {shown_value(data[key])}; expected a list"
            )
    return data


def _whole_number(value):
    """`value` if it is an int (not a bool), else None: COCO ids are integers."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value):
    """`value` as a float if it is a JSON number (not a bool), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _name(entry, index):
    """How a message names an entry: by its integer `id`, else by its position."""
    entry_id = _whole_number(entry.get("id")) if isinstance(entry, dict) else None
    return f"id {entry_id}" if entry_id is not None else f"entry #{index}"


def _categories(entries, annotation_file, log):
    """`{category id: name}` of the well-formed categories (the first of duplicate ids)."""
    categories = {}
    for i, category in enumerate(entries):
        where = f"{annotation_file} (category {_name(category, i)})"
        if not isinstance(category, dict):
            log.note("malformed category", where)
            continue
        category_id = _whole_number(category.get("id"))
        name = category.get("name")
        if category_id is None or not isinstance(name, (str, int, float)) or name == "":
            log.note("malformed category", where)
            continue
        if category_id in categories:
            log.note("duplicate category id", where)
            continue
        categories[category_id] = str(name)
    return categories


def _images(entries, annotation_file, log):
    """`{image id: entry}` of the image entries with an integer `id` and a `file_name`."""
    images = {}
    for i, image in enumerate(entries):
        where = f"{annotation_file} (image {_name(image, i)})"
        image_id = _whole_number(image.get("id")) if isinstance(image, dict) else None
        file_name = image.get("file_name") if isinstance(image, dict) else None
        if image_id is None or not isinstance(file_name, str) or not file_name.strip():
            log.skip_image("malformed image entry", where)
            continue
        if image_id in images:
            log.skip_image("duplicate image id", where)
            continue
        images[image_id] = image
    return images


def _annotation(annotation, images, class_of, log, where):
    """`(xyxy box, class index, crowd, area or NaN)` of one annotation; None when dropped."""
    if not isinstance(annotation, dict):
        log.drop_annotations("malformed annotation", where)
        return None
    if _whole_number(annotation.get("image_id")) not in images:
        log.drop_annotations("annotation for unknown image id", where)
        return None
    category_id = _whole_number(annotation.get("category_id"))
    if category_id not in class_of:
        log.drop_annotations("unknown category id", where)
        return None
    bbox = annotation.get("bbox")
    values = [_number(v) for v in bbox] if isinstance(bbox, list) and len(bbox) == 4 else [None]
    if None in values:
        log.drop_annotations("malformed bbox", where)
        return None
    crowd = annotation.get("iscrowd", 0)
    if crowd not in (0, 1) or not isinstance(crowd, (int, float)):
        log.drop_annotations("malformed iscrowd", where)
        return None
    area = _number(annotation.get("area"))
    x, y, w, h = values
    return (
        (x, y, x + w, y + h),
        class_of[category_id],
        bool(crowd),
        area if area is not None and math.isfinite(area) and area > 0 else math.nan,
    )


def _annotated_size(entry, annotation_file, log):
    """`(width, height)` the entry declares, or None when it declares none or a bad one."""
    if "width" not in entry and "height" not in entry:
        return None
    size = [_number(entry.get(key)) for key in ("width", "height")]
    if None in size or not all(math.isfinite(v) and v >= 1 and v.is_integer() for v in size):
        log.note("malformed image size", f"{annotation_file} (image id {entry['id']})")
        return None
    return int(size[0]), int(size[1])


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
