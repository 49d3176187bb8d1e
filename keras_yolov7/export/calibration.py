"""Images given to an export (representative set, sample images) checked into one uint8 array."""

import numpy as np


def collect_images(data, image_size, limit, what="representative_data"):
    """Gather up to `limit` images from user data as uint8 `(N, size, size, 3)`.

    Args:
        data: one of
            - an array `(N, size, size, 3)` (or one image `(size, size, 3)`);
            - an iterable of such arrays or of `(images, targets)` pairs, e.g. the validation
              pipeline's `tf.data.Dataset` (images letterboxed to `size`);
            - a callable returning such an iterable.
            Pixel values are RGB 0..255 (uint8, or numbers in that range).
        image_size: the export's square input size.
        limit: the most images to take.
        what: the argument's name, for error messages.

    Returns:
        uint8 array `(N, size, size, 3)`, 1 <= N <= limit.
    """
    if data is None:
        raise ValueError(f"{what} is None; expected images (N, {image_size}, {image_size}, 3)")
    if callable(data) and not hasattr(data, "shape"):
        data = data()
    if hasattr(data, "shape"):
        batches = [data]
    else:
        try:
            batches = iter(data)
        except TypeError:
            raise TypeError(
                f"{what} must be an array, an iterable of arrays or (images, targets) pairs, or a "
                f"callable returning one; got {type(data).__name__}"
            ) from None
    images, count = [], 0
    for batch in batches:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        batch = _as_pixels(batch, image_size, what)
        images.append(batch[: limit - count])
        count += len(images[-1])
        if count >= limit:
            break
    if count == 0:
        raise ValueError(
            f"{what} yielded no images; expected at least one ({image_size} x {image_size} RGB)"
        )
    return np.concatenate(images)


def _as_pixels(batch, image_size, what):
    batch = np.asarray(batch)
    if batch.ndim == 3:
        batch = batch[None]
    expected = (image_size, image_size, 3)
    if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
        raise ValueError(
            f"{what} has images of shape {tuple(batch.shape)}; expected (N, {image_size}, "
            f"{image_size}, 3) RGB letterboxed to the export size {image_size}"
        )
    if batch.dtype == np.uint8:
        return batch
    if not np.issubdtype(batch.dtype, np.number):
        raise ValueError(f"{what} has dtype {batch.dtype}; expected uint8 pixels 0..255")
    low, high = float(batch.min()), float(batch.max())
    if low < 0 or high > 255:
        raise ValueError(f"{what} has pixel values in [{low}, {high}]; expected 0..255")
    if np.issubdtype(batch.dtype, np.floating) and high <= 1.0 and high > 0:
        raise ValueError(
            f"{what} has float pixels in [{low}, {high}], which looks normalised; expected "
            "pixel values 0..255 (the model rescales inside)"
        )
    return np.round(batch).astype(np.uint8)
