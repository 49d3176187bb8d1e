"""YOLO txt reader (Ultralytics layout: a dataset YAML, labels beside the images in labels/)."""

import os
import pathlib

import numpy as np
import yaml

from keras_yolov7.data.checks import IMAGE_SUFFIXES
from keras_yolov7.data.checks import ProblemLog
from keras_yolov7.data.checks import clean_boxes
from keras_yolov7.data.checks import finish
from keras_yolov7.data.checks import inspect_images
from keras_yolov7.data.records import ImageRecord


def read_yolo(data_yaml, split="train"):
    """Reads one split of a YOLO txt dataset into a `DetectionDataset`.

    The YAML has `path` (dataset root; relative to the YAML's folder; default that folder), one
    entry per split (`train`, `val`, optionally `test`: a folder of images, a .txt file listing
    image paths, or a list of those; relative to `path`) and `names` (a list, or a dict
    `{index: name}`). Each image `.../images/.../name.jpg` has its labels in
    `.../labels/.../name.txt`, one row per box: `class cx cy w h`, normalised to [0, 1] by the
    image size after EXIF orientation (the Ultralytics convention, so the orientation is always
    applied). Rows with more than 5 values are polygons `class x1 y1 x2 y2 ...` and become their
    bounding box.

    An image without a label file, or with an empty one, is kept as a negative (counted as
    "missing label file" / "empty label file"). Other problems are counted in `dataset.problems`
    and reported once: missing, corrupt or unsupported image files, duplicate images, label files
    without an image, malformed rows, duplicate rows, and the box problems of
    `checks.clean_boxes` (class id out of range, zero-area, outside the image, NaN).

    Args:
        data_yaml: path of the dataset YAML.
        split: which entry of the YAML to read ("train", "val", "test").

    Returns:
        A `DetectionDataset`; `image_id` is the image's index in the split, boxes are xyxy in
        original-image pixels.
    """
    data_yaml = pathlib.Path(data_yaml)
    with open(data_yaml, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    class_names = _class_names(config, data_yaml)
    root = pathlib.Path(config.get("path") or ".")
    if not root.is_absolute():
        root = data_yaml.parent / root
    if not config.get(split):
        splits = [key for key in ("train", "val", "test") if config.get(key)]
        raise ValueError(f"{data_yaml} has no '{split}' entry; it lists the splits {splits}")
    entries = config[split] if isinstance(config[split], list) else [config[split]]

    log = ProblemLog(f"{data_yaml} [{split}]")
    image_paths, listed_folders = [], []
    for entry in entries:
        location = root / str(entry)
        if location.is_dir():
            listed_folders.append(location)
            image_paths += sorted(
                str(p) for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif location.is_file():
            image_paths += _read_list(location)
        else:
            raise ValueError(
                f"{data_yaml}: split '{split}' entry {entry!r} resolves to {location}, which is "
                "neither a folder of images nor a .txt list of images"
            )
    unique, seen = [], set()
    for path in map(os.path.normpath, image_paths):
        if path in seen:
            log.add("duplicate image", path)
            continue
        seen.add(path)
        unique.append(path)
    _report_orphan_labels(listed_folders, unique, log)

    records = []
    for path, info in zip(unique, inspect_images(unique)):
        if isinstance(info, Exception):
            log.add(info.kind, path)
            continue
        width, height = info.size(apply_orientation=True)
        label_path = label_path_of(path)
        boxes, labels = _read_label_file(label_path, width, height, log)
        boxes, labels, crowd = clean_boxes(
            boxes,
            labels,
            np.zeros(len(labels), bool),
            width,
            height,
            len(class_names),
            log,
            label_path,
        )
        records.append(
            ImageRecord(path, len(records), width, height, boxes, labels, crowd, info.orientation)
        )
    return finish(records, class_names, log)


def label_path_of(image_path):
    """`.../images/.../x.jpg` -> `.../labels/.../x.txt` (the last `images` folder is replaced)."""
    parts = list(pathlib.Path(image_path).parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return str(pathlib.Path(*parts).with_suffix(".txt"))


def _class_names(config, data_yaml):
    names = config.get("names")
    if isinstance(names, dict):
        keys = sorted(int(k) for k in names)
        if keys != list(range(len(keys))):
            raise ValueError(f"{data_yaml}: 'names' keys are {keys}; expected 0..{len(keys) - 1}")
        names = [names[k] if k in names else names[str(k)] for k in keys]
    if not isinstance(names, list) or not names:
        raise ValueError(f"{data_yaml}: 'names' must be a non-empty list or dict, got {names!r}")
    if "nc" in config and int(config["nc"]) != len(names):
        raise ValueError(f"{data_yaml}: nc is {config['nc']} but 'names' has {len(names)} entries")
    return [str(n) for n in names]


def _read_list(list_file):
    """Image paths listed one per line; relative ones are relative to the list's folder."""
    paths = []
    with open(list_file, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                path = pathlib.Path(line)
                paths.append(str(path if path.is_absolute() else list_file.parent / path))
    return paths


def _report_orphan_labels(folders, image_paths, log):
    """Counts label files that no listed image uses (only for splits given as folders)."""
    wanted = {os.path.normpath(label_path_of(p)) for p in image_paths}
    for folder in folders:
        label_folder = pathlib.Path(label_path_of(str(folder / "x"))).parent
        if label_folder.is_dir():
            for label in sorted(label_folder.rglob("*.txt")):
                if os.path.normpath(label) not in wanted:
                    log.add("label file without image", label)


def _read_label_file(label_path, width, height, log):
    """Parses `class cx cy w h` rows (normalised) into xyxy pixel boxes and class ids."""
    try:
        with open(label_path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        log.add("missing label file", label_path)
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    rows = [line.split() for line in lines if line.strip()]
    if not rows:
        log.add("empty label file", label_path)
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    boxes, labels, seen = [], [], set()
    for row in rows:
        parsed = _parse_row(row)
        if parsed is None:
            log.add("malformed label row", label_path)
            continue
        if tuple(row) in seen:
            log.add("duplicate label row", label_path)
            continue
        seen.add(tuple(row))
        label, box = parsed
        boxes.append(box * [width, height, width, height])
        labels.append(label)
    return np.reshape(boxes, (-1, 4)), np.asarray(labels, np.int64)


def _parse_row(row):
    """`(class, normalised xyxy)` from a box or polygon row; None when malformed."""
    if len(row) < 5 or (len(row) > 5 and len(row) % 2 == 0):
        return None
    try:
        values = [float(v) for v in row]
    except ValueError:
        return None
    if not values[0].is_integer():
        return None
    if len(row) == 5:
        cx, cy, w, h = values[1:]
        box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    else:
        xy = np.reshape(values[1:], (-1, 2))
        box = np.concatenate([xy.min(axis=0), xy.max(axis=0)])
    return int(values[0]), box
