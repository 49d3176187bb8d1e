"""Drawing detections: one colour per class everywhere (pictures, training previews, plots).

Example:
>>> detector = keras_yolov7.YOLOv7ObjectDetector.from_preset("yolov7_tiny_coco")
>>> detections = detector.predict(["bus.jpg"])
>>> picture = draw_detections("bus.jpg", detections, class_names=detector.class_names)
>>> picture.save("bus_detections.jpg")
"""

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

# tab10, then tab20b and tab20c (matplotlib's qualitative maps), as 0..255 RGB: distinct colours
# for the first 50 classes, then cycling.
_PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (57, 59, 121), (82, 84, 163), (107, 110, 207), (156, 158, 222), (99, 121, 57),
    (140, 162, 82), (181, 207, 107), (206, 219, 156), (140, 109, 49), (189, 158, 57),
    (231, 186, 82), (231, 203, 148), (132, 60, 57), (173, 73, 74), (214, 97, 107),
    (231, 150, 156), (123, 65, 115), (165, 81, 148), (206, 109, 189), (222, 158, 214),
    (49, 130, 189), (107, 174, 214), (158, 202, 225), (198, 219, 239), (230, 85, 13),
    (253, 141, 60), (253, 174, 107), (253, 208, 162), (49, 163, 84), (116, 196, 118),
    (161, 217, 155), (199, 233, 192), (117, 107, 177), (158, 154, 200), (188, 189, 220),
    (218, 218, 235), (99, 99, 99), (150, 150, 150), (189, 189, 189), (217, 217, 217),
)  # fmt: skip


def class_palette(num_classes):
    """The colour of each class, RGB 0..255 tuples (the same in every picture and plot)."""
    return [_PALETTE[c % len(_PALETTE)] for c in range(int(num_classes))]


def default_line_width(width, height):
    """Box line width in pixels for an image, growing with its size (the official rule)."""
    return max(round(0.002 * (width + height) / 2) + 1, 1)


def draw_detections(
    image, detections, class_names=None, index=0, bounding_box_format="xyxy", line_width=None
):
    """Draws detections on a copy of an image: a box per detection labelled with class and score.

    Args:
        image: an image file path, a PIL image or a `(height, width, 3)` RGB array (uint8 or
            float 0..255): the image the boxes are in pixels of.
        detections: what `YOLOv7ObjectDetector.predict` returns (`"boxes"`, `"confidence"`,
            `"labels"`, `"num_detections"`; the row `index` is drawn), or one image's
            `{"boxes": (N, 4), "labels": (N,), "confidence" (optional): (N,)}`. Rows with a
            negative label (padding) are skipped.
        class_names: the name of each class (default: the class index).
        index: the row of a batched `detections` to draw.
        bounding_box_format: the format of the boxes (pixels): "xyxy", "xywh", "center_xywh",
            "yxyx".
        line_width: box line width in pixels; default grows with the image size.

    Returns:
        A `PIL.Image` in RGB.
    """
    from keras_yolov7.models.image_inputs import iterate_images

    _, pixels = next(iterate_images(image))
    picture = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
    boxes, labels, scores = _rows(detections, index)
    boxes = _to_xyxy(boxes, bounding_box_format)
    width, height = picture.size
    line_width = line_width or default_line_width(width, height)
    font = ImageFont.load_default(size=max(10, 5 * line_width + 6))
    draw = ImageDraw.Draw(picture)
    num_colors = max(int(labels.max()) + 1 if len(labels) else 1, len(class_names or ()))
    colors = class_palette(num_colors)
    for box, label, score in zip(boxes, labels, scores):
        color = colors[int(label)]
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=line_width)
        name = class_names[int(label)] if class_names is not None else str(int(label))
        text = name if score is None else f"{name} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        text_height = bottom - top + 4
        # Above the box, or inside it when the box touches the top of the image.
        y = y1 - text_height if y1 - text_height >= 0 else y1
        draw.rectangle([x1, y, x1 + right - left + 4, y + text_height], fill=color)
        draw.text((x1 + 2, y + 2 - top), text, fill=_text_color(color), font=font)
    return picture


def _rows(detections, index):
    boxes = np.asarray(detections["boxes"], np.float32)
    labels = np.asarray(detections.get("labels", detections.get("classes")))
    scores = detections.get("confidence")
    if boxes.ndim == 3:
        boxes, labels = boxes[index], labels[index]
        scores = None if scores is None else np.asarray(scores)[index]
        count = detections.get("num_detections")
        if count is not None:
            count = int(np.asarray(count)[index])
            boxes, labels = boxes[:count], labels[:count]
            scores = None if scores is None else scores[:count]
    keep = np.asarray(labels) >= 0
    scores = [None] * int(keep.sum()) if scores is None else np.asarray(scores)[keep]
    return boxes[keep], np.asarray(labels)[keep].astype(int), scores


def _to_xyxy(boxes, bounding_box_format):
    if bounding_box_format == "xyxy":
        return boxes
    if bounding_box_format == "yxyx":
        return boxes[:, [1, 0, 3, 2]]
    if bounding_box_format == "xywh":
        return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=-1)
    if bounding_box_format == "center_xywh":
        half = boxes[:, 2:] / 2
        return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=-1)
    raise ValueError(
        f"bounding_box_format {bounding_box_format!r} cannot be drawn; expected a pixel format: "
        "'xyxy', 'yxyx', 'xywh' or 'center_xywh'"
    )


def _text_color(color):
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)
