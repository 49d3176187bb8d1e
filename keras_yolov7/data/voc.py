"""Pascal VOC XML reader (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt)."""

import math
import pathlib
from xml.etree import ElementTree

import numpy as np

from keras_yolov7.data.checks import OUTSIDE_ROOT
from keras_yolov7.data.checks import ProblemLog
from keras_yolov7.data.checks import choose_orientation
from keras_yolov7.data.checks import clean_boxes
from keras_yolov7.data.checks import finish
from keras_yolov7.data.checks import inspect_images
from keras_yolov7.data.checks import is_inside
from keras_yolov7.data.checks import read_text
from keras_yolov7.data.records import ImageRecord

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip


def read_voc(root, split="train", class_names=None, allow_outside_root=False):
    """Reads one split of a Pascal VOC style dataset into a `DetectionDataset`.

    Layout: `root/Annotations/<id>.xml`, `root/JPEGImages/<filename>` and
    `root/ImageSets/Main/<split>.txt` listing the ids (with `split=None` every XML file is read).
    VOC pixel coordinates are 1-based inclusive; they become 0-based xyxy edges
    (`x_min - 1, y_min - 1, x_max, y_max`). `difficult` objects are kept with `crowd=True`:
    excluded from training targets, ignored by evaluation. Images without objects are negatives.
    Box pixels follow the stored image unless the XML `<size>` matches only the EXIF-rotated size
    (see `checks.choose_orientation`). XML entities are expanded only within expat's
    amplification limit and external entities are never fetched: such a file is malformed.

    Problems counted in `dataset.problems` (images left out in `dataset.skipped_images`, objects
    in `dataset.dropped_annotations`) and reported once: missing or malformed annotation files,
    ids or `<filename>`s leading outside `root`, malformed `<size>`s (ignored) or objects, unknown
    class names (when `class_names` is given), missing or corrupt images (their objects are
    dropped with them), duplicate ids, and the box problems of `checks.clean_boxes`.

    Args:
        root: the dataset folder (e.g. `VOCdevkit/VOC2012`).
        split: name of the ImageSets/Main list ("train", "val", "trainval", "test") or None.
        class_names: the classes in index order. Default: the 20 Pascal VOC classes when every
            object name is one of them, otherwise the sorted names found in the split.
        allow_outside_root: also read annotation and image files outside `root` (an id or a
            `<filename>` with `..` or an absolute path); by default they are left out ("path
            outside dataset root").

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
        if not allow_outside_root and not is_inside(xml_path, root):
            log.skip_image(OUTSIDE_ROOT, xml_path)
            continue
        if not xml_path.exists():
            log.skip_image("missing annotation file", xml_path)
            continue
        if not xml_path.is_file():  # a folder, a FIFO (which would block), a device
            log.skip_image("annotation path not a regular file", xml_path)
            continue
        try:
            entry = _parse_xml(xml_path, root, image_id, log)
        except ElementTree.ParseError as error:
            log.skip_image("malformed annotation file", f"{xml_path}: {error}")
            continue
        if not allow_outside_root and not is_inside(entry["image"], root):
            log.skip_image(OUTSIDE_ROOT, entry["image"])
            log.drop_annotations("annotation of a skipped image", xml_path, len(entry["objects"]))
            continue
        parsed.append((xml_path, entry))

    if class_names is None:
        found = {name for _, entry in parsed for name, _, _ in entry["objects"]}
        class_names = list(VOC_CLASSES) if found <= set(VOC_CLASSES) else sorted(found)
    class_of = {name: i for i, name in enumerate(class_names)}

    paths = [entry["image"] for _, entry in parsed]
    records = []
    for (xml_path, entry), info in zip(parsed, inspect_images(paths)):
        if isinstance(info, Exception):
            log.skip_image(info.kind, entry["image"])
            log.drop_annotations("annotation of a skipped image", xml_path, len(entry["objects"]))
            continue
        orientation, width, height = choose_orientation(info, entry["size"], log, entry["image"])
        boxes, labels, crowd = [], [], []
        for name, box, difficult in entry["objects"]:
            if name not in class_of:
                log.drop_annotations("unknown class name", f"{xml_path} ({name!r})")
                continue
            boxes.append(box)
            labels.append(class_of[name])
            crowd.append(difficult)
        boxes, labels, kept = clean_boxes(
            np.reshape(boxes, (-1, 4)), labels, width, height, len(class_names), log, xml_path
        )
        crowd = np.asarray(crowd, bool)[kept]
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
    for line in read_text(list_file).splitlines():
        if not line.strip():
            continue
        image_id = line.split()[0]
        if image_id in seen:
            log.skip_image("duplicate image id", f"{list_file} ({image_id})")
            continue
        seen.add(image_id)
        ids.append(image_id)
    return ids


def _number(text):
    """The finite number an XML field holds, or None (missing, not a number, inf, NaN)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _parse_xml(xml_path, root, image_id, log):
    """`{"image": path, "size": (w, h) or None, "objects": [(name, xyxy, difficult)]}`.

    Raises:
        ElementTree.ParseError: the file is not well-formed XML.
    """
    tree = ElementTree.parse(xml_path).getroot()
    filename = (tree.findtext("filename") or "").strip() or f"{image_id}.jpg"
    size = None
    if tree.find("size") is not None:
        width, height = (_number(tree.findtext(f"size/{k}")) for k in ("width", "height"))
        if width is not None and height is not None and width >= 1 and height >= 1:
            size = (int(width), int(height))
        elif (width, height) != (0, 0):  # VOC tools write 0 x 0 when they did not know the size
            log.note("malformed image size", xml_path)
    objects = []
    for obj in tree.iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = [_number(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        difficult = _number(obj.findtext("difficult") or 0)
        if not name or difficult not in (0, 1) or None in box:
            log.drop_annotations("malformed object", xml_path)
            continue
        x1, y1, x2, y2 = box
        objects.append((name, (x1 - 1.0, y1 - 1.0, x2, y2), bool(difficult)))
    return {"image": str(root / "JPEGImages" / filename), "size": size, "objects": objects}
