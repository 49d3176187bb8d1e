"""Input checks shared by the readers: text and YAML files, paths, image files, boxes, and the
once-per-read problem report.

Every reader sends each problem it meets to a `ProblemLog`, which counts problems by kind, keeps
the first file of each kind as an example and reports them in one logged warning at the end, so
a dataset with a thousand bad rows prints one summary instead of a thousand lines. The counts end
up in `DetectionDataset.problems`; the images left out and the annotations dropped are counted
apart (`skipped_images`, `dropped_annotations`), so evaluation can say what it did not score.

Messages name the file, the line or entry, the field and what was expected; they never quote
the file's text beyond the field's value (shortened, control characters escaped).
"""

import concurrent.futures
import dataclasses
import logging
import math
import os
import stat
import warnings

import keras
import numpy as np
import tensorflow as tf
import yaml
from PIL import Image

from keras_yolov7.data.records import DetectionDataset

logger = logging.getLogger("keras_yolov7.data")

# Containers tf.io.decode_image reads. Anything else would fail inside the tf.data pipeline, so it
# is rejected at read time.
DECODABLE_FORMATS = ("JPEG", "PNG", "BMP", "GIF")
# PIL modes of the BMPs tf.io.decode_image reads correctly: it fails on 1- and 4-bit files and
# reads an 8-bit palette file's indices as gray levels.
_DECODABLE_BMP_MODES = ("L", "RGB", "RGBA")
# Suffixes treated as images when listing a folder; the non-decodable ones are listed so that they
# are reported ("unsupported image format") instead of silently skipped.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".mpo")
# EXIF orientations 5..8 swap width and height.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
# Boxes that leave the image by at most this many pixels (rounding in label tools) are clipped
# without being reported.
_CLIP_TOLERANCE = 1.0
_PROGRESS_MIN_IMAGES = 1000
# Longest file name or field value quoted in a message.
_MAX_SHOWN_CHARS = 160
OUTSIDE_ROOT = "path outside dataset root"


def shown(text):
    """`text` as it may appear in a message: control characters escaped, at most 160 chars."""
    text = str(text)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    if len(text) > _MAX_SHOWN_CHARS:
        text = text[: _MAX_SHOWN_CHARS - 3] + "..."
    return text


def shown_value(value):
    """A field's value for a message: scalars quoted (shortened), containers by kind and size.

    Containers are never printed: a YAML file can make a small list of aliases whose text is
    exponentially long.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return shown(repr(value))
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


class ProblemLog:
    """Counts input problems by kind and reports them once.

    Args:
        source: what is being read (a path), named in the report.
    """

    def __init__(self, source):
        self.source = str(source)
        self.counts = {}
        self.examples = {}
        self.skipped_images = {}
        self.dropped_annotations = {}

    def note(self, kind, where, count=1):
        """Records `count` problems of `kind` found in `where` (a path) that lose no image and
        no annotation: a box clipped to the image, an image kept as a negative, an unused file."""
        if count <= 0:
            return
        self.counts[kind] = self.counts.get(kind, 0) + int(count)
        self.examples.setdefault(kind, shown(where))

    def skip_image(self, kind, where):
        """Records an image left out of the dataset because of `kind` (e.g. "missing image")."""
        self.note(kind, where)
        self.skipped_images[kind] = self.skipped_images.get(kind, 0) + 1

    def drop_annotations(self, kind, where, count=1):
        """Records `count` annotations (boxes, label rows, objects) left out because of `kind`."""
        if count <= 0:
            return
        self.note(kind, where, count)
        self.dropped_annotations[kind] = self.dropped_annotations.get(kind, 0) + int(count)

    def summary(self):
        """One line per kind: `kind: count (e.g. path)`."""
        return "\n".join(
            f"  {kind}: {count} (e.g. {self.examples[kind]})" for kind, count in self.counts.items()
        )

    def report(self):
        """Logs every recorded problem in one warning; silent when there were none."""
        if self.counts:
            total = sum(self.counts.values())
            logger.warning("%s: %d input problems\n%s", self.source, total, self.summary())


class UnreadableText(ValueError):
    """A text file that cannot be read; `kind` says why ("not a regular file", "not UTF-8
    text")."""

    def __init__(self, path, kind, detail=""):
        super().__init__(f"{shown(path)} is {kind}{detail}")
        self.kind = kind


def read_text(path):
    """The text of a UTF-8 file, without its byte-order mark if it has one.

    Only regular files are read: a folder, a FIFO or a device (`/dev/zero`) named like a data
    file would fail later, block or never end.

    Raises:
        FileNotFoundError: no such file.
        UnreadableText: not a regular file, or not UTF-8.
        OSError: the file cannot be opened (permissions).
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise UnreadableText(path, "not a regular file")
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableText(
            path, "not UTF-8 text", f" (invalid byte at offset {error.start})"
        ) from None


def read_yaml(path):
    """Reads a YAML file with `yaml.safe_load`: plain data only, tags that build Python objects
    (`!!python/object`) are refused.

    Raises:
        ValueError: the file is not UTF-8 or not valid YAML, naming the file, line, column and
            the parser's problem, never the file's text.
        FileNotFoundError: no such file.
    """
    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = shown(error.problem or error.context or type(error).__name__)
        raise ValueError(f"{shown(path)} is not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{shown(path)} is not valid YAML: {type(error).__name__}") from None
    except RecursionError:
        raise ValueError(f"{shown(path)} is not valid YAML: nested too deeply") from None


def is_inside(path, root):
    """Whether `path` lies in the folder `root`, by its written form with `..` resolved, or by
    its real path (symbolic links resolved); links placed inside a dataset are followed."""

    def within(child, parent):
        try:
            return os.path.commonpath([child, parent]) == parent
        except ValueError:  # different drives
            return False

    try:
        if within(os.path.abspath(path), os.path.abspath(root)):
            return True
        return within(os.path.realpath(path), os.path.realpath(root))
    except ValueError:  # a NUL byte in the path
        return False


@dataclasses.dataclass
class ImageInfo:
    """What the read-time check learnt about an image file.

    Attributes:
        stored_width, stored_height: pixel size as stored in the file.
        orientation: EXIF orientation code 1..8 (1 when absent or invalid).
    """

    stored_width: int
    stored_height: int
    orientation: int = 1

    def size(self, apply_orientation):
        """`(width, height)` of the decoded image, with or without the EXIF orientation."""
        if apply_orientation and self.orientation in _TRANSPOSING_ORIENTATIONS:
            return self.stored_height, self.stored_width
        return self.stored_width, self.stored_height


class BadImage(Exception):
    """An image file that cannot be used; `kind` names the problem for the report."""

    def __init__(self, kind, detail=""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def inspect_image(path):
    """Checks that an image file decodes completely and reads its size and EXIF orientation.

    JPEGs are decoded by PIL at 1/8 scale (libjpeg's DCT scaling still reads every entropy-coded
    segment, so truncated or corrupt data is caught at a small fraction of a full decode); PNG,
    BMP and GIF files are decoded by TensorFlow, the decoder the pipelines use (it reads fewer
    BMP variants than PIL: palette BMPs are refused, as TensorFlow would read their colour
    indices as gray levels). Images larger than `PIL.Image.MAX_IMAGE_PIXELS` (89 million pixels
    unless changed) are refused before any pixel is decoded. This runs once per file when a
    dataset is read, so the tf.data pipeline never meets an undecodable file during training.

    Args:
        path: the image file.

    Returns:
        An `ImageInfo`.

    Raises:
        BadImage: kind "missing image", "unreadable image file", "image path not a regular
            file", "unsupported image format", "image too large" or "corrupt image".
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:  # ValueError: a NUL
        raise BadImage("missing image", shown(path)) from error
    except OSError as error:
        raise BadImage("unreadable image file", f"{shown(path)}: {error.strerror}") from error
    if not stat.S_ISREG(mode):
        raise BadImage("image path not a regular file", shown(path))
    try:
        with Image.open(path) as image:
            if image.format not in DECODABLE_FORMATS:
                raise BadImage(
                    "unsupported image format",
                    f"{shown(path)} is {image.format}; expected one of "
                    f"{', '.join(DECODABLE_FORMATS)}",
                )
            if image.format == "BMP" and image.mode not in _DECODABLE_BMP_MODES:
                raise BadImage(
                    "unsupported image format",
                    f"{shown(path)} is a {image.mode}-mode BMP; TensorFlow decodes 8-bit gray, "
                    "24-bit and 32-bit BMPs only (palette colours would be read as gray levels)",
                )
            width, height = image.size
            limit = Image.MAX_IMAGE_PIXELS or math.inf
            if width * height > limit:
                raise BadImage(
                    "image too large",
                    f"{shown(path)} is {width} x {height} pixels; the limit is {limit} "
                    "(PIL.Image.MAX_IMAGE_PIXELS)",
                )
            orientation = int(image.getexif().get(0x0112, 1) or 1)
            image_format = image.format
            if image_format == "JPEG":
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                image.load()
    except BadImage:
        raise
    except Image.DecompressionBombError as error:
        raise BadImage("image too large", f"{shown(path)}: {error}") from error
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        raise BadImage("corrupt image", f"{shown(path)}: {error}") from error
    if image_format != "JPEG":
        _decode_with_tensorflow(path, image_format)
    if orientation not in range(1, 9):
        orientation = 1
    return ImageInfo(width, height, orientation)


def _decode_with_tensorflow(path, image_format):
    """Decodes a PNG / BMP / GIF file as the pipelines do; BadImage when TensorFlow cannot.

    A file PIL reads in full but TensorFlow refuses (a 1-bit BMP) is an unsupported format;
    one neither reads is corrupt.
    """
    try:
        tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return
    except tf.errors.OpError:
        pass
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:
        raise BadImage("corrupt image", f"{shown(path)}: {error}") from None
    raise BadImage(
        "unsupported image format",
        f"{shown(path)} is a {image_format} variant TensorFlow does not decode ({image.mode})",
    )


def choose_orientation(info, annotated_size, log, where):
    """Decides whether boxes drawn for `annotated_size` match the stored or the EXIF-rotated pixels.

    COCO JSON and Pascal VOC XML record the size the annotator saw. COCO's own tools (and most VOC
    tools) read the pixels as stored, ignoring EXIF, so the stored orientation is the default; the
    EXIF orientation is applied only when the annotated size matches the rotated size and not the
    stored one. A size matching neither is reported ("image size differs from annotation file")
    and the stored pixels are used.

    Args:
        info: the file's `ImageInfo`.
        annotated_size: `(width, height)` from the annotation file, or None when it gives none.
        log: a `ProblemLog`.
        where: the image path, for the report.

    Returns:
        `(orientation, width, height)`: the EXIF code the pipelines must apply (1 = none) and the
        decoded image size in pixels.
    """
    stored = info.size(apply_orientation=False)
    rotated = info.size(apply_orientation=True)
    if annotated_size is None or tuple(annotated_size) == stored:
        return 1, stored[0], stored[1]
    if tuple(annotated_size) == rotated:
        return info.orientation, rotated[0], rotated[1]
    log.note("image size differs from annotation file", where)
    return 1, stored[0], stored[1]


def inspect_images(paths):
    """`inspect_image` over many files in a thread pool; a progress bar for large datasets.

    PIL's warning for images above `MAX_IMAGE_PIXELS` is silenced here: `inspect_image` refuses
    them with a clear problem kind instead.

    Returns:
        A list aligned with `paths`: an `ImageInfo`, or the `BadImage` raised for that file.
    """

    def one(path):
        try:
            return inspect_image(path)
        except BadImage as error:
            return error

    results = []
    progbar = keras.utils.Progbar(len(paths)) if len(paths) >= _PROGRESS_MIN_IMAGES else None
    with warnings.catch_warnings(), concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for i, result in enumerate(pool.map(one, paths)):
            results.append(result)
            if progbar is not None and (i + 1) % 200 == 0:
                progbar.update(i + 1)
    if progbar is not None:
        progbar.update(len(paths), finalize=True)
    return results


def clean_boxes(boxes, labels, width, height, num_classes, log, where):
    """Drops or repairs bad boxes, recording each problem in `log`.

    In this order: boxes with a non-finite coordinate are dropped ("non-finite box coordinate"),
    labels outside `0 .. num_classes - 1` are dropped ("class id out of range"), boxes with
    `x_max <= x_min` or `y_max <= y_min` are dropped ("zero-area or negative box"), the rest are
    clipped to the image; a box with nothing left inside is dropped ("box outside image"), one
    that left the image by more than a pixel is kept clipped ("box partly outside image,
    clipped").

    Args:
        boxes: `(N, 4)` xyxy in pixels of the image.
        labels: `(N,)` class indices (any number: a huge or negative id from a text file is
            out of range, not an overflow).
        width, height: the image size in pixels.
        num_classes: number of classes.
        log: a `ProblemLog`.
        where: the file the boxes came from, for the report.

    Returns:
        `(boxes, labels, kept)`: float32 `(M, 4)` xyxy pixels, int32 `(M,)`, and the `(M,)`
        indices of the kept rows in the input (to select other per-box fields).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.float64).reshape(-1)
    kept = np.arange(len(labels))

    def keep(mask, kind):
        nonlocal boxes, labels, kept
        log.drop_annotations(kind, where, int(np.sum(~mask)))
        boxes, labels, kept = boxes[mask], labels[mask], kept[mask]

    keep(np.isfinite(boxes).all(axis=1), "non-finite box coordinate")
    keep((labels >= 0) & (labels < num_classes), "class id out of range")
    keep((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]), "zero-area or negative box")
    clipped = np.clip(boxes, 0.0, [width, height, width, height])
    beyond = np.abs(clipped - boxes).max(axis=1, initial=0.0) > _CLIP_TOLERANCE
    boxes = clipped
    inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    log.note("box partly outside image, clipped", where, int(np.sum(beyond & inside)))
    keep(inside, "box outside image")
    return boxes.astype(np.float32), labels.astype(np.int32), kept


def finish(records, class_names, log, category_ids=None):
    """Builds the `DetectionDataset` and reports the problems once; refuses an empty dataset
    with a ValueError that lists them (instead of the warning)."""
    if not records:
        details = log.summary() or "  (no images listed)"
        raise ValueError(f"no usable image in {log.source}; problems met:\n{details}")
    log.report()
    return DetectionDataset(
        records=records,
        class_names=list(class_names),
        category_ids=None if category_ids is None else list(category_ids),
        problems=dict(log.counts),
        skipped_images=dict(log.skipped_images),
        dropped_annotations=dict(log.dropped_annotations),
    )
