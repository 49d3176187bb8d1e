"""Images for `predict`: finding them in files, folders and globs, reading any image as RGB, and
the official detect.py letterbox (longer side to the input size, padded to the stride)."""

import glob
import math
import pathlib

import numpy as np
from PIL import Image
from PIL import ImageOps

from keras_yolov7.cli.errors import CLIError

PAD_VALUE = 114


class NotAnImageError(ValueError):
    """A file that cannot be read as an image (skipped with a warning by `predict`)."""


def find_files(sources):
    """The files named by `--source` entries, in order: files as given, the files of a folder
    (sorted, hidden ones left out, not recursive) and the matches of a glob pattern (sorted).

    Raises:
        CLIError: a path that does not exist, an empty folder, a pattern matching nothing.
    """
    files = []
    for source in sources:
        path = pathlib.Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not found:
                raise CLIError(f"folder {source} has no files (expected images)")
            files += found
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(source):
            found = sorted(pathlib.Path(p) for p in glob.glob(source) if pathlib.Path(p).is_file())
            if not found:
                raise CLIError(f"pattern {source!r} matches no files")
            files += found
        else:
            raise CLIError(f"source {source!r} does not exist")
    return files


def read_rgb(path):
    """An image file as `(height, width, 3)` uint8 RGB, upright (EXIF orientation applied).

    Grayscale, palette, CMYK and RGBA files become RGB (alpha dropped, as the official loader
    does); 16-bit and 32-bit images are scaled to 8 bits; animations give their first frame.

    Raises:
        NotAnImageError: the file is not a readable image.
    """
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
            return _to_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise NotAnImageError(f"not a readable image ({reason})") from None


def _to_rgb(image):
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(image, np.float64)
        if image.mode != "F":
            pixels = pixels / 257.0  # 16-bit range onto 8 bits
        gray = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), np.uint8)


def letterbox(image, size, stride):
    """Resizes so the longer side is `size` and pads each side to the next multiple of `stride`
    with gray 114, centred: the official detect.py letterbox (rectangular, minimum padding).

    Args:
        image: `(height, width, 3)` uint8 RGB, any size and aspect ratio.
        size: the longer side after resizing, pixels (a multiple of `stride`).
        stride: the model's largest stride.

    Returns:
        `(padded (H, W, 3) uint8, scale, (pad_x, pad_y))` with H, W multiples of `stride` and
        `x_original = (x - pad_x) / scale`.
    """
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
    if (new_width, new_height) != (width, height):
        image = np.asarray(Image.fromarray(image).resize((new_width, new_height), Image.BILINEAR))
    out_width = math.ceil(new_width / stride) * stride
    out_height = math.ceil(new_height / stride) * stride
    left = round((out_width - new_width) / 2 - 0.1)
    top = round((out_height - new_height) / 2 - 0.1)
    padded = np.full((out_height, out_width, 3), PAD_VALUE, np.uint8)
    padded[top : top + new_height, left : left + new_width] = image
    return padded, scale, (left, top)
