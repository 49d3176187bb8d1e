"""The training example runs end to end at a toy size and writes what it promises."""

import importlib.util
import json
import pathlib

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "train_synthetic.py"


def load_example():
    spec = importlib.util.spec_from_file_location("train_synthetic", EXAMPLE)
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
