"""Input checks shared by the readers: image files, boxes, and the once-per-read problem report.

Every reader sends each problem it meets to a `ProblemLog`, which counts problems by kind, keeps
the first file of each kind as an example and reports them in one logged warning at the end, so
a dataset with a thousand bad rows prints one summary instead of a thousand lines. The counts end
up in `DetectionDataset.problems`.
"""

import concurrent.futures
import dataclasses
import logging

import keras
import numpy as np
from PIL import Image

from keras_yolov7.data.records import DetectionDataset

logger = logging.getLogger("keras_yolov7.data")

# Containers tf.io.decode_image reads. Anything else would fail inside the tf.data pipeline, so it
# is rejected at read time.
DECODABLE_FORMATS = ("JPEG", "PNG", "BMP", "GIF")
# Suffixes treated as images when listing a folder; the non-decodable ones are listed so that they
# are reported ("unsupported image format") instead of silently skipped.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".mpo")
# EXIF orientations 5..8 swap width and height.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
# Boxes that leave the image by at most this many pixels (rounding in label tools) are clipped
# without being reported.
_CLIP_TOLERANCE = 1.0
_PROGRESS_MIN_IMAGES = 1000


class ProblemLog:
    """Counts input problems by kind and reports them once.

    Args:
        source: what is being read (a path), named in the report.
    """

    def __init__(self, source):
        self.source = str(source)
        self.counts = {}
        self.examples = {}

    def add(self, kind, where, count=1):
        """Records `count` problems of `kind` (e.g. "missing image") found in `where` (a path)."""
        if count <= 0:
            return
        self.counts[kind] = self.counts.get(kind, 0) + int(count)
        self.examples.setdefault(kind, str(where))

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

    JPEGs are decoded at 1/8 scale (libjpeg's DCT scaling still reads every entropy-coded
    segment, so truncated or corrupt data is caught at a small fraction of a full decode); other
    formats are decoded fully. This runs once per file when a dataset is read, so the tf.data
    pipeline never meets an undecodable file during training.

    Args:
        path: the image file.

    Returns:
        An `ImageInfo`.

    Raises:
        BadImage: kind "missing image", "unsupported image format" or "corrupt image".
    """
    try:
        with Image.open(path) as image:
            if image.format not in DECODABLE_FORMATS:
                raise BadImage(
                    "unsupported image format",
                    f"{path} is {image.format}; expected one of {', '.join(DECODABLE_FORMATS)}",
                )
            width, height = image.size
            orientation = int(image.getexif().get(0x0112, 1) or 1)
            if image.format == "JPEG":
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except FileNotFoundError as error:
        raise BadImage("missing image", str(path)) from error
    except BadImage:
        raise
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        raise BadImage("corrupt image", f"{path}: {error}") from error
    if orientation not in range(1, 9):
        orientation = 1
    return ImageInfo(width, height, orientation)


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
    log.add("image size differs from annotation file", where)
    return 1, stored[0], stored[1]


def inspect_images(paths):
    """`inspect_image` over many files in a thread pool; a progress bar for large datasets.

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
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for i, result in enumerate(pool.map(one, paths)):
            results.append(result)
            if progbar is not None and (i + 1) % 200 == 0:
                progbar.update(i + 1)
    if progbar is not None:
        progbar.update(len(paths), finalize=True)
    return results


def clean_boxes(boxes, labels, crowd, width, height, num_classes, log, where):
    """Drops or repairs bad boxes, recording each problem in `log`.

    In this order: boxes with a non-finite coordinate are dropped ("non-finite box coordinate"),
    labels outside `0 .. num_classes - 1` are dropped ("class id out of range"), boxes with
    `x_max <= x_min` or `y_max <= y_min` are dropped ("zero-area or negative box"), the rest are
    clipped to the image; a box with nothing left inside is dropped ("box outside image"), one
    that left the image by more than a pixel is kept clipped ("box partly outside image,
    clipped").

    Args:
        boxes: `(N, 4)` xyxy in pixels of the image.
        labels: `(N,)` contiguous class indices.
        crowd: `(N,)` bool.
        width, height: the image size in pixels.
        num_classes: number of classes.
        log: a `ProblemLog`.
        where: the file the boxes came from, for the report.

    Returns:
        `(boxes, labels, crowd)`: float32 `(M, 4)` xyxy pixels, int32 `(M,)`, bool `(M,)`.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    crowd = np.asarray(crowd, bool).reshape(-1)

    def keep(mask, kind):
        nonlocal boxes, labels, crowd
        log.add(kind, where, int(np.sum(~mask)))
        boxes, labels, crowd = boxes[mask], labels[mask], crowd[mask]

    keep(np.isfinite(boxes).all(axis=1), "non-finite box coordinate")
    keep((labels >= 0) & (labels < num_classes), "class id out of range")
    keep((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]), "zero-area or negative box")
    clipped = np.clip(boxes, 0.0, [width, height, width, height])
    beyond = np.abs(clipped - boxes).max(axis=1, initial=0.0) > _CLIP_TOLERANCE
    boxes = clipped
    inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    log.add("box partly outside image, clipped", where, int(np.sum(beyond & inside)))
    keep(inside, "box outside image")
    return boxes.astype(np.float32), labels.astype(np.int32), crowd


def finish(records, class_names, log, category_ids=None):
    """Builds the `DetectionDataset`, reports the problems once, refuses an empty dataset."""
    log.report()
    if not records:
        details = log.summary() or "  (no images listed)"
        raise ValueError(f"no usable image in {log.source}; problems met:\n{details}")
    return DetectionDataset(
        records=records,
        class_names=list(class_names),
        category_ids=None if category_ids is None else list(category_ids),
        problems=dict(log.counts),
    )
