"""Pascal VOC XML reader (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt)."""

import pathlib
from xml.etree import ElementTree

import numpy as np

from keras_yolov7.data.checks import ProblemLog
from keras_yolov7.data.checks import choose_orientation
from keras_yolov7.data.checks import clean_boxes
from keras_yolov7.data.checks import finish
from keras_yolov7.data.checks import inspect_images
from keras_yolov7.data.records import ImageRecord

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip


def read_voc(root, split="train", class_names=None):
    """Reads one split of a Pascal VOC style dataset into a `DetectionDataset`.

    Layout: `root/Annotations/<id>.xml`, `root/JPEGImages/<filename>` and
    `root/ImageSets/Main/<split>.txt` listing the ids (with `split=None` every XML file is read).
    VOC pixel coordinates are 1-based inclusive; they become 0-based xyxy edges
    (`x_min - 1, y_min - 1, x_max, y_max`). `difficult` objects are kept with `crowd=True`:
    excluded from training targets, ignored by evaluation. Images without objects are negatives.
    Box pixels follow the stored image unless the XML `<size>` matches only the EXIF-rotated size
    (see `checks.choose_orientation`).

    Problems counted in `dataset.problems` and reported once: missing annotation files, malformed
    XML or objects, unknown class names (when `class_names` is given), missing or corrupt images,
    duplicate ids, and the box problems of `checks.clean_boxes`.

    Args:
        root: the dataset folder (e.g. `VOCdevkit/VOC2012`).
        split: name of the ImageSets/Main list ("train", "val", "trainval", "test") or None.
        class_names: the classes in index order. Default: the 20 Pascal VOC classes when every
            object name is one of them, otherwise the sorted names found in the split.

    Returns:
        A `DetectionDataset`; `image_id` is the image's index in the split, boxes are xyxy in
        original-image pixels.
    """
    root = pathlib.Path(root)
    annotation_dir = root / "Annotations"
    if not annotation_dir.is_dir():
        raise ValueError(f"{root} has no Annotations/ folder; expected a Pascal VOC layout")
    log = ProblemLog(f"{root} [{split}]")
    ids = _split_ids(root, split, log)

    parsed = []
    for image_id in ids:
        xml_path = annotation_dir / f"{image_id}.xml"
        if not xml_path.is_file():
            log.add("missing annotation file", xml_path)
            continue
        try:
            parsed.append((xml_path, _parse_xml(xml_path, root, image_id, log)))
        except (ElementTree.ParseError, ValueError) as error:
            log.add("malformed annotation file", f"{xml_path}: {error}")

    if class_names is None:
        found = {name for _, entry in parsed for name, _, _ in entry["objects"]}
        class_names = list(VOC_CLASSES) if found <= set(VOC_CLASSES) else sorted(found)
    class_of = {name: i for i, name in enumerate(class_names)}

    paths = [entry["image"] for _, entry in parsed]
    records = []
    for (xml_path, entry), info in zip(parsed, inspect_images(paths)):
        if isinstance(info, Exception):
            log.add(info.kind, entry["image"])
            continue
        orientation, width, height = choose_orientation(info, entry["size"], log, entry["image"])
        boxes, labels, crowd = [], [], []
        for name, box, difficult in entry["objects"]:
            if name not in class_of:
                log.add("unknown class name", f"{xml_path} ({name!r})")
                continue
            boxes.append(box)
            labels.append(class_of[name])
            crowd.append(difficult)
        boxes, labels, crowd = clean_boxes(
            np.reshape(boxes, (-1, 4)),
            labels,
            crowd,
            width,
            height,
            len(class_names),
            log,
            xml_path,
        )
        records.append(
            ImageRecord(
                entry["image"], len(records), width, height, boxes, labels, crowd, orientation
            )
        )
    return finish(records, class_names, log)


def _split_ids(root, split, log):
    if split is None:
        return sorted(p.stem for p in (root / "Annotations").glob("*.xml"))
    list_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not list_file.is_file():
        available = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt"))
        raise ValueError(
            f"{list_file} not found; available splits: {available} (or split=None for every XML)"
        )
    ids, seen = [], set()
    for line in list_file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        image_id = line.split()[0]
        if image_id in seen:
            log.add("duplicate image id", f"{list_file} ({image_id})")
            continue
        seen.add(image_id)
        ids.append(image_id)
    return ids


def _parse_xml(xml_path, root, image_id, log):
    """`{"image": path, "size": (w, h) or None, "objects": [(name, xyxy, difficult)]}`."""
    tree = ElementTree.parse(xml_path).getroot()
    filename = (tree.findtext("filename") or "").strip() or f"{image_id}.jpg"
    size = None
    width, height = tree.findtext("size/width"), tree.findtext("size/height")
    if width and height and int(float(width)) > 0 and int(float(height)) > 0:
        size = (int(float(width)), int(float(height)))
    objects = []
    for obj in tree.iter("object"):
        name = (obj.findtext("name") or "").strip()
        try:
            x1, y1, x2, y2 = (
                float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")
            )
            difficult = bool(int(float(obj.findtext("difficult") or 0)))
        except (TypeError, ValueError):
            log.add("malformed object", xml_path)
            continue
        if not name:
            log.add("malformed object", xml_path)
            continue
        objects.append((name, (x1 - 1.0, y1 - 1.0, x2, y2), difficult))
    return {"image": str(root / "JPEGImages" / filename), "size": size, "objects": objects}
