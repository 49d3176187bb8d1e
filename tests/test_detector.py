"""YOLOv7ObjectDetector as a Keras task: compile/fit/evaluate/predict on the current backend."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_yolov7 as kyv7
from keras_yolov7.datasets import make_synthetic_arrays
from keras_yolov7.training import ModelEMA
from keras_yolov7.training import YOLOv7SGD
from keras_yolov7.training.guard import NonFiniteLossError

SIZE = 64


@pytest.fixture(scope="module")
def data():
    images, targets, names = make_synthetic_arrays(8, image_size=SIZE, seed=3)
    return images, targets, names


def small_model(num_classes=5, **kwargs):
    return kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=num_classes, **kwargs)


def test_compile_defaults_then_fit_uses_the_official_recipe(data):
    images, targets, _ = data
    model = small_model()
    model.compile()
    history = model.fit(
        images, targets, batch_size=4, epochs=2, validation_data=(images[:4], {k: v[:4] for k, v in targets.items()}),
        verbose=0,
    )
    logs = history.history
    for key in ("loss", "box_loss", "obj_loss", "cls_loss", "val_loss", "val_box_loss"):
        assert key in logs and len(logs[key]) == 2 and np.all(np.isfinite(logs[key])), key
    # loss = (box + obj + cls) * batch size, averaged over the batches.
    np.testing.assert_allclose(
        logs["loss"][0], 4 * (logs["box_loss"][0] + logs["obj_loss"][0] + logs["cls_loss"][0]), rtol=1e-4
    )
    assert isinstance(model.optimizer, YOLOv7SGD)
    assert model.optimizer.accumulate == 16  # nominal batch 64 / batch 4
    assert any(isinstance(c, ModelEMA) for c in model._recipe_callbacks)


@pytest.fixture(scope="module")
def adam_model():
    """One compiled model shared by the training tests (each compile costs ~a minute on JAX)."""
    keras.utils.set_random_seed(0)
    model = small_model()
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    return model


def test_training_reduces_the_loss_on_a_fixed_batch(data, adam_model):
    images, targets, _ = data
    images, targets = images[:4], {k: v[:4] for k, v in targets.items()}
    adam_model.reset_metrics()
    first = adam_model.train_on_batch(images, targets, return_dict=True)
    for _ in range(12):
        adam_model.reset_metrics()  # train_on_batch reports running means otherwise
        last = adam_model.train_on_batch(images, targets, return_dict=True)
    # Typically 0.3-0.4 after 12 steps; an untrained or frozen network stays near 1.
    assert last["loss"] < 0.8 * first["loss"], (first, last)


def test_batch_without_any_box_trains(data, adam_model):
    images, _, _ = data
    empty = {"boxes": -np.ones((4, 6, 4), "float32"), "labels": -np.ones((4, 6), "int32")}
    adam_model.reset_metrics()
    logs = adam_model.train_on_batch(images[:4], empty, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0
    assert logs["box_loss"] == 0 and logs["cls_loss"] == 0


def test_non_finite_loss_stops_training(data, adam_model):
    images, targets, _ = data
    saved = adam_model.get_weights()
    kernel = adam_model.backbone.get_layer("conv_0").conv.kernel
    kernel.assign(np.full(tuple(kernel.shape), np.nan, "float32"))
    try:
        with pytest.raises(NonFiniteLossError, match=r"the loss became nan at epoch 1, batch 1"):
            adam_model.fit(images[:4], {k: v[:4] for k, v in targets.items()}, batch_size=4, epochs=1, verbose=0)
    finally:
        adam_model.set_weights(saved)


def test_dict_input_with_keras_cv_names_and_other_box_formats(data):
    images, targets, _ = data
    model = small_model(bounding_box_format="center_xywh")
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    xyxy = targets["boxes"]
    center = np.where(
        xyxy >= 0,
        np.concatenate([(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]], -1),
        -1.0,
    ).astype("float32")
    from_center = model.evaluate(
        {"images": images, "bounding_boxes": {"boxes": center, "classes": targets["labels"]}},
        batch_size=8, verbose=0, return_dict=True,
    )
    reference = small_model()
    reference.set_weights(model.get_weights())
    reference.compile(optimizer=keras.optimizers.SGD(0.0))
    from_xyxy = reference.evaluate(images, targets, batch_size=8, verbose=0, return_dict=True)
    np.testing.assert_allclose(from_center["loss"], from_xyxy["loss"], rtol=1e-4)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t["labels"].__setitem__((0, 0), 7), "labels contain 7 but num_classes is 5"),
        (lambda t: t["labels"].__setitem__((0, 0), -3), "labels contain -3"),
        (lambda t: t["boxes"].__setitem__((1, 0, 2), np.nan), r"boxes\[1, 0\] .* has coordinate nan"),
    ],
)
def test_bad_targets_are_refused_before_training(data, change, message):
    images, targets, _ = data
    targets = {k: v.copy() for k, v in targets.items()}
    change(targets)
    model = small_model()
    model.compile()
    with pytest.raises(ValueError, match=message):
        model.fit(images, targets, batch_size=4, epochs=1, verbose=0)


def test_bad_targets_in_a_tf_dataset_fail_loudly(data):
    tf = pytest.importorskip("tensorflow")
    images, targets, _ = data
    targets = {k: v.copy() for k, v in targets.items()}
    targets["labels"][2, 0] = 9
    dataset = tf.data.Dataset.from_tensor_slices((images, targets)).batch(4)
    model = small_model()
    model.compile(optimizer=keras.optimizers.SGD(1e-3))
    with pytest.raises(Exception, match=r"labels must be < num_classes=5"):
        model.fit(dataset, epochs=1, verbose=0)


def test_compile_picks_the_faster_train_step_for_the_device():
    from keras_yolov7.training.devices import gpu_visible

    model = small_model()
    model.compile()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        # TF graph with oneDNN convolutions on CPU; XLA on a GPU.
        assert model.jit_compile is gpu_visible()
        # Without XLA the loss cuts the target padding (data-dependent shapes); under XLA not.
        assert model._shapes_may_vary() is (not gpu_visible())
        model.compile(jit_compile=True)
        assert model.jit_compile is True
        assert model._shapes_may_vary() is False
    elif backend == "jax":
        assert model.jit_compile is True
        assert model._shapes_may_vary() is False
    else:
        assert model.jit_compile is False
        assert model._shapes_may_vary() is True


def test_fit_rejects_fused_models_and_compile_foreign_losses(data):
    images, targets, _ = data
    with pytest.raises(ValueError, match=r"this detector is fused \(inference only\)"):
        small_model(fused=True).fit(images, targets, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="loss must be 'auto' or a keras_yolov7.losses.YOLOv7Loss"):
        small_model().compile(loss="mse")


def test_predict_returns_padded_detections(data):
    images, _, _ = data
    model = small_model(confidence_threshold=0.001, max_detections=20)
    out = model.predict(images[:3], batch_size=2, verbose=0)
    assert out["boxes"].shape == (3, 20, 4) and out["confidence"].shape == (3, 20)
    assert out["labels"].dtype == np.int32 and out["num_detections"].shape == (3,)
    for i, count in enumerate(out["num_detections"]):
        assert np.all(out["confidence"][i, :count] > 0.001)
        assert np.all(np.diff(out["confidence"][i, :count]) <= 0)
        assert np.all(out["confidence"][i, count:] == -1) and np.all(out["labels"][i, count:] == -1)
        assert np.all((out["labels"][i, :count] >= 0) & (out["labels"][i, :count] < 5))


def test_predict_matches_decoding_the_raw_outputs_and_maps_letterbox(data):
    images, targets, _ = data
    model = small_model(confidence_threshold=0.01)
    expected = model.decode_detections(model(images[:2], training=False))
    out = model.predict(images[:2], verbose=0)
    np.testing.assert_allclose(out["boxes"], ops.convert_to_numpy(expected["boxes"]), atol=1e-3)

    meta = {"scale": np.array([0.5, 2.0], "float32"), "pad": np.array([[4, 0], [0, 8]], "float32")}
    mapped = model.predict({"images": images[:2], **meta}, verbose=0)
    count = out["num_detections"][1]
    valid = out["boxes"][1, :count]
    np.testing.assert_allclose(mapped["boxes"][1, :count], (valid - [0, 8, 0, 8]) / 2.0, atol=1e-3)


def test_prediction_settings_are_checked_and_saved(tmp_path):
    with pytest.raises(ValueError, match=r"confidence_threshold must be in \[0, 1\], got 1.5"):
        small_model(confidence_threshold=1.5)
    model = small_model()
    with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\], got -0.1"):
        model.set_prediction_settings(iou_threshold=-0.1)
    model.set_prediction_settings(**kyv7.ops.EVALUATION_SETTINGS)
    path = tmp_path / "model.keras"
    model.save(path)
    assert keras.models.load_model(path).prediction_settings == kyv7.ops.EVALUATION_SETTINGS
