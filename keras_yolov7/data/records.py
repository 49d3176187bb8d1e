"""The one record format every dataset reader produces."""

import dataclasses

import numpy as np


@dataclasses.dataclass
class ImageRecord:
    """One image and its ground truth.

    Attributes:
        image_path: path of the image file.
        image_id: the dataset's own image id (COCO id; for other formats the record's index).
        width, height: original image size in pixels (after EXIF orientation).
        boxes: `(N, 4)` float32, xyxy in original-image pixels.
        labels: `(N,)` int32 contiguous class indices `0 .. num_classes - 1`.
        crowd: `(N,)` bool; crowd (COCO `iscrowd`) and VOC `difficult` boxes are kept for
            evaluation (where they are ignored, not counted as misses) but excluded from training
            targets.
        orientation: EXIF orientation code (1..8) the pipelines apply when decoding the file so
            that its pixels match `boxes`, `width` and `height`; 1 = the pixels as stored.
        areas: `(N,)` float32 area of each object in pixels, used only by COCO evaluation for
            its small / medium / large ranges: a COCO JSON's own `area` (the segmentation area
            in COCO's files); default (None) the box areas.
    """

    image_path: str
    image_id: int
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    crowd: np.ndarray = None
    orientation: int = 1
    areas: np.ndarray = None

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, np.int32).reshape(-1)
        if self.crowd is None:
            self.crowd = np.zeros(len(self.labels), bool)
        self.crowd = np.asarray(self.crowd, bool).reshape(-1)
        if self.areas is None:
            sides = self.boxes[:, 2:] - self.boxes[:, :2]
            self.areas = sides[:, 0] * sides[:, 1]
        self.areas = np.asarray(self.areas, np.float32).reshape(-1)
        counts = (len(self.boxes), len(self.labels), len(self.crowd), len(self.areas))
        if len(set(counts)) > 1:
            raise ValueError(
                f"{self.image_path}: {counts[0]} boxes, {counts[1]} labels, {counts[2]} crowd "
                f"flags and {counts[3]} areas; expected equal counts"
            )


@dataclasses.dataclass
class DetectionDataset:
    """A list of records with its class names.

    Attributes:
        records: the usable images (negatives without boxes included).
        class_names: name of each contiguous class index.
        category_ids: for COCO JSON, the original category id of each contiguous class index
            (needed to write detections for pycocotools); `None` for other formats.
        problems: counts of input problems met while reading, by kind (e.g.
            `{"missing image": 2, "box partly outside image, clipped": 1}`), each reported
            once.
        skipped_images: the images the reader left out, counted by kind (e.g.
            `{"missing image": 2}`): they are neither trained on nor evaluated.
        dropped_annotations: the annotations (boxes, label rows, objects) the reader left out,
            counted by kind (e.g. `{"unknown category id": 3}`): they are neither training
            targets nor ground truth. Problems in neither dict lost nothing (a box clipped, an
            image without a label file kept as a negative).
    """

    records: list
    class_names: list
    category_ids: list = None
    problems: dict = dataclasses.field(default_factory=dict)
    skipped_images: dict = dataclasses.field(default_factory=dict)
    dropped_annotations: dict = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self):
        return len(self.class_names)

    def __len__(self):
        return len(self.records)
