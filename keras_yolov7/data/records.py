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
    """

    image_path: str
    image_id: int
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    crowd: np.ndarray = None
    orientation: int = 1

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, np.int32).reshape(-1)
        if self.crowd is None:
            self.crowd = np.zeros(len(self.labels), bool)
        self.crowd = np.asarray(self.crowd, bool).reshape(-1)
        if not len(self.boxes) == len(self.labels) == len(self.crowd):
            raise ValueError(
                f"{self.image_path}: {len(self.boxes)} boxes, {len(self.labels)} labels and "
                f"{len(self.crowd)} crowd flags; expected equal counts"
            )


@dataclasses.dataclass
class DetectionDataset:
    """A list of records with its class names.

    Attributes:
        records: the usable images (negatives without boxes included).
        class_names: name of each contiguous class index.
        category_ids: for COCO JSON, the original category id of each contiguous class index
            (needed to write detections for pycocotools); `None` for other formats.
        problems: counts of input problems met while reading (e.g. `{"missing image": 2}`),
            each reported once.
    """

    records: list
    class_names: list
    category_ids: list = None
    problems: dict = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self):
        return len(self.class_names)

    def __len__(self):
        return len(self.records)
