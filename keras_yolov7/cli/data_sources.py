"""The --data argument: which files hold a split, read into a `DetectionDataset`."""

import pathlib

from keras_yolov7.cli.errors import CLIError


def read_split(data, split, image_dir=None, allow_outside_root=False):
    """One split of a dataset given on the command line.

    Args:
        data: a data YAML (YOLO txt), a COCO JSON file (the file is the split), a Pascal VOC
            folder or a folder with `annotations/instances_<split>*.json`.
        split: "train", "val", ... (unused for a COCO JSON file).
        image_dir: COCO JSON only: the folder of its images (default: inferred).
        allow_outside_root: --allow-outside-root (see the readers).

    Returns:
        A `DetectionDataset`.
    """
    from keras_yolov7.data import read_coco
    from keras_yolov7.data import read_dataset

    path = pathlib.Path(data)
    if not path.exists():
        raise CLIError(f"dataset {str(data)!r} does not exist")
    if image_dir is not None:
        if path.suffix.lower() != ".json":
            raise CLIError(f"--image-dir is for a COCO JSON file; {data} is not a .json file")
        if not pathlib.Path(image_dir).is_dir():
            raise CLIError(f"image folder {str(image_dir)!r} does not exist")
        return read_coco(path, image_dir, allow_outside_root=allow_outside_root)
    return read_dataset(path, split, allow_outside_root=allow_outside_root)


def validation_source(data, val_data, val_split):
    """Where `train` finds its validation set: `(path, split)`.

    `--val-data` when given; for a COCO JSON training file the file of the same name with
    "train" replaced by "val" (instances_train2017.json -> instances_val2017.json); otherwise the
    `val_split` of the training dataset.
    """
    if val_data is not None:
        return val_data, val_split
    path = pathlib.Path(data)
    if path.suffix.lower() == ".json":
        sibling = path.with_name(path.name.replace("train", "val"))
        if sibling != path and sibling.is_file():
            return sibling, val_split
        raise CLIError(
            f"{data} is a COCO JSON file (one split): give the validation file with --val-data, "
            "or train without validation (--no-val)"
        )
    return data, val_split


def describe(dataset, name):
    """One line about a dataset: images, boxes, classes and, when reading it met problems, how
    many images it skipped and annotations it dropped (the reader's logged warning lists the
    problems by kind with an example file each)."""
    boxes = sum(len(record.labels) for record in dataset.records)
    negatives = sum(len(record.labels) == 0 for record in dataset.records)
    line = (
        f"{name}: {len(dataset)} images ({negatives} without boxes), {boxes} boxes, "
        f"{dataset.num_classes} classes"
    )
    if dataset.problems:
        images = sum(dataset.skipped_images.values())
        annotations = sum(dataset.dropped_annotations.values())
        line += (
            f"; {sum(dataset.problems.values())} input problems: {images} images skipped, "
            f"{annotations} annotations dropped (listed above)"
        )
    return line
