"""A picture of a dataset's training samples as the training pipeline makes them."""

import os
import pathlib


def preview(
    data,
    output=None,
    split="train",
    image_dir=None,
    allow_outside_root=False,
    preset="yolov7",
    image_size=None,
    num_images=16,
    seed=0,
    augment=True,
    verbose=1,
):
    """Draws samples of the training pipeline (mosaic, mixup, perspective, HSV, flips of the
    preset's family) with their boxes and class names into a PNG, to check labels and
    augmentations by eye; `augment=False` draws the letterboxed validation images instead.

    Args:
        data: a dataset path or a `DetectionDataset`.
        output: the PNG (default `runs/preview/<dataset>_<split>.png`).
        split, image_dir, allow_outside_root: see `engine.evaluate`.
        preset: whose augmentation settings and network size to use.
        image_size: network size (default: the preset's).
        num_images: samples to draw.
        seed: seed of the augmentations (epoch 0 of a run with this seed).
        augment: draw augmented samples (else the validation letterbox).
        verbose: 1 prints the dataset read.

    Returns:
        `(path of the PNG, number of samples drawn)`.
    """
    from keras_yolov7.data import DetectionDataset
    from keras_yolov7.data import make_train_dataset
    from keras_yolov7.data import make_val_dataset
    from keras_yolov7.data import plot_augmented_samples
    from keras_yolov7.engine import datasets as dataset_sources
    from keras_yolov7.models.configs import ARCHITECTURES

    if preset not in ARCHITECTURES:
        raise ValueError(f"unknown preset {preset!r}; expected one of {list(ARCHITECTURES)}")
    size = image_size or ARCHITECTURES[preset]["input_size"]
    stride = max(ARCHITECTURES[preset]["strides"])
    if size % stride:
        raise ValueError(
            f"image size {size} is not a multiple of {preset}'s largest stride {stride}"
        )
    if isinstance(data, DetectionDataset):
        dataset, stem = data, "dataset"
    else:
        stem = pathlib.Path(data).stem
    output = pathlib.Path(output or f"runs/preview/{stem}_{split}.png")
    if output.suffix.lower() != ".png":
        raise ValueError(f"the output must be a .png file, got {os.fspath(output)!r}")
    if not isinstance(data, DetectionDataset):
        dataset = dataset_sources.read_split(data, split, image_dir, allow_outside_root)
        if verbose:
            print(dataset_sources.describe_dataset(dataset, f"{split} ({os.fspath(data)})"))
    batch = min(num_images, 16)
    if augment:
        samples = make_train_dataset(
            dataset, image_size=size, batch_size=batch, augmentation=preset, seed=seed,
            stride=stride, epochs=1,
        )  # fmt: skip
    else:
        samples = make_val_dataset(dataset, image_size=size, batch_size=batch, stride=stride)
    output.parent.mkdir(parents=True, exist_ok=True)
    drawn = plot_augmented_samples(samples, output, dataset.class_names, num_images=num_images)
    return output, drawn
