"""A picture of augmented samples with their boxes, to check the augmentations by eye."""

import math

import keras
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from keras_yolov7.visualization import class_palette


def plot_augmented_samples(
    dataset,
    path,
    class_names=None,
    num_images=16,
    columns=4,
    tile_size=320,
    bounding_box_format="xyxy",
):
    """Writes a PNG grid of samples with their boxes and class names.

    Args:
        dataset: a `tf.data.Dataset` of batches `(images, {"boxes", "labels", ...})` as
            `make_train_dataset` or `make_val_dataset` yield: images `(B, S, S, 3)` 0..255, boxes
            `(B, M, 4)` in `bounding_box_format` pixels (or relative for `rel_*` formats), labels
            `(B, M)` padded with -1.
        path: the PNG file to write.
        class_names: names drawn beside the boxes (class indices when None).
        num_images: samples to draw (fewer if the dataset runs out).
        columns: grid columns.
        tile_size: side of each sample in the picture, in pixels.
        bounding_box_format: the format of the dataset's boxes.

    Returns:
        The number of samples drawn.
    """
    tiles = []
    for images, targets in dataset:
        images = np.asarray(images)
        boxes = keras.utils.bounding_boxes.convert_format(
            np.asarray(targets["boxes"], np.float32),
            bounding_box_format,
            "xyxy",
            height=images.shape[1],
            width=images.shape[2],
        )
        boxes = keras.ops.convert_to_numpy(boxes)
        labels = np.asarray(targets["labels"])
        for image, image_boxes, image_labels in zip(images, boxes, labels):
            valid = image_labels >= 0
            tiles.append(
                _draw(image, image_boxes[valid], image_labels[valid], class_names, tile_size)
            )
            if len(tiles) == num_images:
                break
        if len(tiles) == num_images:
            break
    if not tiles:
        raise ValueError("the dataset yielded no images to plot")
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * tile_size, rows * tile_size), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * tile_size, (i // columns) * tile_size))
    sheet.save(path)
    return len(tiles)


def _draw(image, boxes, labels, class_names, tile_size):
    height, width = image.shape[:2]
    scale = tile_size / max(height, width)
    tile = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).resize(
        (round(width * scale), round(height * scale)), Image.BILINEAR
    )
    draw = ImageDraw.Draw(tile)
    font = ImageFont.load_default()
    for box, label in zip(boxes * scale, labels):
        color = class_palette(int(label) + 1)[int(label)]
        draw.rectangle([float(v) for v in box], outline=color, width=2)
        name = (
            class_names[label]
            if class_names is not None and label < len(class_names)
            else str(label)
        )
        x, y = float(box[0]), max(0.0, float(box[1]) - 11)
        text_box = draw.textbbox((x, y), name, font=font)
        draw.rectangle(text_box, fill=color)
        draw.text((x, y), name, fill=(255, 255, 255), font=font)
    return tile


