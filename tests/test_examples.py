"""The examples run end to end at a toy size and write what they promise."""

import importlib.util
import json
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
EXAMPLE = EXAMPLES / "train_synthetic.py"


def load_example(path=EXAMPLE):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_synthetic_toy_run(tmp_path):
    example = load_example()
    args = example.parse_args(
        [
            "--output", str(tmp_path), "--epochs", "1", "--train-images", "16",
            "--val-images", "4", "--image-size", "64", "--batch", "8", "--no-int8",
        ]
    )  # fmt: skip
    summary = example.train(args)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == summary
    assert 0.0 <= summary["mAP50"] <= 1.0 and summary["epochs"] == 1
    assert (tmp_path / "mAP_curve.png").stat().st_size > 1000
    assert (tmp_path / "yolov7_tiny_synthetic.keras").is_file()
    assert (tmp_path / "plots" / "PR_curve.png").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [(["--image-size", "100"], "multiple of 32"), (["--train-images", "4"], "fewer than one batch")],
)
def test_train_synthetic_rejects_bad_arguments(argv, message, capsys):
    example = load_example()
    with pytest.raises(SystemExit):
        example.parse_args(argv)
    assert message in capsys.readouterr().err


# Slow: the preset download and conversion (test_presets.py) and fit on every backend
# (test_detector.py) are the code it runs, covered by fast cases.
@pytest.mark.slow
def test_fine_tune_example_runs_on_a_coco128_layout(tmp_path, monkeypatch):
    """The fine-tuning example on 12 generated images in coco128's layout, with an
    official-format yolov7-tiny.pt (seeded weights) supplied through KERAS_YOLOV7_WEIGHTS_DIR."""
    import keras
    import numpy as np
    from PIL import Image

    pytest.importorskip("torch")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("one backend runs the example; test_presets and test_training cover the rest")
    from fixtures.data_factory import synthetic_image

    monkeypatch.syspath_prepend(str(EXAMPLES.parent / "tests" / "fixtures"))
    from official_checkpoint import write_official_checkpoint

    weights = tmp_path / "weights"
    weights.mkdir()
    write_official_checkpoint(weights / "yolov7-tiny.pt", "yolov7_tiny", "deploy")
    monkeypatch.setenv("KERAS_YOLOV7_WEIGHTS_DIR", str(weights))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    data = tmp_path / "coco128"
    (data / "images" / "train2017").mkdir(parents=True)
    (data / "labels" / "train2017").mkdir(parents=True)
    rng = np.random.RandomState(0)
    for i in range(12):
        image, boxes, labels = synthetic_image(rng, 64, 96)
        Image.fromarray(image).save(data / "images" / "train2017" / f"{i:012d}.jpg")
        rows = [
            f"{label} {(x0 + x1) / 192} {(y0 + y1) / 128} {(x1 - x0) / 96} {(y1 - y0) / 64}"
            for (x0, y0, x1, y1), label in zip(boxes, labels)
        ]
        (data / "labels" / "train2017" / f"{i:012d}.txt").write_text("\n".join(rows))

    example = load_example(EXAMPLES / "fine_tune_coco128.py")
    args = example.parse_args(
        ["--data", str(data), "--output", str(tmp_path / "out"), "--epochs", "1",
         "--val-images", "4", "--image-size", "64", "--batch", "4"]
    )  # fmt: skip
    before, after = example.main(args)
    assert 0.0 <= before["mAP50"] <= 1.0 and 0.0 <= after["mAP50"] <= 1.0
    with Image.open(tmp_path / "out" / "prediction.jpg") as picture:
        assert picture.size == (96, 64)  # drawn on the photo, in its own pixels
    import keras_hub

    detector = keras_hub.models.ObjectDetector.from_preset(str(tmp_path / "out" / "preset"))
    assert detector.num_classes == 80 and detector.image_size == (64, 64)
