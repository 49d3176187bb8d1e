"""Bad inference input: every path (`predict`, `model()`, the letterbox) refuses what cannot be an
image with one error naming the image and the problem; odd sizes are letterboxed, never cropped;
input files are left as they were."""

import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_yolov7 as kyv7
from keras_yolov7.models.image_inputs import ImageInputError
from keras_yolov7.models.image_inputs import NotAnImageError

SIZE = 64


@pytest.fixture(scope="module")
def detector():
    return kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=2, image_size=SIZE)


def png_declaring(width, height):
    """A valid PNG header declaring `width` x `height` pixels, with almost no data."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def files(folder):
    """The bad files of the corpus, written into `folder`: name -> path."""
    written = {}
    good = folder / "good.png"
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(good)
    written["text"] = folder / "notes.jpg"
    written["text"].write_text("not an image at all")
    written["empty file"] = folder / "empty.png"
    written["empty file"].write_bytes(b"")
    written["truncated"] = folder / "truncated.png"
    written["truncated"].write_bytes(good.read_bytes()[:60])
    written["bomb"] = folder / "bomb.png"
    written["bomb"].write_bytes(png_declaring(60000, 60000))
    written["folder"] = folder / "a_folder.jpg"
    written["folder"].mkdir()
    return written


ARRAY_CASES = {
    "rank 2": (np.zeros((64, 64), np.uint8), r"image 0 has shape \(64, 64\); expected \(height, width, 3\).*grayscale"),
    "rank 5": (np.zeros((1, 1, 8, 8, 3), np.uint8), r"image 0 has shape \(1, 1, 8, 8, 3\); expected"),
    "rank 1": (np.zeros((3,), np.uint8), r"image 0 has shape \(3,\)"),
    "one channel": (np.zeros((8, 8, 1), np.uint8), "image 0 has 1 channels .*expected 3"),
    "four channels": (np.zeros((8, 8, 4), np.uint8), "image 0 has 4 channels"),
    "channels first": (np.zeros((3, 32, 32), np.uint8), "image 0 has 32 channels"),
    "empty batch": (np.zeros((0, 8, 8, 3), np.uint8), "no images to predict"),
    "empty list": ([], "no images to predict"),
    "empty tuple": ((), "no images to predict"),
    "zero height": (np.zeros((0, 10, 3), np.uint8), r"image 0 is empty \(shape \(0, 10, 3\)\)"),
    "zero width": (np.zeros((10, 0, 3), np.float32), r"image 0 is empty"),
    "nan": (np.where(np.eye(8)[..., None] > 0, np.nan, 1.0) * np.ones((8, 8, 3)), "image 0 has NaN or infinite pixel values"),
    "inf": (np.full((8, 8, 3), np.inf), "NaN or infinite"),
    "minus inf": (np.full((8, 8, 3), -np.inf, np.float32), "NaN or infinite"),
    "1e30": (np.full((8, 8, 3), 1e30, np.float64), r"pixel values in \[1e\+30, 1e\+30\]; expected 0..255"),
    "negative": (np.full((8, 8, 3), -1.0, np.float32), r"pixel values in \[-1, -1\]"),
    "above 255 int": (np.full((8, 8, 3), 256, np.int32), r"pixel values in \[256, 256\]"),
    "bool": (np.zeros((8, 8, 3), bool), "dtype bool; expected uint8 or float"),
    "complex": (np.zeros((8, 8, 3), np.complex64), "dtype complex64"),
    "strings": (np.full((2, 2, 3), "a"), "dtype <U1"),
    "none": (None, "image 0 is a NoneType; expected a path, a PIL image or an array"),
    "number": (3.5, "image 0 is a float"),
    "bad second item": ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)], r"image 1 has shape \(8, 8\)"),
    "nan in a batch": (np.stack([np.zeros((8, 8, 3)), np.full((8, 8, 3), np.nan)]), "image 1 has NaN"),
    "dict without images": ({"pictures": np.zeros((8, 8, 3))}, r"needs an 'images' entry, got keys \['pictures'\]"),
    "dataset of dicts without images": (
        tf.data.Dataset.from_tensors({"x": np.zeros((8, 8, 3), np.uint8)}),
        r"dataset elements are dicts without 'images' \(keys \['x'\]\)",
    ),
    "dataset of rank-2 images": (tf.data.Dataset.from_tensors(np.zeros((8, 8), np.uint8)), r"image 0 has shape \(8, 8\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ARRAY_CASES))
def test_predict_refuses_what_is_not_an_image(detector, case):
    value, message = ARRAY_CASES[case]
    with pytest.raises(ImageInputError, match=message):
        detector.predict(value, verbose=0)


FILE_CASES = {
    "text": r"notes.jpg: not a readable image \(cannot identify image file",
    "empty file": r"empty.png: not a readable image",
    "truncated": r"truncated.png: not a readable image",
    "bomb": r"bomb.png: not a readable image \(Image size \(3600000000 pixels\) exceeds limit",
    "folder": r"a_folder.jpg: not a readable image",
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_predict_refuses_unreadable_files_and_leaves_them_alone(detector, tmp_path, case):
    path = files(tmp_path)[case]
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(NotAnImageError, match=FILE_CASES[case]):
        detector.predict(str(path), verbose=0)
    assert (path.read_bytes() if path.is_file() else None) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["good.png", "notes.jpg", "empty.png", "truncated.png", "bomb.png", "a_folder.jpg"]
    )


def test_missing_file(detector, tmp_path):
    with pytest.raises(NotAnImageError, match=r"missing.jpg: no such file"):
        detector.predict(str(tmp_path / "missing.jpg"), verbose=0)


@pytest.mark.parametrize("shape", [(65, 97), (8, 8), (1, 1), (1, 500), (700, 3)])
def test_odd_sizes_are_letterboxed_never_cropped(detector, shape):
    detector.set_prediction_settings(confidence_threshold=0.0)
    result = detector.predict(np.full(shape + (3,), 100, np.uint8), verbose=0)
    count = int(result["num_detections"][0])
    assert count > 0
    boxes = result["boxes"][0, :count]
    assert boxes.min() >= 0 and boxes[:, [0, 2]].max() <= shape[1] and boxes[:, [1, 3]].max() <= shape[0]
    # Boxes reach the far edges: the whole image was seen, not a stride-aligned crop of it.
    assert boxes[:, 2].max() == pytest.approx(shape[1]) and boxes[:, 3].max() == pytest.approx(shape[0])


MODEL_CALL_CASES = {
    "size off the stride": (np.zeros((1, 65, 97, 3), np.float32), "image height 65 is not a multiple of the model's largest stride 32"),
    "one channel": (np.zeros((1, 64, 64, 1), np.float32), r"images must have shape \(batch, height, width, 3\)"),
    "unbatched": (np.zeros((64, 64, 3), np.float32), r"images must have shape \(batch, height, width, 3\)"),
    "nan": (np.full((1, 64, 64, 3), np.nan, np.float32), "image 0 has NaN or infinite pixel values"),
    "out of range": (np.full((2, 64, 64, 3), 300.0, np.float32), r"image 0 has pixel values in \[300, 300\]"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MODEL_CALL_CASES))
def test_calling_the_model_refuses_bad_images(detector, case):
    value, message = MODEL_CALL_CASES[case]
    with pytest.raises(ValueError, match=message):
        detector(value)


@pytest.mark.parametrize(
    "size, message",
    [
        ("640", r"image_size must be an int or \(height, width\), got '640'"),
        (0, r"image_size must be positive, got \(0, 0\)"),
        ((64, 64, 3), r"image_size must be an int or \(height, width\)"),
        (100, r"image_size \(100, 100\) is not a multiple of the model's largest stride 32"),
    ],
)
def test_bad_network_sizes(size, message):
    with pytest.raises(ValueError, match=message):
        kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", image_size=size)
