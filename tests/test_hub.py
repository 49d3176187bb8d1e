"""The KerasHub model: backbone, detector and preprocessor classes, presets saved and loaded through
keras_hub's own entry points, predict() on what people have, and fine-tuning on another class
count."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from PIL import Image

import keras_yolov7 as kyv7
from keras_yolov7.datasets import make_synthetic_arrays

SIZE = 128


def randomized(model, seed=0):
    """Random BatchNorm statistics and implicit vectors, so that outputs differ between levels and
    a wrong weight would show."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        name = weight.path.rsplit("/", 1)[-1]
        shape = tuple(weight.shape)
        if name in ("moving_variance", "gamma"):
            weight.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif name in ("moving_mean", "beta"):
            weight.assign(rng.normal(0.0, 0.2, shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def detector():
    keras.utils.set_random_seed(1)
    model = kyv7.YOLOv7ObjectDetector.from_preset(
        "yolov7_tiny", num_classes=3, class_names=["a", "b", "c"], image_size=SIZE
    )
    randomized(model)
    # A low threshold, so that the untrained model returns many boxes to compare.
    model.set_prediction_settings(confidence_threshold=0.001, max_detections=50)
    return model


def raw_numpy(outputs):
    return [ops.convert_to_numpy(o) for o in outputs]


def test_backbone_is_a_keras_hub_backbone_with_named_feature_levels():
    backbone = kyv7.YOLOv7Backbone.from_preset("yolov7_w6")
    assert isinstance(backbone, keras_hub.models.Backbone)
    features = backbone(np.zeros((1, 128, 128, 3), "uint8"))
    assert {name: tuple(f.shape)[1:3] for name, f in features.items()} == {
        "P3": (16, 16), "P4": (8, 8), "P5": (4, 4), "P6": (2, 2),
        "aux_P3": (16, 16), "aux_P4": (8, 8), "aux_P5": (4, 4), "aux_P6": (2, 2),
    }  # fmt: skip
    fused = backbone.get_fused()
    assert fused.fused and sorted(fused(np.zeros((1, 128, 128, 3), "uint8"))) == [
        "P3", "P4", "P5", "P6"
    ]  # fmt: skip


def test_detector_is_a_keras_hub_object_detector(detector):
    assert isinstance(detector, keras_hub.models.ObjectDetector)
    assert isinstance(detector.backbone, kyv7.YOLOv7Backbone)
    assert isinstance(detector.preprocessor, keras_hub.models.ObjectDetectorPreprocessor)
    assert detector.image_size == (SIZE, SIZE) and detector.class_names == ["a", "b", "c"]
    assert set(kyv7.YOLOv7ObjectDetector.presets) >= {"yolov7_tiny", "yolov7_tiny_coco", "yolov7_e6e_coco"}


def test_preset_round_trip_through_keras_hub_entry_points(detector, tmp_path):
    images = np.random.default_rng(2).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    detector.save_to_preset(tmp_path / "preset")
    assert {"config.json", "task.json", "model.weights.h5", "preprocessor.json"} <= {
        p.name for p in (tmp_path / "preset").iterdir()
    }
    loaded = keras_hub.models.ObjectDetector.from_preset(str(tmp_path / "preset"))
    assert isinstance(loaded, kyv7.YOLOv7ObjectDetector)
    assert loaded.image_size == (SIZE, SIZE) and loaded.class_names == ["a", "b", "c"]
    assert loaded.prediction_settings == detector.prediction_settings
    for got, expected in zip(raw_numpy(loaded(images)), raw_numpy(detector(images))):
        np.testing.assert_array_equal(got, expected)
    photo = np.random.default_rng(3).integers(0, 256, (90, 170, 3), np.uint8)
    first, second = detector.predict(photo, verbose=0), loaded.predict(photo, verbose=0)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])

    backbone = keras_hub.models.Backbone.from_preset(str(tmp_path / "preset"))
    assert isinstance(backbone, kyv7.YOLOv7Backbone)
    for name, value in backbone(images).items():
        np.testing.assert_array_equal(
            ops.convert_to_numpy(value), ops.convert_to_numpy(detector.backbone(images)[name])
        )
    again = kyv7.YOLOv7ObjectDetector.from_preset(str(tmp_path / "preset"), max_detections=7)
    assert again.prediction_settings["max_detections"] == 7


def test_keras_file_keeps_the_preprocessor(detector, tmp_path):
    detector.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.image_size == (SIZE, SIZE) and loaded.class_names == ["a", "b", "c"]


def letterbox_by_hand(image, size):
    """The documented letterbox, written here independently: scale = size / longer side, resized
    side = round(side * scale), centred, padded with 114. Only for images that need no resizing
    (the longer side equals `size`), so that its pixels are the library's exactly."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    assert scale == 1.0
    top, left = (size - height) // 2, (size - width) // 2
    padded = np.full((size, size, 3), 114, np.uint8)
    padded[top : top + height, left : left + width] = image
    return padded, scale, (left, top)


@pytest.mark.parametrize("shape", [(SIZE, 97), (65, SIZE), (SIZE, SIZE)])
def test_predict_equals_raw_outputs_of_a_letterbox_by_hand(detector, shape):
    image = np.random.default_rng(4).integers(0, 256, shape + (3,), np.uint8)
    padded, scale, (left, top) = letterbox_by_hand(image, SIZE)
    by_hand = detector.decode_detections(detector(padded[None]))
    count = int(ops.convert_to_numpy(by_hand["num_detections"])[0])
    boxes = ops.convert_to_numpy(by_hand["boxes"])[0, :count]
    boxes = (boxes - [left, top, left, top]) / scale
    boxes = np.clip(boxes, 0, [shape[1], shape[0], shape[1], shape[0]])

    predicted = detector.predict(image, batch_size=1, verbose=0)
    assert int(predicted["num_detections"][0]) == count > 0
    np.testing.assert_allclose(predicted["boxes"][0, :count], boxes, atol=1e-3)
    np.testing.assert_array_equal(
        predicted["labels"][0, :count], ops.convert_to_numpy(by_hand["labels"])[0, :count]
    )


@pytest.mark.parametrize("shape", [(300, 171), (41, 29)])
def test_predict_maps_resized_images_back_to_their_pixels(detector, shape):
    image = np.random.default_rng(5).integers(0, 256, shape + (3,), np.uint8)
    height, width = shape
    scale = SIZE / max(height, width)
    left = (SIZE - round(width * scale)) // 2
    top = (SIZE - round(height * scale)) // 2
    letterboxed, library_scale, library_pad = detector.preprocessor.letterbox(image)
    assert library_scale == pytest.approx(scale) and library_pad.tolist() == [left, top]
    by_hand = detector.decode_detections(detector(letterboxed[None].astype("float32")))
    count = int(ops.convert_to_numpy(by_hand["num_detections"])[0])
    boxes = (ops.convert_to_numpy(by_hand["boxes"])[0, :count] - [left, top, left, top]) / scale
    boxes = np.clip(boxes, 0, [width, height, width, height])

    predicted = detector.predict(image, batch_size=1, verbose=0)
    assert int(predicted["num_detections"][0]) == count > 0
    np.testing.assert_allclose(predicted["boxes"][0, :count], boxes, atol=1e-2)
    assert predicted["boxes"][0, :count, 2].max() <= width
    assert predicted["boxes"][0, :count, 3].max() <= height


def test_predict_takes_paths_pil_images_lists_batches_and_datasets(detector, tmp_path):
    rng = np.random.default_rng(6)
    images = [rng.integers(0, 256, shape + (3,), np.uint8) for shape in [(100, 60), (33, 201), (SIZE, SIZE)]]
    reference = [detector.predict(image, batch_size=1, verbose=0) for image in images]
    path = tmp_path / "photo.png"
    Image.fromarray(images[0]).save(path)
    forms = {
        "path": (str(path), [0]),
        "pathlib": (path, [0]),
        "pil": (Image.fromarray(images[1]), [1]),
        "list of mixed sizes": ([images[0], images[1], images[2]], [0, 1, 2]),
        "list mixing kinds": ([str(path), Image.fromarray(images[1])], [0, 1]),
        "batch": (np.stack([images[2], images[2]]), [2, 2]),
        "float": (images[1].astype("float32"), [1]),
        "tensor": (keras.ops.convert_to_tensor(images[2]), [2]),
        "dataset": (tf.data.Dataset.from_tensors(images[2]).repeat(2).batch(2), [2, 2]),
        "dict": ({"images": images[0]}, [0]),
    }
    for name, (value, expected) in forms.items():
        result = detector.predict(value, batch_size=1, verbose=0)
        assert len(result["num_detections"]) == len(expected), name
        for row, index in enumerate(expected):
            count = int(reference[index]["num_detections"][0])
            assert int(result["num_detections"][row]) == count, name
            np.testing.assert_allclose(
                # float pixels are resized without rounding to uint8: a hair apart
                result["boxes"][row, :count], reference[index]["boxes"][0, :count], atol=1e-2, err_msg=name
            )


def test_predict_runs_validation_batches_as_given(detector, tmp_path):
    from fixtures.data_factory import synthetic_dataset

    from keras_yolov7.data import make_val_dataset

    dataset = synthetic_dataset(tmp_path, num_images=3)
    result = detector.predict(make_val_dataset(dataset, image_size=SIZE, batch_size=1), verbose=0)
    direct = detector.predict([record.image_path for record in dataset.records], batch_size=1, verbose=0)
    np.testing.assert_array_equal(result["num_detections"], direct["num_detections"])
    for row, count in enumerate(direct["num_detections"]):
        np.testing.assert_allclose(result["boxes"][row, :count], direct["boxes"][row, :count], atol=1e-3)


def test_predict_without_preprocessor_runs_network_sized_batches_only(detector):
    bare = kyv7.YOLOv7ObjectDetector(detector.backbone, num_classes=3)
    bare.set_weights(detector.get_weights())
    bare.set_prediction_settings(**detector.prediction_settings)
    images = np.random.default_rng(3).integers(0, 256, (2, SIZE, SIZE, 3), np.uint8)
    ours, theirs = bare.predict(images, verbose=0), detector.predict(images, verbose=0)
    np.testing.assert_array_equal(ours["num_detections"], theirs["num_detections"])
    np.testing.assert_allclose(ours["boxes"], theirs["boxes"], atol=1e-2)
    with pytest.raises(ValueError, match="needs the preprocessor.*multiples of 32"):
        bare.predict(images[:, :, :-1], verbose=0)


def test_predict_box_formats_are_in_original_pixels(detector):
    image = np.random.default_rng(7).integers(0, 256, (80, SIZE, 3), np.uint8)
    xyxy = detector.predict(image, verbose=0)
    count = int(xyxy["num_detections"][0])
    config = detector.get_config()
    config.update(bounding_box_format="rel_yxyx", compile=False)
    relative = kyv7.YOLOv7ObjectDetector.from_config(config)
    relative.set_weights(detector.get_weights())
    result = relative.predict(image, verbose=0)
    expected = xyxy["boxes"][0, :count][:, [1, 0, 3, 2]] / [80, SIZE, 80, SIZE]
    np.testing.assert_allclose(result["boxes"][0, :count], expected, atol=1e-5)


def test_fine_tuning_from_a_preset_keeps_all_but_the_class_outputs(detector, tmp_path):
    detector.save_to_preset(tmp_path / "preset")
    tuned = kyv7.YOLOv7ObjectDetector.from_preset(
        str(tmp_path / "preset"), num_classes=5, class_names=list("vwxyz")
    )
    assert tuned.num_classes == 5 and tuned.class_names == list("vwxyz")
    assert tuned.image_size == detector.image_size
    for name, value in tuned.backbone(np.zeros((1, 64, 64, 3))).items():
        np.testing.assert_array_equal(
            ops.convert_to_numpy(value), ops.convert_to_numpy(detector.backbone(np.zeros((1, 64, 64, 3)))[name])
        )
    old_head, new_head = detector.get_layer("lead_head"), tuned.get_layer("lead_head")
    for old, new in zip(old_head.weights, new_head.weights):
        old, new = ops.convert_to_numpy(old), ops.convert_to_numpy(new)
        if old.shape == new.shape:  # implicit add vectors: per input channel
            np.testing.assert_array_equal(old, new)
            continue
        old = old.reshape(old.shape[:-1] + (3, 8))
        new = new.reshape(new.shape[:-1] + (3, 10))
        np.testing.assert_array_equal(new[..., :5], old[..., :5])  # box and objectness
    images, targets, _ = make_synthetic_arrays(2, image_size=64, seed=1)
    loss = tuned.train_on_batch(images, targets, return_dict=True)["loss"]
    assert np.isfinite(loss)


def test_training_size_is_recorded_and_used_by_predict_and_export(tmp_path):
    model = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=5)
    assert model.image_size == (640, 640)
    images, targets, _ = make_synthetic_arrays(2, image_size=96, seed=2)
    model.fit(images, targets, batch_size=2, epochs=1, verbose=0)
    assert model.image_size == (96, 96)
    model.save(tmp_path / "trained.keras")
    loaded = keras.saving.load_model(tmp_path / "trained.keras")
    assert loaded.image_size == (96, 96)
    letterboxed, scale, pad = loaded.preprocessor.letterbox(np.zeros((300, 150, 3), np.uint8))
    assert letterboxed.shape == (96, 96, 3) and scale == pytest.approx(0.32) and pad.tolist() == [24.0, 0.0]


def test_letterbox_geometry():
    converter = kyv7.YOLOv7ImageConverter(image_size=64)
    padded, scale, pad = converter.letterbox(np.zeros((300, 100, 3), np.uint8))
    assert padded.shape == (64, 64, 3) and scale == pytest.approx(64 / 300) and pad.tolist() == [21, 0]
    assert (padded[:, :21] == 114).all() and (padded[:, 21 + 21 :] == 114).all()
    padded, scale, pad = converter.letterbox(np.full((1, 1, 3), 9, np.uint8))
    assert scale == 64 and pad.tolist() == [0, 0] and (padded == 9).all()
    padded, scale, pad = converter.letterbox(np.full((40, 64, 3), 7, np.uint8))
    assert scale == 1 and pad.tolist() == [0, 12]
    assert (padded[:12] == 114).all() and (padded[12:52] == 7).all() and (padded[52:] == 114).all()
    float_image = np.full((64, 32, 3), 7.5, np.float32)
    padded, _, _ = converter.letterbox(float_image)
    assert padded.dtype == np.float32 and (padded[:, 16:48] == 7.5).all()


def test_preprocessor_maps_training_targets_with_the_images():
    preprocessor = kyv7.YOLOv7ObjectDetectorPreprocessor(kyv7.YOLOv7ImageConverter(image_size=64))
    images = np.zeros((1, 32, 128, 3), np.uint8)
    targets = {"boxes": np.array([[[0, 0, 128, 32], [-1, -1, -1, -1]]], np.float32), "classes": np.array([[2, -1]])}
    x, y = preprocessor(images, targets)
    assert tuple(x.shape) == (1, 64, 64, 3)
    np.testing.assert_allclose(ops.convert_to_numpy(y["boxes"]), [[[0, 24, 64, 40], [-1, -1, -1, -1]]])
    np.testing.assert_array_equal(ops.convert_to_numpy(y["labels"]), [[2, -1]])


def test_bad_construction_and_preset_names(tmp_path):
    with pytest.raises(ValueError, match=r"unknown preset 'yolov8'; expected one of \['yolov7_tiny'"):
        kyv7.YOLOv7ObjectDetector.from_preset("yolov8")
    with pytest.raises(TypeError, match=r"unexpected arguments \['image_sise'\]"):
        kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", image_sise=320)
    with pytest.raises(ValueError, match="3 class names but num_classes is 2"):
        kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=2, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"image_size \(100, 100\) is not a multiple of the model's largest stride 32"):
        kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", image_size=100)
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "config.json").write_text('{"registered_name": "keras_hub>ResNetBackbone", "config": {}}')
    with pytest.raises(ValueError, match="holds a keras_hub>ResNetBackbone preset, not a keras_yolov7 one"):
        kyv7.YOLOv7ObjectDetector.from_preset(str(folder))
    with pytest.raises(ValueError, match="not a preset directory: it has no config.json"):
        kyv7.YOLOv7ObjectDetector.from_preset(str(tmp_path))
