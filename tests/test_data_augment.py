"""The graph pieces of the augmentations, each against an independent numpy / PIL reference."""

import colorsys
import math

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from PIL import ImageOps

from keras_yolov7.data import AugmentationConfig
from keras_yolov7.data.color import augment_hsv
from keras_yolov7.data.color import mixup
from keras_yolov7.data.decode import apply_orientation
from keras_yolov7.data.decode import decode_image
from keras_yolov7.data.mosaic import compose
from keras_yolov7.data.mosaic import mosaic4_offsets
from keras_yolov7.data.mosaic import mosaic9_offsets
from keras_yolov7.data.perspective import box_candidates
from keras_yolov7.data.perspective import random_matrix
from keras_yolov7.data.perspective import sampled_window
from keras_yolov7.data.perspective import warp_boxes
from keras_yolov7.data.perspective import warp_image
from keras_yolov7.data.fixed_size_targets import pad_targets


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pil_exif_transpose(tmp_path, orientation):
    stored = np.random.RandomState(orientation).randint(0, 256, (5, 7, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "image.png"
    Image.fromarray(stored).save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    np.testing.assert_array_equal(
        apply_orientation(tf.constant(stored), orientation).numpy(), expected
    )
    np.testing.assert_array_equal(
        decode_image(tf.constant(str(path)), orientation).numpy(), expected
    )


def test_decode_converts_grayscale_and_rgba_to_rgb(tmp_path):
    Image.new("L", (4, 3), 77).save(tmp_path / "gray.png")
    Image.new("RGBA", (4, 3), (10, 20, 30, 40)).save(tmp_path / "rgba.png")
    gray = decode_image(tf.constant(str(tmp_path / "gray.png")), 1).numpy()
    rgba = decode_image(tf.constant(str(tmp_path / "rgba.png")), 1).numpy()
    assert gray.shape == rgba.shape == (3, 4, 3)
    assert (gray == 77).all() and (rgba == [10, 20, 30]).all()


def _tiles(rng, count, size):
    sizes = rng.randint(size // 4, size + 1, (count, 2)).astype(np.int32)
    tiles = np.full((count, size, size, 3), 114, np.uint8)
    for i, (h, w) in enumerate(sizes):
        tiles[i, :h, :w] = rng.randint(0, 256, (h, w, 3))
    return tiles, sizes


def _paste_reference(tiles, sizes, indices, offsets, canvas_size):
    canvas = np.full((canvas_size, canvas_size, 3), 114, np.uint8)
    coverage = np.zeros((canvas_size, canvas_size), int)
    for (ox, oy), i in zip(offsets, indices):
        h, w = sizes[i]
        x1, y1, x2, y2 = max(ox, 0), max(oy, 0), min(ox + w, canvas_size), min(oy + h, canvas_size)
        if x2 > x1 and y2 > y1:
            canvas[y1:y2, x1:x2] = tiles[i, y1 - oy : y2 - oy, x1 - ox : x2 - ox]
            coverage[y1:y2, x1:x2] += 1
    return canvas, coverage


@pytest.mark.parametrize("nine", [False, True])
def test_compose_matches_numpy_paste_for_mosaic_layouts(nine):
    rng = np.random.RandomState(int(nine))
    size = 48
    tiles, sizes = _tiles(rng, 6, size)
    for _ in range(5):
        indices = list(rng.randint(0, 6, 9 if nine else 4))
        if nine:
            corner = rng.randint(0, size, 2).astype(np.int32)
            offsets = mosaic9_offsets(
                tf.constant(sizes[indices]), size, tf.constant(corner)
            ).numpy()
        else:
            center = rng.randint(size // 2, size + size // 2, 2).astype(np.int32)
            offsets = mosaic4_offsets(tf.constant(sizes[indices]), tf.constant(center)).numpy()
        reference, coverage = _paste_reference(tiles, sizes, indices, offsets, 2 * size)
        assert coverage.max() <= 1  # the official layouts never overlap
        x0, y0 = rng.randint(0, size, 2)
        x1, y1 = rng.randint(x0 + 1, 2 * size + 1), rng.randint(y0 + 1, 2 * size + 1)
        window = tf.constant([x0, y0, x1, y1], tf.int32)
        pasted = compose(
            tf.constant(tiles),
            tf.constant(sizes),
            [tf.constant(i, tf.int32) for i in indices],
            tf.constant(offsets),
            window,
        )
        np.testing.assert_array_equal(pasted.numpy(), reference[y0:y1, x0:x1])


def test_mosaic_layouts():
    sizes = tf.constant([[10, 20], [12, 8], [6, 30], [40, 40]], tf.int32)
    offsets = mosaic4_offsets(sizes, tf.constant([50, 60], tf.int32)).numpy()
    # tile 0 ends at the centre, 1 starts right of it, 2 below it, 3 at it
    np.testing.assert_array_equal(offsets, [[30, 50], [50, 48], [20, 60], [50, 60]])
    # equal tiles (h 10, w 20) make a 3 x 3 grid around the centre tile at (S, S), clockwise from
    # the top; the window corner is subtracted.
    nine = mosaic9_offsets(
        tf.constant([[10, 20]] * 9, tf.int32), 32, tf.constant([2, 1], tf.int32)
    ).numpy()
    expected = [
        [32, 32],
        [32, 22],
        [52, 22],
        [52, 32],
        [52, 42],
        [32, 42],
        [12, 42],
        [12, 32],
        [12, 22],
    ]
    np.testing.assert_array_equal(nine, np.array(expected) - [2, 1])


def test_random_matrix_ranges():
    config = AugmentationConfig(translate=0.2, scale=0.5)
    scales, centers = [], []
    for i in range(300):
        matrix, scale = random_matrix(tf.constant([i, 5], tf.int64), 200, 100, config)
        matrix = matrix.numpy()
        # no rotation, shear or perspective: a uniform scale and a translation
        np.testing.assert_allclose(matrix[[0, 1, 2, 2], [1, 0, 0, 1]], 0, atol=1e-7)
        np.testing.assert_allclose(matrix[0, 0], float(scale), rtol=1e-6)
        np.testing.assert_allclose(matrix[1, 1], float(scale), rtol=1e-6)
        scales.append(float(scale))
        centers.append((matrix @ [100.0, 100.0, 1.0])[:2])  # the canvas centre lands at T
    scales, centers = np.array(scales), np.array(centers)
    assert 0.5 <= scales.min() < 0.55 and 1.55 < scales.max() <= 1.6  # U(1 - 0.5, 1.1 + 0.5)
    assert 30 <= centers.min() < 33 and 67 < centers.max() <= 70  # (0.5 +/- 0.2) * 100


def _bilinear_reference(image, matrix, out_size, fill=114.0):
    """cv2.warpPerspective semantics in numpy: output pixel p samples input M^-1 p bilinearly."""
    inverse = np.linalg.inv(matrix)
    ys, xs = np.mgrid[0:out_size, 0:out_size]
    points = np.stack([xs, ys, np.ones_like(xs)], -1).astype(np.float64) @ inverse.T
    px, py = points[..., 0] / points[..., 2], points[..., 1] / points[..., 2]
    behind = points[..., 2] <= 0
    x0, y0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    fx, fy = (px - x0)[..., None], (py - y0)[..., None]
    height, width = image.shape[:2]

    def at(y, x):
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width) & ~behind
        values = image[np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)].astype(np.float64)
        return np.where(inside[..., None], values, fill)

    return (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
            + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)  # fmt: skip


@pytest.mark.parametrize(
    "config",
    [
        AugmentationConfig(translate=0.2, scale=0.9),
        AugmentationConfig(degrees=30, shear=10, translate=0.2, scale=0.5),
        AugmentationConfig(degrees=10, shear=5, perspective=0.001, translate=0.2, scale=0.5),
    ],
)
def test_warp_matches_bilinear_reference_through_the_window(config):
    rng = np.random.RandomState(3)
    canvas = rng.randint(0, 256, (96, 96, 3)).astype(np.uint8)
    for i in range(4):
        matrix, _ = random_matrix(tf.constant([i, 9], tf.int64), 96, 48, config)
        window = sampled_window(matrix, 96, 48)
        x0, y0, x1, y1 = window.numpy()
        warped = warp_image(
            tf.constant(canvas[y0:y1, x0:x1]), matrix, window, 48, projective=config.perspective > 0
        )
        reference = _bilinear_reference(canvas, matrix.numpy().astype(np.float64), 48)
        # the kernel truncates to uint8 (up to 1) and maps coordinates in float32 (a few
        # thousandths of a pixel, i.e. a fraction of a grey level): window or not
        assert np.abs(warped.numpy().astype(float) - reference).max() <= 1.5


def test_warp_boxes_by_corners_and_clipping():
    scale_shift = tf.constant([[2.0, 0, 5], [0, 2.0, -3], [0, 0, 1]])
    boxes = tf.constant([[1.0, 2, 4, 6], [30, 30, 60, 40]])
    np.testing.assert_allclose(
        warp_boxes(boxes, scale_shift, 100).numpy(), [[7, 1, 13, 9], [65, 57, 100, 77]]
    )
    angle = math.radians(45)
    rotation = tf.constant(
        [
            [math.cos(angle), math.sin(angle), 50],
            [-math.sin(angle), math.cos(angle), 50],
            [0, 0, 1],
        ],
        tf.float32,
    )
    square = tf.constant([[-10.0, -10, 10, 10]])
    half_diagonal = 10 * math.sqrt(2)
    np.testing.assert_allclose(
        warp_boxes(square, rotation, 100).numpy(),
        [[50 - half_diagonal, 50 - half_diagonal, 50 + half_diagonal, 50 + half_diagonal]],
        atol=1e-4,
    )


def test_box_candidates_official_rule():
    config = AugmentationConfig()
    before = tf.constant([[0.0, 0, 10, 10]] * 6)
    after = tf.constant(
        [
            [0.0, 0, 10, 10],  # unchanged: kept
            [0.0, 0, 2, 10],  # width 2 px: not > 2
            [0.0, 0, 3.2, 3.2],  # area ratio 0.1024 > 0.1: kept
            [0.0, 0, 3.1, 3.1],  # area ratio 0.0961: dropped
            [0.0, 0, 100, 5],  # aspect 20: not < 20
            [0.0, 0, 99, 5],  # aspect 19.8: kept
        ]
    )
    np.testing.assert_array_equal(
        box_candidates(before, after, config).numpy(), [True, False, True, False, False, True]
    )


def test_hsv_matches_colorsys_reference():
    image = np.random.RandomState(0).randint(0, 256, (6, 6, 3)).astype(np.uint8)
    seed = tf.constant([4, 2], tf.int64)
    gains = tf.random.stateless_uniform([3], seed, -1.0, 1.0).numpy() * [0.2, 0.7, 0.4] + 1
    expected = np.zeros_like(image)
    for y in range(6):
        for x in range(6):
            h, s, v = colorsys.rgb_to_hsv(*(image[y, x] / 255.0))
            rgb = colorsys.hsv_to_rgb(
                (h * gains[0]) % 1.0, min(s * gains[1], 1.0), min(v * gains[2], 1.0)
            )
            expected[y, x] = np.round(np.array(rgb) * 255)
    result = augment_hsv(tf.constant(image), seed, 0.2, 0.7, 0.4).numpy()
    assert np.abs(result.astype(int) - expected).max() <= 1
    unchanged = augment_hsv(tf.constant(image), seed, 0.0, 0.0, 0.0).numpy()
    assert np.abs(unchanged.astype(int) - image).max() <= 1


def test_mixup_ratio_is_beta_8_8():
    ones = tf.fill([1, 1, 3], tf.constant(200, tf.uint8))
    zeros = tf.fill([1, 1, 3], tf.constant(100, tf.uint8))
    values = np.array(
        [
            mixup(ones, zeros, tf.constant([i, 1], tf.int64), 8.0).numpy()[0, 0, 0]
            for i in range(400)
        ]
    )
    ratios = (values - 100) / 100.0
    assert abs(ratios.mean() - 0.5) < 0.02
    assert abs(ratios.std() - math.sqrt(1 / (4 * 17))) < 0.02  # Beta(8, 8) std 0.121


def test_pad_targets_keeps_the_largest_and_converts_format():
    boxes = tf.constant([[0.0, 0, 2, 2], [0, 0, 10, 10], [5, 5, 6, 6], [0, 0, 4, 8]])
    labels = tf.constant([1, 2, 3, 4])
    calls = []
    padded_boxes, padded_labels = pad_targets(
        boxes, labels, 2, 10, "xyxy", lambda n: calls.append(int(n)) or np.int32(0)
    )
    np.testing.assert_array_equal(padded_labels.numpy(), [2, 4])  # the two largest, in order
    np.testing.assert_allclose(padded_boxes.numpy(), [[0, 0, 10, 10], [0, 0, 4, 8]])
    assert calls == [4]
    padded_boxes, padded_labels = pad_targets(boxes[:1], labels[:1], 3, 10, "rel_center_xywh")
    np.testing.assert_allclose(
        padded_boxes.numpy(), [[0.1, 0.1, 0.2, 0.2], [-1, -1, -1, -1], [-1, -1, -1, -1]]
    )
    np.testing.assert_array_equal(padded_labels.numpy(), [1, -1, -1])


def test_config_presets_are_the_official_values():
    # data/hyp.scratch.tiny.yaml, hyp.scratch.p5.yaml and hyp.scratch.p6.yaml of WongKinYiu/yolov7
    tiny = AugmentationConfig.for_preset("yolov7_tiny")
    assert (tiny.mixup, tiny.translate, tiny.scale) == (0.05, 0.1, 0.5)
    for name in (
        "yolov7",
        "yolov7x",
        "yolov7_w6",
        "yolov7_e6",
        "yolov7_d6",
        "yolov7_e6e",
        "p5",
        "p6",
    ):
        config = AugmentationConfig.for_preset(name)
        assert (config.mixup, config.translate, config.scale) == (0.15, 0.2, 0.9)
    for config in (tiny, AugmentationConfig.for_preset("p6")):
        assert (
            config.mosaic,
            config.hsv_h,
            config.hsv_s,
            config.hsv_v,
            config.flip_lr,
            config.flip_ud,
        ) == (1.0, 0.015, 0.7, 0.4, 0.5, 0.0)
        assert (
            config.degrees,
            config.shear,
            config.perspective,
            config.mosaic9,
            config.mixup_alpha,
        ) == (0.0, 0.0, 0.0, 0.2, 8.0)
    with pytest.raises(ValueError, match="unknown preset 'yolov9'"):
        AugmentationConfig.for_preset("yolov9")
    with pytest.raises(ValueError, match="mixup is a probability; expected 0..1, got 1.5"):
        AugmentationConfig(mixup=1.5)
