"""Detections drawn on the original image: a box per detection, labelled with class and score."""

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont


def default_line_width(width, height):
    """Box line width in pixels for an image, growing with its size (the official rule)."""
    return max(round(0.002 * (width + height) / 2) + 1, 1)


def draw_detections(image, boxes, scores, labels, class_names, colors, line_width=None):
    """Draws detections on a copy of `image`.

    Args:
        image: `(height, width, 3)` uint8 RGB, the original image.
        boxes: `(N, 4)` xyxy in pixels of `image`.
        scores: `(N,)` confidences.
        labels: `(N,)` class indices.
        class_names: name of each class index.
        colors: an RGB tuple (0..255) per class index.
        line_width: box line width in pixels; default grows with the image size.

    Returns:
        A `PIL.Image` in RGB.
    """
    picture = Image.fromarray(np.asarray(image, np.uint8))
    width, height = picture.size
    line_width = line_width or default_line_width(width, height)
    font = ImageFont.load_default(size=max(10, 5 * line_width + 6))
    draw = ImageDraw.Draw(picture)
    for box, score, label in zip(np.asarray(boxes), np.asarray(scores), np.asarray(labels)):
        color = colors[int(label) % len(colors)]
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=line_width)
        text = f"{class_names[int(label)]} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        text_height = bottom - top + 4
        # Above the box, or inside it when the box touches the top of the image.
        y = y1 - text_height if y1 - text_height >= 0 else y1
        draw.rectangle([x1, y, x1 + right - left + 4, y + text_height], fill=color)
        draw.text((x1 + 2, y + 2 - top), text, fill=_text_color(color), font=font)
    return picture


def class_palette(num_classes):
    """A distinct RGB colour (0..255) per class, the colours of the evaluation plots."""
    from keras_yolov7.evaluation.plots import class_colors

    return [tuple(int(round(255 * c)) for c in color[:3]) for color in class_colors(num_classes)]


def _text_color(color):
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)
