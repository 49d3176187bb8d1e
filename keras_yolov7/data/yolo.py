"""YOLO txt reader (Ultralytics layout: a dataset YAML, labels beside the images in labels/)."""

import os
import pathlib

import numpy as np

from keras_yolov7.data.checks import IMAGE_SUFFIXES
from keras_yolov7.data.checks import OUTSIDE_ROOT
from keras_yolov7.data.checks import ProblemLog
from keras_yolov7.data.checks import UnreadableText
from keras_yolov7.data.checks import clean_boxes
from keras_yolov7.data.checks import finish
from keras_yolov7.data.checks import inspect_images
from keras_yolov7.data.checks import is_inside
from keras_yolov7.data.checks import read_text
from keras_yolov7.data.checks import read_yaml
from keras_yolov7.data.checks import shown
from keras_yolov7.data.checks import shown_value
from keras_yolov7.data.records import ImageRecord


def read_yolo(data_yaml, split="train", allow_outside_root=False):
    """Reads one split of a YOLO txt dataset into a `DetectionDataset`.

    The YAML has `path` (dataset root; relative to the YAML's folder; default that folder), one
    entry per split (`train`, `val`, optionally `test`: a folder of images, a .txt file listing
    image paths, or a list of those; relative to `path`) and `names` (a list, or a dict
    `{index: name}`). Each image `.../images/.../name.jpg` has its labels in
    `.../labels/.../name.txt`, one row per box: `class cx cy w h`, normalised to [0, 1] by the
    image size after EXIF orientation (the Ultralytics convention, so the orientation is always
    applied). Rows with more than 5 values are polygons `class x1 y1 x2 y2 ...` and become their
    bounding box. Text files may start with a UTF-8 byte-order mark.

    A YAML that is not UTF-8, not valid YAML (tags that build Python objects included), not a
    mapping, without valid `names` or without the split raises a `ValueError` naming the file,
    the field and what was expected. So does a `path` or split entry leading outside the YAML's
    folder, unless `allow_outside_root`.

    An image without a label file, or with an empty one, is kept as a negative (counted as
    "missing label file" / "empty label file"). Other problems are counted in `dataset.problems`
    (images left out in `dataset.skipped_images`, rows in `dataset.dropped_annotations`) and
    reported once: missing, corrupt or unsupported image files, listed images outside the
    dataset root, duplicate images, label files that are not UTF-8 text or not files (the image
    is left out: its labels are unknown), label files without an image, malformed rows,
    duplicate rows, and the box problems of `checks.clean_boxes` (class id out of range,
    zero-area, outside the image, NaN).

    Args:
        data_yaml: path of the dataset YAML.
        split: which entry of the YAML to read ("train", "val", "test").
        allow_outside_root: also read a `path`, split entries, images and label files outside
            the YAML's folder (an absolute path, `..`); by default the YAML's `path` and split
            entries must stay inside it and listed images outside it are left out ("path
            outside dataset root").

    Returns:
        A `DetectionDataset`; `image_id` is the image's index in the split, boxes are xyxy in
        original-image pixels.
    """
    data_yaml = pathlib.Path(data_yaml)
    config = read_yaml(data_yaml)
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ValueError(
            f"{shown(data_yaml)}: the top level is {shown_value(config)}; expected a mapping "
            "with 'names' and the splits ('path', 'train', 'val', ...)"
        )
    class_names = _class_names(config, data_yaml)
    top = data_yaml.parent
    root = config.get("path") or "."
    if not isinstance(root, str):
        raise ValueError(f"{shown(data_yaml)}: 'path' is {shown_value(root)}; expected a folder")
    root = top / root
    _check_inside(root, top, allow_outside_root, f"{shown(data_yaml)}: 'path'")
    entries = _split_entries(config, split, data_yaml)

    log = ProblemLog(f"{data_yaml} [{split}]")
    image_paths, listed_folders = [], []
    for entry in entries:
        location = root / entry
        _check_inside(location, top, allow_outside_root, f"{shown(data_yaml)}: '{split}' entry")
        if location.is_dir():
            listed_folders.append(location)
            image_paths += sorted(
                str(p) for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif location.is_file():
            image_paths += _read_list(location)
        else:
            raise ValueError(
                f"{shown(data_yaml)}: split '{split}' entry {shown_value(entry)} resolves to "
                f"{shown(location)}, which is neither a folder of images nor a .txt list of images"
            )
    unique, seen = [], set()
    for path in map(os.path.normpath, image_paths):
        if path in seen:
            log.skip_image("duplicate image", path)
        elif not allow_outside_root and not (
            is_inside(path, top) and is_inside(label_path_of(path), top)
        ):
            log.skip_image(OUTSIDE_ROOT, path)
        else:
            unique.append(path)
        seen.add(path)
    _report_orphan_labels(listed_folders, unique, log)

    records = []
    for path, info in zip(unique, inspect_images(unique)):
        if isinstance(info, Exception):
            log.skip_image(info.kind, path)
            continue
        width, height = info.size(apply_orientation=True)
        label_path = label_path_of(path)
        rows = _read_label_file(label_path, log)
        if rows is None:
            continue
        boxes, labels = _parse_rows(rows, width, height, log, label_path)
        boxes, labels, _ = clean_boxes(
            boxes, labels, width, height, len(class_names), log, label_path
        )
        records.append(
            ImageRecord(path, len(records), width, height, boxes, labels, None, info.orientation)
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


def _check_inside(location, top, allow_outside_root, what):
    if not allow_outside_root and not is_inside(location, top):
        raise ValueError(
            f"{what} leads to {shown(os.path.normpath(location))}, outside the dataset root "
            f"{shown(top)} (the YAML's folder); move the YAML into the dataset, or allow it with "
            "allow_outside_root=True (command line: --allow-outside-root)"
        )


def _split_entries(config, split, data_yaml):
    """The folders / list files of `split`: a string or a list of strings."""
    entries = config.get(split)
    if not entries:
        splits = [key for key in ("train", "val", "test") if config.get(key)]
        raise ValueError(f"{shown(data_yaml)} has no '{split}' entry; it lists the splits {splits}")
    entries = entries if isinstance(entries, list) else [entries]
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError(
                f"{shown(data_yaml)}: '{split}' holds {shown_value(entry)}; expected a folder or "
                "a .txt list of images (or a list of those)"
            )
    return entries


def _class_names(config, data_yaml):
    names = config.get("names")
    where = shown(data_yaml)
    if isinstance(names, dict):
        keys = {}
        for key in names:
            index = key if isinstance(key, int) and not isinstance(key, bool) else None
            if isinstance(key, str) and key.strip().isdecimal():
                index = int(key)
            if index is None:
                raise ValueError(
                    f"{where}: 'names' has the key {shown_value(key)}; expected class indices "
                    "0, 1, 2, ..."
                )
            keys[index] = key
        if sorted(keys) != list(range(len(keys))):
            shown_keys = sorted(keys)[:10]
            raise ValueError(
                f"{where}: 'names' keys are {shown_keys}{' ...' if len(keys) > 10 else ''}; "
                f"expected 0..{len(keys) - 1}"
            )
        names = [names[keys[i]] for i in range(len(keys))]
    if not isinstance(names, list) or not names:
        raise ValueError(
            f"{where}: 'names' is {shown_value(names)}; expected a non-empty list or dict of "
            "class names"
        )
    for i, name in enumerate(names):
        if not isinstance(name, (str, int, float)) or isinstance(name, bool) or name == "":
            raise ValueError(
                f"{where}: class name {i} is {shown_value(name)}; expected a non-empty string"
            )
    if "nc" in config:
        nc = config["nc"]
        if not isinstance(nc, int) or isinstance(nc, bool):
            raise ValueError(f"{where}: 'nc' is {shown_value(nc)}; expected a whole number")
        if nc != len(names):
            raise ValueError(f"{where}: nc is {nc} but 'names' has {len(names)} entries")
    return [str(n) for n in names]


def _read_list(list_file):
    """Image paths listed one per line; relative ones are relative to the list's folder."""
    paths = []
    for line in read_text(list_file).splitlines():
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
                    log.note("label file without image", label)


def _read_label_file(label_path, log):
    """The non-empty rows of a label file, split into fields; `[]` when there is no label file
    (the image is a negative); None when the file cannot be read (the image is left out)."""
    try:
        lines = read_text(label_path).splitlines()
    except FileNotFoundError:
        log.note("missing label file", label_path)
        return []
    except UnreadableText as error:
        log.skip_image(f"label file {error.kind}", label_path)
        return None
    except OSError:
        log.skip_image("unreadable label file", label_path)
        return None
    rows = [line.split() for line in lines if line.strip()]
    if not rows:
        log.note("empty label file", label_path)
    return rows


def _parse_rows(rows, width, height, log, label_path):
    """`class cx cy w h` rows (normalised) -> xyxy pixel boxes and class ids (float)."""
    boxes, labels, seen = [], [], set()
    for row in rows:
        parsed = _parse_row(row)
        if parsed is None:
            log.drop_annotations("malformed label row", label_path)
            continue
        if tuple(row) in seen:
            log.drop_annotations("duplicate label row", label_path)
            continue
        seen.add(tuple(row))
        label, box = parsed
        boxes.append(box * [width, height, width, height])
        labels.append(label)
    return np.reshape(boxes, (-1, 4)), np.asarray(labels, np.float64)


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
    return values[0], box
