"""What `predict()` accepts, as a stream of checked `(height, width, 3)` images.

File paths, PIL images, arrays of any size (one image, a batch, or a list of mixed sizes), backend
tensors and tf.data datasets of images are all turned into numpy images; everything else, and
images that cannot be right (wrong rank or channels, empty, NaN / infinite / out-of-range pixels),
is refused with one error naming the image and the problem.
"""

import os

import keras
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".mpo")


class NotAnImageError(ValueError):
    """A file that cannot be read as an image."""


class ImageInputError(ValueError):
    """An input that is not an image the detector can run on."""


def read_image(path):
    """An image file as `(height, width, 3)` uint8 RGB, upright (EXIF orientation applied).

    Grayscale, palette, CMYK and RGBA files become RGB (alpha dropped); 16-bit and 32-bit images are
    scaled to 8 bits; animations give their first frame.

    Raises:
        NotAnImageError: the file does not exist or is not a readable image.
    """
    from PIL import Image
    from PIL import ImageOps

    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            image.load()
            return pil_to_rgb(image)
    except FileNotFoundError:
        raise NotAnImageError(f"{os.fspath(path)}: no such file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise NotAnImageError(f"{os.fspath(path)}: not a readable image ({reason})") from None


def pil_to_rgb(image):
    """A PIL image as `(height, width, 3)` uint8 RGB."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(image, np.float64)
        if image.mode != "F":
            pixels = pixels / 257.0  # 16-bit range onto 8 bits
        gray = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), np.uint8)


def iterate_images(inputs):
    """Yields `(description, image)` for every image in `inputs`, checked.

    Args:
        inputs: a path (str / os.PathLike), a PIL image, an array or tensor `(height, width, 3)` or
            `(batch, height, width, 3)`, a list / tuple of any of these, a dict with "images", or a
            tf.data dataset whose elements are images, batches of images, or dicts with "images".

    Yields:
        `(description, image)`: a short name for error messages ("photo.jpg", "image 3") and a
        `(height, width, 3)` uint8 or float32 array with pixel values in 0..255.
    """
    if isinstance(inputs, dict):
        if "images" not in inputs:
            raise ImageInputError(f"a dict input needs an 'images' entry, got keys {sorted(inputs)}")
        inputs = inputs["images"]
    if _is_tf_dataset(inputs):
        yield from _dataset_images(inputs)
        return
    index = 0
    for item in _items(inputs):
        for description, image in _images_of(item, index):
            yield description, image
            index += 1


def _items(inputs):
    if isinstance(inputs, (list, tuple)):
        return inputs
    return [inputs]


def _images_of(item, index):
    if isinstance(item, (str, bytes, os.PathLike)):
        path = os.fsdecode(item)
        yield os.path.basename(path) or path, read_image(path)
        return
    if _is_pil(item):
        yield f"image {index}", pil_to_rgb(item)
        return
    array = _to_numpy(item, index)
    if array.ndim == 4:
        for offset, image in enumerate(array):
            yield f"image {index + offset}", check_image(image, f"image {index + offset}")
        return
    yield f"image {index}", check_image(array, f"image {index}")


def _to_numpy(item, index):
    if isinstance(item, np.ndarray):
        return item
    if isinstance(item, (int, float, bool)) or item is None:
        raise ImageInputError(
            f"image {index} is a {type(item).__name__}; expected a path, a PIL image or an array "
            "(height, width, 3)"
        )
    try:
        return np.asarray(keras.ops.convert_to_numpy(item))
    except Exception:  # noqa: BLE001 - anything not array-like gets the same clear error
        raise ImageInputError(
            f"image {index} is a {type(item).__name__}; expected a path, a PIL image or an array "
            "(height, width, 3)"
        ) from None


def check_image(image, description):
    """Refuses what cannot be an RGB image in 0..255; returns it as uint8 or float32."""
    image = np.asarray(image)
    if image.ndim != 3:
        hint = " (a grayscale image? give (height, width, 3))" if image.ndim == 2 else ""
        raise ImageInputError(
            f"{description} has shape {image.shape}; expected (height, width, 3) or a batch "
            f"(batch, height, width, 3){hint}"
        )
    if image.shape[-1] != 3:
        raise ImageInputError(
            f"{description} has {image.shape[-1]} channels (shape {image.shape}); expected 3 (RGB)"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageInputError(f"{description} is empty (shape {image.shape})")
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool or not (
        np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    ):
        raise ImageInputError(
            f"{description} has dtype {image.dtype}; expected uint8 or float pixel values 0..255"
        )
    values = image.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise ImageInputError(f"{description} has NaN or infinite pixel values")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 255.0:
        raise ImageInputError(
            f"{description} has pixel values in [{low:g}, {high:g}]; expected 0..255"
        )
    return values


def _dataset_images(dataset):
    index = 0
    for element in dataset.as_numpy_iterator():
        if isinstance(element, dict):
            if "images" not in element:
                raise ImageInputError(
                    f"dataset elements are dicts without 'images' (keys {sorted(element)})"
                )
            element = element["images"]
        elif isinstance(element, tuple):
            element = element[0]
        for description, image in _images_of(np.asarray(element), index):
            yield description, image
            index += 1


def _is_tf_dataset(value):
    return type(value).__module__.startswith("tensorflow") and hasattr(value, "element_spec")


def _is_pil(value):
    return type(value).__module__.startswith("PIL.") and hasattr(value, "convert")
