"""One entry point that tells the dataset format from a path (for the CLI)."""

import pathlib

from keras_yolov7.data.coco import read_coco
from keras_yolov7.data.voc import read_voc
from keras_yolov7.data.yolo import read_yolo


def read_dataset(path, split="train", allow_outside_root=False):
    """Reads a detection dataset, telling the format from `path`.

    - a `.yaml` / `.yml` file: YOLO txt (`read_yolo(path, split)`);
    - a `.json` file: COCO JSON (`read_coco(path)`; the file is the split, `split` is unused);
    - a folder with `Annotations/`: Pascal VOC (`read_voc(path, split)`);
    - a folder with exactly one `annotations/instances_<split>*.json`: COCO JSON.

    Args:
        path: file or folder, as above.
        split: "train", "val", ... (YOLO entry, VOC ImageSets list, COCO file name).
        allow_outside_root: read files outside the dataset root too (see each reader); by
            default they are refused.

    Returns:
        A `DetectionDataset`.
    """
    path = pathlib.Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return read_yolo(path, split, allow_outside_root=allow_outside_root)
    if path.suffix.lower() == ".json":
        return read_coco(path, allow_outside_root=allow_outside_root)
    if path.is_dir():
        if (path / "Annotations").is_dir():
            return read_voc(path, split, allow_outside_root=allow_outside_root)
        candidates = sorted((path / "annotations").glob(f"instances_{split}*.json"))
        if len(candidates) == 1:
            return read_coco(candidates[0], allow_outside_root=allow_outside_root)
        if len(candidates) > 1:
            raise ValueError(
                f"{path}/annotations has several files for split '{split}': "
                f"{[c.name for c in candidates]}; pass the JSON file itself"
            )
    if not path.exists():
        raise FileNotFoundError(f"dataset path {path} does not exist")
    raise ValueError(
        f"cannot tell the dataset format of {path}: expected a .yaml/.yml file (YOLO txt), a .json "
        f"file (COCO), a folder with Annotations/ (Pascal VOC) or a folder with "
        f"annotations/instances_{split}*.json (COCO)"
    )
