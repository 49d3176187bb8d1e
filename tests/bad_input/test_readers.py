"""Bad input to the dataset readers, evaluation and the data front door of the command line.

A corpus of small bad inputs, each generated here (nothing large is committed), each with its
expected outcome: a one-line error holding given fragments, or the images the reader skipped and
the annotations it dropped (counted by kind) with exactly which records survive. For every case:
the files read are left unchanged and nothing is written beside them; no message or logged
warning quotes a file's text (bad files carry the marker SECRET where a parser could echo it);
nothing blocks (FIFOs, /dev/zero) and no code named in a file runs. Every dataset that reads is
evaluated with its own ground truth as detections: mAP 1.0 and recall 1.0 whatever the reader
dropped, and the result reports what it dropped.
"""

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import pathlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from keras_yolov7.cli import main
from keras_yolov7.data import read_coco
from keras_yolov7.data import read_dataset
from keras_yolov7.data import read_voc
from keras_yolov7.evaluation import evaluate_detections

SECRET = "SECRET"
NAMES_YAML = "names: [a, b]\n"
DEFAULT_YAML = "train: images/train\nval: images/train\n" + NAMES_YAML
ROW = "0 0.5 0.5 0.5 0.5\n"  # one box, class a, [8, 6, 24, 18] in a 32 x 24 image
posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and /dev/zero: POSIX")


# Files ------------------------------------------------------------------------------------------


def encoded(image, image_format, **options):
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


JPEG = encoded(Image.new("RGB", (32, 24), (120, 40, 40)), "JPEG")
PNG = encoded(Image.new("RGB", (32, 24), (40, 120, 40)), "PNG")


def png_declaring(width, height):
    """A PNG header declaring `width x height` RGB pixels, with a few bytes of image data."""

    def chunk(kind, data):
        checksum = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + checksum

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def jpeg_declaring(width, height):
    """The small JPEG with its frame header rewritten to declare `width x height` pixels."""
    data = bytearray(JPEG)
    start = data.index(b"\xff\xc0")
    data[start + 5 : start + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_16_bit(width=32, height=24):
    """A 16-bit (5-5-5) BMP: PIL reads it as RGB, TensorFlow's decoder refuses it."""
    pixels = b"\x1f\x00" * width * height  # rows of 64 bytes: no padding needed
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 16, 0, len(pixels), 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54) + header + pixels


def fifo(path):
    os.mkfifo(path)


def link_to_dev_zero(path):
    os.symlink("/dev/zero", path)


def folder(path):
    path.mkdir()


def write(path, content):
    """`content`: bytes, text (UTF-8), or a function making the file (a FIFO, a link)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def yolo(root, images=None, labels=None, data_yaml=DEFAULT_YAML, extra=None):
    """A YOLO txt dataset: `images/train/<name>`, `labels/train/<stem>.txt`, `data.yaml`; by
    default one good image `ok.jpg` with one box. `extra`: `{relative path: content}`."""
    images = {"ok.jpg": JPEG} if images is None else images
    labels = {"ok": ROW} if labels is None else labels
    for name, content in images.items():
        write(root / "images" / "train" / name, content)
    for stem, content in labels.items():
        write(root / "labels" / "train" / f"{stem}.txt", content)
    for name, content in (extra or {}).items():
        write(root / name, content)
    write(root / "data.yaml", data_yaml)
    return root / "data.yaml"


def coco_entry(image_id, file_name, **extra):
    return {"id": image_id, "file_name": file_name, "width": 32, "height": 24, **extra}


def coco_box(annotation_id, image_id, category_id=1, bbox=(2, 2, 10, 10), **extra):
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": list(bbox) if isinstance(bbox, tuple) else bbox,
        "iscrowd": 0,
        "area": 100.0,
        **extra,
    }


def coco(root, images=(), annotations=(), categories=(), files=None, text=None):
    """A COCO dataset, `annotations/instances_train.json` and `train/`: one good image `ok.jpg`
    (id 1) with one box (annotation 1, category 1 "a"), plus the given entries; `text` replaces
    the whole JSON file. `files`: `{name in train/: content}`."""
    for name, content in {"ok.jpg": JPEG, **(files or {})}.items():
        write(root / "train" / name, content)
    data = {
        "images": [coco_entry(1, "ok.jpg"), *images],
        "annotations": [coco_box(1, 1), *annotations],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, *categories],
    }
    path = root / "annotations" / "instances_train.json"
    write(path, json.dumps(data) if text is None else text)
    return path


VOC_SIZE = "<width>32</width><height>24</height>"


def voc_xml(filename="ok.jpg", objects=(("dog", (3, 3, 12, 12), "0"),), size=VOC_SIZE, prolog=""):
    """A VOC annotation; `objects`: `(name, (xmin, ymin, xmax, ymax), difficult)` as text."""
    parts = [prolog, f"<annotation><filename>{filename}</filename><size>{size}</size>"]
    for name, (x1, y1, x2, y2), difficult in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
            f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
            "</bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def voc(root, xmls=None, images=None, ids=None, extra=None):
    """A Pascal VOC dataset: by default id `ok` (ok.jpg, one dog) plus the given XML files
    (`{id: text or bytes}`), images (`{name: content}`) and split list (`ids`)."""
    xmls = {"ok": voc_xml(), **(xmls or {})}
    for image_id, content in xmls.items():
        write(root / "Annotations" / f"{image_id}.xml", content)
    for name, content in {"ok.jpg": JPEG, **(images or {})}.items():
        write(root / "JPEGImages" / name, content)
    split = "\n".join(ids if ids is not None else xmls) + "\n"
    write(root / "ImageSets" / "Main" / "train.txt", split)
    for name, content in (extra or {}).items():
        write(root / name, content)
    return root


# The corpus -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """One bad input and what it must give.

    Attributes:
        name: the test id.
        build: `build(root) -> path` writes the dataset under `root` (anything outside it under
            `root.parent`) and returns what `read_dataset` is given.
        error: fragments of the expected ValueError / FileNotFoundError message; None when the
            read succeeds.
        records: `{image file name: number of boxes}` of the records that survive.
        skipped, dropped, notes: the expected `skipped_images`, `dropped_annotations` and the
            other problems (nothing lost), by kind.
        split, allow_outside_root: passed to `read_dataset`.
        marks: pytest marks (skips where the platform lacks FIFOs).
    """

    name: str
    build: object
    error: tuple = None
    records: dict = None
    skipped: dict = dataclasses.field(default_factory=dict)
    dropped: dict = dataclasses.field(default_factory=dict)
    notes: dict = dataclasses.field(default_factory=dict)
    split: str = "train"
    allow_outside_root: bool = False
    marks: tuple = ()


def laughs(levels=25):
    """A YAML with aliases whose text, once expanded, would be 9**levels items long."""
    lines = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + f"\ntrain: images/train\nnames: [*l{levels - 1}]\n"


def xml_laughs():
    entities = ['<!ENTITY e0 "SECRET">'] + [
        f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10)
    ]
    return f"<?xml version='1.0'?><!DOCTYPE a [{''.join(entities)}]>" + voc_xml(
        objects=(("&e9;", (3, 3, 12, 12), "0"),)
    )


def yaml_making_folder(root):
    target = root.parent / "pwned"
    return yolo(
        root,
        data_yaml=f"train: images/train\nnames: !!python/object/apply:os.mkdir ['{target}']\n",
    )


YAML_CASES = [
    Case("yaml top level is a list", lambda r: yolo(r, data_yaml="- a\n- b\n"),
         error=("data.yaml: the top level is a list of 2 items; expected a mapping",)),
    Case("yaml top level is a string", lambda r: yolo(r, data_yaml="just words\n"),
         error=("the top level is 'just words'; expected a mapping",)),
    Case("yaml top level is a number", lambda r: yolo(r, data_yaml="42\n"),
         error=("the top level is 42",)),
    Case("yaml syntax error", lambda r: yolo(r, data_yaml=f"names: [a, b\ntrain: {SECRET}: x\n"),
         error=("data.yaml is not valid YAML at line 2, column",)),
    Case("yaml python object tag runs nothing", yaml_making_folder,
         error=("is not valid YAML at line 2", "could not determine a constructor for the tag")),
    Case("yaml python name tag", lambda r: yolo(r, data_yaml="names: !!python/name:os.system\n"),
         error=("is not valid YAML at line 1, column 8", "python/name:os.system")),
    Case("yaml not utf-8", lambda r: yolo(r, data_yaml=DEFAULT_YAML.encode() + b"# \xff\xfe\n"),
         error=("data.yaml is not UTF-8 text (invalid byte at offset",)),
    Case("yaml several documents", lambda r: yolo(r, data_yaml=DEFAULT_YAML + "---\nnames: [c]\n"),
         error=("is not valid YAML at line 4, column 1: but found another document",)),
    Case("yaml nested too deeply", lambda r: yolo(r, data_yaml="names: " + "[" * 1100 + "]" * 1100),
         error=("data.yaml is not valid YAML: nested too deeply",)),
    Case("yaml alias bomb in names", lambda r: yolo(r, data_yaml=laughs()),
         error=("class name 0 is a list of 9 items; expected a non-empty string",)),
    Case("yaml without names", lambda r: yolo(r, data_yaml="train: images/train\n"),
         error=("'names' is None; expected a non-empty list or dict",)),
    Case("yaml empty", lambda r: yolo(r, data_yaml=""), error=("'names' is None",)),
    Case("yaml names key not an index", lambda r: yolo(r, data_yaml="train: x\nnames: {a: cat}\n"),
         error=("'names' has the key 'a'; expected class indices",)),
    Case("yaml names keys with a gap",
         lambda r: yolo(r, data_yaml="train: x\nnames: {0: cat, 2: dog}\n"),
         error=("'names' keys are [0, 2]; expected 0..1",)),
    Case("yaml nc not a number", lambda r: yolo(r, data_yaml=DEFAULT_YAML + "nc: many\n"),
         error=("'nc' is 'many'; expected a whole number",)),
    Case("yaml nc disagrees", lambda r: yolo(r, data_yaml=DEFAULT_YAML + "nc: 3\n"),
         error=("nc is 3 but 'names' has 2 entries",)),
    Case("yaml split missing", lambda r: yolo(r), split="test",
         error=("has no 'test' entry; it lists the splits ['train', 'val']",)),
    Case("yaml split is a mapping", lambda r: yolo(r, data_yaml=NAMES_YAML + "train: {a: 1}\n"),
         error=("'train' holds a dict of 1 items; expected a folder or a .txt list",)),
    Case("yaml split not found", lambda r: yolo(r, data_yaml=NAMES_YAML + "train: nowhere\n"),
         error=("split 'train' entry 'nowhere' resolves to", "neither a folder of images")),
    Case("yaml path not a string", lambda r: yolo(r, data_yaml=DEFAULT_YAML + "path: [a]\n"),
         error=("'path' is a list of 1 items; expected a folder",)),
    Case("yaml path leads outside",
         lambda r: yolo(r, data_yaml=DEFAULT_YAML + "path: ../elsewhere\n",
                        extra={"../elsewhere/images/train/x.jpg": JPEG}),
         error=("data.yaml: 'path' leads to", "/elsewhere, outside the dataset root",
                "--allow-outside-root")),
    Case("yaml path absolute", lambda r: yolo(r, data_yaml=DEFAULT_YAML + "path: /etc\n"),
         error=("'path' leads to /etc, outside the dataset root",)),
    Case("yaml split leads outside", lambda r: yolo(r, data_yaml=NAMES_YAML + "train: ../../\n"),
         error=("data.yaml: 'train' entry leads to", "outside the dataset root")),
    Case("yaml is a folder", lambda r: yolo(r, data_yaml=folder),
         error=("data.yaml is not a regular file",)),
    Case("yaml list file not utf-8",
         lambda r: yolo(r, data_yaml=NAMES_YAML + "train: list.txt\n",
                        extra={"list.txt": b"images/train/ok.jpg\n\xff\n"}),
         error=("list.txt is not UTF-8 text",)),
    Case("yaml with byte-order mark", lambda r: yolo(r, data_yaml="\ufeff" + DEFAULT_YAML),
         records={"ok.jpg": 1}),
]  # fmt: skip


def labels_with(**labels):
    return lambda r: yolo(r, images={"ok.jpg": JPEG, "bad.jpg": JPEG}, labels={"ok": ROW, **labels})


LABEL_CASES = [
    Case("label file with byte-order mark keeps its first row",
         labels_with(bad="\ufeff0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.2 0.2\n"),
         records={"ok.jpg": 1, "bad.jpg": 2}),
    Case("label file not utf-8", labels_with(bad=b"0 0.5 0.5 0.2 0.2\n\xff" + SECRET.encode()),
         records={"ok.jpg": 1}, skipped={"label file not UTF-8 text": 1}),
    Case("label path is a folder", labels_with(bad=folder),
         records={"ok.jpg": 1}, skipped={"label file not a regular file": 1}),
    Case("label file is a FIFO", labels_with(bad=fifo), marks=(posix_only,),
         records={"ok.jpg": 1}, skipped={"label file not a regular file": 1}),
    Case("label file links to /dev/zero", labels_with(bad=link_to_dev_zero), marks=(posix_only,),
         records={"ok.jpg": 1}, skipped={"label file not a regular file": 1}),
    Case("label rows malformed",
         labels_with(bad=f"{SECRET} 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n0 0.5 0.5 x 0.2\n0.5 0.5 0.5 "
                         "0.2 0.2\n0 0.1 0.1 0.3 0.1 0.3\n" + ROW),
         records={"ok.jpg": 1, "bad.jpg": 1}, dropped={"malformed label row": 5}),
    Case("label class ids huge or negative",
         labels_with(bad="1e20 0.5 0.5 0.2 0.2\n99999999999999999999999 0.5 0.5 0.2 0.2\n"
                         "-1 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n" + ROW),
         records={"ok.jpg": 1, "bad.jpg": 1}, dropped={"class id out of range": 4}),
    Case("label class id not finite", labels_with(bad="inf 0.5 0.5 0.2 0.2\nnan 0.5 0.5 0.2 0.2\n"),
         records={"ok.jpg": 1, "bad.jpg": 0}, dropped={"malformed label row": 2}),
    Case("label coordinates not finite",
         labels_with(bad="0 inf 0.5 0.2 0.2\n0 0.5 nan 0.2 0.2\n0 0.5 0.5 1e400 0.2\n"),
         records={"ok.jpg": 1, "bad.jpg": 0}, dropped={"non-finite box coordinate": 3}),
    Case("label box huge", labels_with(bad="0 0.5 0.5 1e30 1e30\n0 5 5 0.1 0.1\n"),
         records={"ok.jpg": 1, "bad.jpg": 1}, dropped={"box outside image": 1},
         notes={"box partly outside image, clipped": 1}),
    Case("label rows with tabs and CRLF", labels_with(bad="0\t0.5\t0.5\t0.2\t0.2\r\n\r\n"),
         records={"ok.jpg": 1, "bad.jpg": 1}),
    Case("label row with a NUL byte", labels_with(bad="0 0.5\x00 0.5 0.2 0.2\n"),
         records={"ok.jpg": 1, "bad.jpg": 0}, dropped={"malformed label row": 1}),
    Case("label file blank", labels_with(bad=" \n\t\n"),
         records={"ok.jpg": 1, "bad.jpg": 0}, notes={"empty label file": 1}),
    Case("label rows duplicated", labels_with(bad=ROW * 3),
         records={"ok.jpg": 1, "bad.jpg": 1}, dropped={"duplicate label row": 2}),
]  # fmt: skip


def images_with(labels=None, **images):
    """`ok.jpg` plus `images` (keyword: file name with "_" for "."), each with a one-box label."""
    files = {"ok.jpg": JPEG}
    files.update({name.replace("_", "."): content for name, content in images.items()})
    return lambda r: yolo(
        r,
        images=files,
        labels=labels or {pathlib.Path(name).stem: ROW for name in files},
    )


IMAGE_CASES = [
    Case("image zero bytes", images_with(empty_jpg=b""),
         records={"ok.jpg": 1}, skipped={"corrupt image": 1}),
    Case("image is text", images_with(text_jpg=f"{SECRET} not an image".encode()),
         records={"ok.jpg": 1}, skipped={"corrupt image": 1}),
    Case("image truncated jpeg", images_with(cut_jpg=JPEG[: len(JPEG) // 2]),
         records={"ok.jpg": 1}, skipped={"corrupt image": 1}),
    Case("image truncated png", images_with(cut_png=PNG[: len(PNG) - 30]),
         records={"ok.jpg": 1}, skipped={"corrupt image": 1}),
    Case("image png declaring 10^10 pixels", images_with(huge_png=png_declaring(100000, 100000)),
         records={"ok.jpg": 1}, skipped={"image too large": 1}),
    Case("image png declaring 10^8 pixels", images_with(big_png=png_declaring(10000, 10000)),
         records={"ok.jpg": 1}, skipped={"image too large": 1}),
    Case("image jpeg declaring 65000 x 65000", images_with(huge_jpg=jpeg_declaring(65000, 65000)),
         records={"ok.jpg": 1}, skipped={"image too large": 1}),
    Case("image 1-bit bmp tensorflow cannot decode",
         images_with(mono_bmp=encoded(Image.new("1", (32, 24)), "BMP")),
         records={"ok.jpg": 1}, skipped={"unsupported image format": 1}),
    Case("image 16-bit bmp tensorflow cannot decode", images_with(deep_bmp=bmp_16_bit()),
         records={"ok.jpg": 1}, skipped={"unsupported image format": 1}),
    Case("image palette bmp tensorflow would read as gray",
         images_with(palette_bmp=encoded(Image.new("RGB", (32, 24), (200, 10, 10)).quantize(8),
                                         "BMP"),
                     gray_bmp=encoded(Image.new("L", (32, 24), 90), "BMP")),
         records={"ok.jpg": 1, "gray.bmp": 1}, skipped={"unsupported image format": 1}),
    Case("image tiff", images_with(scan_tif=encoded(Image.new("RGB", (32, 24)), "TIFF")),
         records={"ok.jpg": 1}, skipped={"unsupported image format": 1}),
    Case("image png named jpg", images_with(renamed_jpg=PNG),
         records={"ok.jpg": 1, "renamed.jpg": 1}),
    Case("image 16-bit grayscale png",
         images_with(deep_png=encoded(Image.new("I;16", (32, 24), 5000), "PNG")),
         records={"ok.jpg": 1, "deep.png": 1}),
    Case("image path is a folder", images_with(dir_jpg=folder),
         records={"ok.jpg": 1}, skipped={"image path not a regular file": 1}),
    Case("image is a FIFO", images_with(pipe_jpg=fifo), marks=(posix_only,),
         records={"ok.jpg": 1}, skipped={"image path not a regular file": 1}),
    Case("image links to /dev/zero", images_with(zero_jpg=link_to_dev_zero), marks=(posix_only,),
         records={"ok.jpg": 1}, skipped={"image path not a regular file": 1}),
    Case("no usable image", lambda r: yolo(r, images={"bad.jpg": b""}, labels={"bad": ROW}),
         error=("no usable image in", "corrupt image: 1")),
]  # fmt: skip


def listed(lines, outside=None):
    """A split given as list.txt (`lines`); `outside`: files written beside the dataset."""

    def build(root):
        extra = {"list.txt": "\n".join(lines) + "\n"}
        for name, content in (outside or {}).items():
            write(root.parent / name, content)
        return yolo(root, data_yaml=NAMES_YAML + "train: list.txt\n", extra=extra)

    return build


def coco_escaping(root):
    write(root.parent / "outside.jpg", JPEG)
    return coco(root, images=[coco_entry(2, "../../outside.jpg")], annotations=[coco_box(2, 2)])


PATH_CASES = [
    Case("yolo list escapes the root",
         listed(["images/train/ok.jpg", "../outside/images/x.jpg", "/etc/hostname"],
                outside={"outside/images/x.jpg": JPEG, "outside/labels/x.txt": ROW}),
         records={"ok.jpg": 1}, skipped={"path outside dataset root": 2}),
    Case("yolo list escapes the root, allowed",
         listed(["images/train/ok.jpg", "../outside/images/x.jpg"],
                outside={"outside/images/x.jpg": JPEG, "outside/labels/x.txt": ROW}),
         allow_outside_root=True, records={"ok.jpg": 1, "x.jpg": 1}),
    Case("yolo list names an image twice",
         listed(["images/train/ok.jpg", "./images/train/ok.jpg", "images/../images/train/ok.jpg"]),
         records={"ok.jpg": 1}, skipped={"duplicate image": 2}),
    Case("yolo list line with a NUL byte", listed(["images/train/ok.jpg", "images/a\x00b.jpg"]),
         records={"ok.jpg": 1}, skipped={"missing image": 1}),
    Case("coco file_name escapes the root", coco_escaping,
         records={"ok.jpg": 1}, skipped={"path outside dataset root": 1},
         dropped={"annotation of a skipped image": 1}),
    Case("coco file_name absolute",
         lambda r: coco(r, images=[coco_entry(2, "/etc/hostname")]),
         records={"ok.jpg": 1}, skipped={"path outside dataset root": 1}),
    Case("voc filename escapes the root",
         lambda r: voc(r, xmls={"out": voc_xml("../../outside.jpg")},
                       extra={"../outside.jpg": JPEG}),
         records={"ok.jpg": 1}, skipped={"path outside dataset root": 1},
         dropped={"annotation of a skipped image": 1}),
    Case("voc filename absolute", lambda r: voc(r, xmls={"abs": voc_xml("/etc/passwd")}),
         records={"ok.jpg": 1}, skipped={"path outside dataset root": 1},
         dropped={"annotation of a skipped image": 1}),
    Case("voc split id escapes the root",
         lambda r: voc(r, ids=["ok", "../../elsewhere"], extra={"../elsewhere.xml": voc_xml()}),
         records={"ok.jpg": 1}, skipped={"path outside dataset root": 1}),
]  # fmt: skip


def coco_with_bom(root):
    path = coco(root)
    path.write_text("\ufeff" + path.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def coco_with(**entries):
    return lambda r: coco(r, **entries)


def coco_text(text):
    return lambda r: coco(r, text=text)


COCO_CASES = [
    Case("coco top level is a number", coco_text("42"),
         error=("instances_train.json: the top level is 42; expected a COCO instances object",)),
    Case("coco top level is a list", coco_text("[]"),
         error=("the top level is a list of 0 items",)),
    Case("coco annotations null",
         coco_text(json.dumps({"images": [], "annotations": None, "categories": []})),
         error=("'annotations' is None; expected a list",)),
    Case("coco images a mapping",
         coco_text(json.dumps({"images": {}, "annotations": [], "categories": []})),
         error=("'images' is a dict of 0 items; expected a list",)),
    Case("coco without categories", coco_text(json.dumps({"images": [], "annotations": []})),
         error=("has no ['categories'] key(s)",)),
    Case("coco not json", coco_text('{"images": [' + SECRET),
         error=("instances_train.json is not valid JSON: Expecting value at line 1, column 13",)),
    Case("coco not utf-8", lambda r: coco(r, text=b'{"images": [], \xff}'),
         error=("instances_train.json is not UTF-8 text (invalid byte at offset 15)",)),
    Case("coco nested too deeply", coco_text("[" * 100000 + "]" * 100000),
         error=("is not valid JSON: nested too deeply",)),
    Case("coco integer of 5000 digits", coco_text('{"images": ' + "1" * 5000 + "}"),
         error=("is not valid JSON: Exceeds the limit",)),
    Case("coco json is a folder", lambda r: coco(r, text=folder),
         error=("instances_train.json is not a regular file",)),
    Case("coco with byte-order mark", coco_with_bom, records={"ok.jpg": 1}),
    Case("coco category without id",
         coco_with(categories=[{"name": "c"}, {"id": "3", "name": "d"}, {"id": 4}, 7],
                   annotations=[coco_box(2, 1, category_id="3")]),
         records={"ok.jpg": 1}, notes={"malformed category": 4},
         dropped={"unknown category id": 1}),
    Case("coco duplicate category id", coco_with(categories=[{"id": 1, "name": "again"}]),
         records={"ok.jpg": 1}, notes={"duplicate category id": 1}),
    Case("coco image without file_name or id",
         coco_with(images=[{"id": 2, "width": 32, "height": 24}, {"file_name": "ok.jpg"},
                           {"id": "3", "file_name": "ok.jpg"}, {"id": 4, "file_name": ""}, None],
                   annotations=[coco_box(2, 2)]),
         records={"ok.jpg": 1}, skipped={"malformed image entry": 5},
         dropped={"annotation for unknown image id": 1}),
    Case("coco duplicate image id", coco_with(images=[coco_entry(1, "other.jpg")]),
         records={"ok.jpg": 1}, skipped={"duplicate image id": 1}),
    Case("coco image size not numbers",
         coco_with(images=[coco_entry(2, "b.jpg", width="wide"),
                           coco_entry(3, "c.jpg", height=1e400)],
                   files={"b.jpg": JPEG, "c.jpg": JPEG}),
         records={"ok.jpg": 1, "b.jpg": 0, "c.jpg": 0}, notes={"malformed image size": 2}),
    Case("coco bbox given as strings",
         coco_with(annotations=[coco_box(2, 1, bbox="1,2,3,4"), coco_box(3, 1, bbox="1234"),
                                coco_box(4, 1, bbox=["1", "2", "3", "4"])]),
         records={"ok.jpg": 1}, dropped={"malformed bbox": 3}),
    Case("coco bbox wrong length or type",
         coco_with(annotations=[coco_box(2, 1, bbox=[1, 2, 3]),
                                coco_box(3, 1, bbox=[1, 2, 3, 4, 5]),
                                coco_box(4, 1, bbox=[True, 1, 5, 5]), coco_box(5, 1, bbox=None),
                                coco_box(6, 1, bbox={"x": 1})]),
         records={"ok.jpg": 1}, dropped={"malformed bbox": 5}),
    Case("coco bbox not finite",
         coco_text('{"images": [{"id": 1, "file_name": "ok.jpg"}], "categories": [{"id": 1, '
                   '"name": "a"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, '
                   '"bbox": [NaN, 1, 5, 5]}, {"id": 2, "image_id": 1, "category_id": 1, '
                   '"bbox": [1, 1, Infinity, 5]}, {"id": 3, "image_id": 1, "category_id": 1, '
                   '"bbox": [2, 2, 10, 10]}]}'),
         records={"ok.jpg": 1}, dropped={"non-finite box coordinate": 2}),
    Case("coco bbox negative, zero, outside",
         coco_with(annotations=[coco_box(2, 1, bbox=(5, 5, -3, 4)),
                                coco_box(3, 1, bbox=(5, 5, 0, 4)),
                                coco_box(4, 1, bbox=(100, 100, 5, 5)),
                                coco_box(5, 1, bbox=(20, 10, 50, 50))]),
         records={"ok.jpg": 2}, dropped={"zero-area or negative box": 2, "box outside image": 1},
         notes={"box partly outside image, clipped": 1}),
    Case("coco annotations not objects",
         coco_with(annotations=[5, "x", [1, 2], None]),
         records={"ok.jpg": 1}, dropped={"malformed annotation": 4}),
    Case("coco annotation ids of the wrong type",
         coco_with(annotations=[coco_box(2, [1]), coco_box(3, "1"), coco_box(4, 1, category_id=[1]),
                                coco_box(5, 1, category_id=9), coco_box(6, 1.0)]),
         records={"ok.jpg": 1},
         dropped={"annotation for unknown image id": 3, "unknown category id": 2}),
    Case("coco iscrowd not 0 or 1",
         coco_with(annotations=[coco_box(2, 1, iscrowd="yes"), coco_box(3, 1, iscrowd=2),
                                coco_box(4, 1, iscrowd=1)]),
         records={"ok.jpg": 2}, dropped={"malformed iscrowd": 2}),
    Case("coco area missing or bad",
         coco_with(annotations=[coco_box(2, 1, bbox=(12, 12, 8, 8), area="big"),
                                coco_box(3, 1, bbox=(1, 12, 8, 8), area=None)]),
         records={"ok.jpg": 3}),
    Case("coco image file missing",
         coco_with(images=[coco_entry(2, "gone.jpg")],
                   annotations=[coco_box(2, 2), coco_box(3, 2)]),
         records={"ok.jpg": 1}, skipped={"missing image": 1},
         dropped={"annotation of a skipped image": 2}),
]  # fmt: skip


def voc_with(**parts):
    return lambda r: voc(r, **parts)


VOC_CASES = [
    Case("voc width inf", voc_with(xmls={"w": voc_xml("w.jpg", size="<width>inf</width><height>24"
                                                      "</height>")}, images={"w.jpg": JPEG}),
         records={"ok.jpg": 1, "w.jpg": 1}, notes={"malformed image size": 1}),
    Case("voc size nan and negative",
         voc_with(xmls={"n": voc_xml("n.jpg", size="<width>nan</width><height>-4</height>")},
                  images={"n.jpg": JPEG}),
         records={"ok.jpg": 1, "n.jpg": 1}, notes={"malformed image size": 1}),
    Case("voc size disagrees with the image",
         voc_with(xmls={"s": voc_xml("s.jpg", size="<width>1e30</width><height>24</height>")},
                  images={"s.jpg": JPEG}),
         records={"ok.jpg": 1, "s.jpg": 1}, notes={"image size differs from annotation file": 1}),
    Case("voc object fields malformed",
         voc_with(xmls={"m": voc_xml("m.jpg", objects=[("dog", (1, 1, 5, 5), "maybe"),
                                                       ("dog", ("nan", 1, 5, 5), "0"),
                                                       ("dog", ("1e400", 1, 5, 5), "0"),
                                                       ("", (1, 1, 5, 5), "0"),
                                                       ("dog", (2, 2, 9, 9), "0")])},
                  images={"m.jpg": JPEG}),
         records={"ok.jpg": 1, "m.jpg": 1}, dropped={"malformed object": 4}),
    Case("voc not xml", voc_with(xmls={"t": f"{SECRET} plain text"}),
         records={"ok.jpg": 1}, skipped={"malformed annotation file": 1}),
    Case("voc external entity never fetched",
         voc_with(xmls={"x": voc_xml(prolog='<?xml version="1.0"?><!DOCTYPE a [<!ENTITY s SYSTEM '
                                            '"file:///etc/hostname">]>',
                                     objects=[("&s;", (1, 1, 5, 5), "0")])}),
         records={"ok.jpg": 1}, skipped={"malformed annotation file": 1}),
    Case("voc entity expansion bomb", voc_with(xmls={"b": xml_laughs()}),
         records={"ok.jpg": 1}, skipped={"malformed annotation file": 1}),
    Case("voc xml not utf-8",
         voc_with(xmls={"u": voc_xml("u.jpg").encode().replace(b"u.jpg", b"\xff.jpg")}),
         records={"ok.jpg": 1}, skipped={"malformed annotation file": 1}),
    Case("voc annotation missing or a folder",
         voc_with(ids=["ok", "gone", "dir"], extra={"Annotations/dir.xml": folder}),
         records={"ok.jpg": 1},
         skipped={"missing annotation file": 1, "annotation path not a regular file": 1}),
    Case("voc image missing", voc_with(xmls={"g": voc_xml("gone.jpg")}),
         records={"ok.jpg": 1}, skipped={"missing image": 1},
         dropped={"annotation of a skipped image": 1}),
    Case("voc split list not utf-8",
         voc_with(extra={"ImageSets/Main/train.txt": b"ok\n\xff\xfe\n"}),
         error=("train.txt is not UTF-8 text",)),
    Case("voc split list names an id twice", voc_with(ids=["ok", "ok"]),
         records={"ok.jpg": 1}, skipped={"duplicate image id": 1}),
]  # fmt: skip

FORMAT_CASES = [
    Case("dataset path missing", lambda r: r / "nothing.yaml", error=("nothing.yaml",)),
    Case("dataset folder of unknown layout", lambda r: write(r, folder) or r,
         error=("cannot tell the dataset format of",)),
]  # fmt: skip

CORPUS = YAML_CASES + LABEL_CASES + IMAGE_CASES + PATH_CASES + COCO_CASES + VOC_CASES + FORMAT_CASES


def test_the_corpus_is_large_and_its_names_distinct():
    assert len(CORPUS) >= 60
    assert len({case.name for case in CORPUS}) == len(CORPUS)


# Running a case ---------------------------------------------------------------------------------


def snapshot(folder):
    """`{relative path: (kind, size, sha1)}` of everything under `folder` (links not followed)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_symlink():
            found[relative] = ("link", os.readlink(path))
        elif path.is_fifo():
            found[relative] = ("fifo",)
        elif path.is_dir():
            found[relative] = ("folder",)
        else:
            data = path.read_bytes()
            found[relative] = ("file", len(data), hashlib.sha1(data).hexdigest())
    return found


def perfect_detections(dataset):
    return [
        {
            "image_id": r.image_id,
            "boxes": r.boxes[~r.crowd],
            "scores": np.ones(int((~r.crowd).sum())),
            "labels": r.labels[~r.crowd],
        }
        for r in dataset.records
    ]


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name, marks=c.marks) for c in CORPUS]
)
def test_bad_input(case, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="keras_yolov7.data")
    target = case.build(tmp_path / "dataset")
    before = snapshot(tmp_path)

    if case.error is not None:
        with pytest.raises((ValueError, FileNotFoundError)) as raised:
            read_dataset(target, case.split, allow_outside_root=case.allow_outside_root)
        message = str(raised.value)
        for fragment in case.error:
            assert fragment in message, (fragment, message)
        assert "Traceback" not in message
        if case.name != "no usable image":  # that one lists the problems, one per line
            assert "\n" not in message, message
        assert not caplog.records  # the error is the whole report
    else:
        dataset = read_dataset(target, case.split, allow_outside_root=case.allow_outside_root)
        survivors = {pathlib.Path(r.image_path).name: len(r.labels) for r in dataset.records}
        assert survivors == case.records
        assert dataset.skipped_images == case.skipped
        assert dataset.dropped_annotations == case.dropped
        assert dataset.problems == {**case.skipped, **case.dropped, **case.notes}
        if any(len(r.labels) for r in dataset.records):
            result = evaluate_detections(dataset, perfect_detections(dataset))
            assert result["mAP"] == pytest.approx(1.0) and result["recall"] == pytest.approx(1.0)
            assert result["dropped_annotations"] == case.dropped
            assert result["skipped_images"] == case.skipped
        message = ""

    logged = " ".join(record.getMessage() for record in caplog.records)
    assert SECRET not in message and SECRET not in logged
    assert snapshot(tmp_path) == before  # nothing written, changed or removed
    assert not (tmp_path / "pwned").exists()  # no code named in a file ran


def test_explicit_image_dir_is_the_coco_root(tmp_path):
    """With --image-dir the root is that folder: a file_name leaving it is refused, unless
    allowed."""
    path = coco(tmp_path / "set", images=[coco_entry(2, "../elsewhere/x.jpg")])
    write(tmp_path / "set" / "elsewhere" / "x.jpg", JPEG)
    dataset = read_coco(path, image_dir=tmp_path / "set" / "train")
    assert dataset.skipped_images == {"path outside dataset root": 1}
    allowed = read_coco(path, image_dir=tmp_path / "set" / "train", allow_outside_root=True)
    assert sorted(pathlib.Path(r.image_path).name for r in allowed.records) == ["ok.jpg", "x.jpg"]


def test_voc_class_names_given_drop_unknown_objects(tmp_path):
    root = voc(tmp_path / "voc", xmls={"c": voc_xml("c.jpg", objects=[("cat", (1, 1, 9, 9), "0")])},
               images={"c.jpg": JPEG})  # fmt: skip
    dataset = read_voc(root, "train", class_names=["dog"])
    assert dataset.dropped_annotations == {"unknown class name": 1}
    assert {pathlib.Path(r.image_path).name: len(r.labels) for r in dataset.records} == {
        "ok.jpg": 1,
        "c.jpg": 0,
    }


# The command line -------------------------------------------------------------------------------


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(result, command, *fragments):
    code, out, err = result
    assert code == 2, result
    # Warnings (a "warning:" line and its indented details) may come first.
    lines = [line for line in err.strip().splitlines() if not line.startswith(("warning: ", " "))]
    assert len(lines) == 1 and lines[0].startswith(f"keras-yolov7 {command}: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in out + err and SECRET not in out + err


CLI_CASES = {
    "yaml top level is a list": ("the top level is a list",),
    "yaml syntax error": ("is not valid YAML at line 2",),
    "yaml python object tag runs nothing": ("could not determine a constructor",),
    "yaml path leads outside": ("outside the dataset root", "--allow-outside-root"),
    "coco annotations null": ("'annotations' is None; expected a list",),
    "coco not json": ("is not valid JSON",),
    "no usable image": ("no usable image in", "corrupt image: 1"),
    "voc split list not utf-8": ("train.txt is not UTF-8 text",),
}
BY_NAME = {case.name: case for case in CORPUS}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_train_refuses_bad_data_in_one_line_and_writes_nothing(name, tmp_path):
    case = BY_NAME[name]
    target = case.build(tmp_path / "dataset")
    before = snapshot(tmp_path)
    result = run_cli("train", "--data", target, "--train-split", case.split, "--no-val",
                     "--preset", "yolov7_tiny", "--project", tmp_path / "runs")  # fmt: skip
    assert_one_line_error(result, "train", *CLI_CASES[name])
    assert snapshot(tmp_path) == before  # no run directory either
    assert not (tmp_path / "pwned").exists()


def test_train_prints_the_skips_once_then_refuses_bad_validation_data(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="keras_yolov7.data")
    train = images_with(empty_jpg=b"", labels={"ok": ROW + "7 0.5 0.5 0.1 0.1\n", "empty": ROW})(
        tmp_path / "train"
    )
    val = coco(
        tmp_path / "val", text=json.dumps({"images": 1, "annotations": [], "categories": []})
    )
    before = snapshot(tmp_path)
    result = run_cli("train", "--data", train, "--val-data", val, "--preset", "yolov7_tiny",
                     "--project", tmp_path / "runs")  # fmt: skip
    assert_one_line_error(result, "train", "'images' is 1; expected a list")
    described = [line for line in result[1].splitlines() if line.startswith("train (")]
    assert described == [
        f"train ({train}): 1 images (0 without boxes), 1 boxes, 2 classes; 2 input problems: "
        "1 images skipped, 1 annotations dropped (listed above)"
    ]
    (report,) = [record.getMessage() for record in caplog.records]
    assert "2 input problems" in report
    assert result[2].count("2 input problems") == 1
    assert "corrupt image: 1 (e.g. " in report and "class id out of range: 1 (e.g. " in report
    assert snapshot(tmp_path) == before


def test_allow_outside_root_flag_reaches_the_reader(tmp_path):
    """--allow-outside-root lets `path: ../elsewhere` through: the read then fails on the next
    problem (no 'test' split), proving the flag was passed."""
    target = BY_NAME["yaml path leads outside"].build(tmp_path / "dataset")
    result = run_cli("train", "--data", target, "--train-split", "test", "--no-val",
                     "--allow-outside-root", "--project", tmp_path / "runs")  # fmt: skip
    assert_one_line_error(result, "train", "has no 'test' entry")


@pytest.mark.parametrize("name", ["coco annotations null", "yaml python object tag runs nothing"])
def test_val_refuses_bad_data_in_one_line_and_writes_nothing(name, tmp_path):
    """val reads the dataset before the weights: the data error comes first."""
    target = BY_NAME[name].build(tmp_path / "dataset")
    before = snapshot(tmp_path)
    result = run_cli("val", "--weights", tmp_path / "best.keras", "--data", target,
                     "--split", "train", "--project", tmp_path / "runs")  # fmt: skip
    assert_one_line_error(result, "val", *CLI_CASES[name])
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("lr0: [0.01\n", "hyp.yaml is not valid YAML at line 2, column 1"),
        ("lr0: !!python/object/apply:os.system ['echo SECRET']\n", "could not determine a"),
        ("lr0: *anchor\n", "found undefined alias 'anchor'"),
        ("- lr0\n", "expected a mapping of hyperparameters, got list"),
    ],
)
def test_train_refuses_a_bad_hyperparameter_yaml_in_one_line(text, fragment, tmp_path):
    write(tmp_path / "hyp.yaml", text)
    before = snapshot(tmp_path)
    result = run_cli("train", "--data", "synthetic", "--hyp", tmp_path / "hyp.yaml",
                     "--project", tmp_path / "runs")  # fmt: skip
    assert_one_line_error(result, "train", fragment)
    assert snapshot(tmp_path) == before
