"""The `keras-yolov7` command line: every command end to end on tiny inputs, and one-line errors
for bad input. One model is trained once (module fixture) and shared by val, predict and export."""

import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

import keras_yolov7 as kyv7
from keras_yolov7.cli import main
from keras_yolov7.cli.errors import CLIError
from keras_yolov7.engine.hyperparameters import parse_hyperparameters
from keras_yolov7.engine.hyperparameters import route_hyperparameters
from keras_yolov7.engine.runs import new_run_directory
from keras_yolov7.engine.weights import inference_model
from keras_yolov7.datasets import SYNTHETIC_CLASS_NAMES
from keras_yolov7.datasets import make_synthetic_arrays

SIZE = 64
COMMANDS = ("train", "val", "predict", "export", "convert", "info", "preview")


def run_cli(*argv):
    """`(exit code, stdout, stderr)` of the command line run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(result, *fragments):
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2, result
    assert len(lines) == 1 and "error:" in lines[0], err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of yolov7_tiny on 12 synthetic images: `(run directory, stdout)`."""
    project = tmp_path_factory.mktemp("runs")
    code, out, err = run_cli(
        "train", "--data", "synthetic", "--synthetic-images", 12, 8, "--preset", "yolov7_tiny",
        "--image-size", SIZE, "--batch", 8, "--epochs", 1, "--max-boxes", 32,
        "--project", project, "--name", "exp",
    )  # fmt: skip
    assert code == 0, err
    return project / "exp", out


@pytest.fixture(scope="module")
def checkpoint_pt(tmp_path_factory):
    """An official-style state_dict `.pt` of a 3-class yolov7_tiny, and the Keras model."""
    torch = pytest.importorskip("torch")
    model = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=3)
    state_dict = kyv7.convert.to_torch_state_dict(model)
    path = tmp_path_factory.mktemp("pt") / "tiny3.pt"
    torch.save(
        {key: torch.from_numpy(np.asarray(value)) for key, value in state_dict.items()}, path
    )
    return path, model


def val_annotations(run_dir):
    return run_dir / "data" / "annotations" / "instances_val.json"


# Help and info ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command):
    code, out, _ = run_cli(command, "--help")
    assert code == 0
    assert out.startswith(f"usage: keras-yolov7 {command}")
    assert "--backend" in out and "default" in out


def test_top_level_help_lists_every_command():
    code, out, _ = run_cli("--help")
    assert code == 0
    for command in COMMANDS:
        assert f"\n    {command} " in out, command


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="counting GFLOPs runs the model eagerly, slow on JAX (18 s); the command is the same "
    "on every backend and tests/test_models.py checks the counts on each",
)
def test_info_counts_parameters_and_gflops():
    code, out, _ = run_cli("info", "--presets", "yolov7_tiny")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("yolov7_tiny"))
    size, levels, params, fused, gflops = row.split()[1:]
    # The official yolov7-tiny figures (spec/yolov7.md): 6,228,762 / 6,219,709 parameters
    # (training / fused), 13.7 GFLOPs at 640, 80 classes.
    assert (size, levels) == ("640", "3")
    assert (params, fused, gflops) == ("6,228,762", "6,219,709", "13.7")
    assert "yolov7_tiny_coco" in out and "yolov7-tiny.pt" in out and "yolov7_coco" not in out


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="one backend re-exec check")
def test_backend_option_runs_the_command_on_that_backend():
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    command = [sys.executable, "-m", "keras_yolov7.cli", "info", "--presets", "yolov7_tiny"]
    command += ["--num-classes", "3", "--backend", "torch"]
    process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert process.returncode == 0, process.stderr
    assert "backend torch, 3 classes" in process.stdout
    assert "yolov7_tiny" in process.stdout


# Train ------------------------------------------------------------------------------------------


def test_train_writes_the_run_directory(trained):
    run_dir, out = trained
    args = yaml.safe_load((run_dir / "args.yaml").read_text())
    assert args["preset"] == "yolov7_tiny" and args["image_size"] == SIZE and args["epochs"] == 1
    assert args["class_names"] == list(SYNTHETIC_CLASS_NAMES)
    assert args["backend"] == keras.backend.backend()
    assert args["hyperparameters"]["lrf"] == 0.01  # the tiny family's official value

    with open(run_dir / "results.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 1
    for column in (
        "epoch",
        "loss",
        "box_loss",
        "obj_loss",
        "cls_loss",
        "val_mAP",
        "val_mAP50",
        "val_precision",
    ):
        assert column in rows[0], column
    assert np.isfinite(float(rows[0]["loss"])) and 0 <= float(rows[0]["val_mAP"]) <= 1

    for name in (
        "results.png",
        "train_batch.png",
        "PR_curve.png",
        "F1_curve.png",
        "confusion_matrix.png",
        "val_batch0.png",
    ):
        assert (run_dir / name).stat().st_size > 1000, name
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in out
    assert "rectangle" in out  # the per-class table


def test_train_saves_loadable_last_and_best_weights(trained):
    run_dir, _ = trained
    last = keras.models.load_model(run_dir / "weights" / "last.keras", compile=False)
    best = keras.models.load_model(run_dir / "weights" / "best.keras", compile=False)
    for model, name in ((last, "last.keras"), (best, "best.keras")):
        assert isinstance(model, kyv7.YOLOv7ObjectDetector)
        assert model.num_classes == 5 and model.class_names == list(SYNTHETIC_CLASS_NAMES)
        # float32 weights without optimizer state (which would double the file at least).
        weight_bytes = sum(w.size * 4 for w in model.get_weights())
        assert (run_dir / "weights" / name).stat().st_size < 1.2 * weight_bytes
    # One epoch: the best weights are the last ones.
    for a, b in zip(last.get_weights(), best.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_run_directories_are_numbered(tmp_path):
    assert new_run_directory(tmp_path, "exp") == tmp_path / "exp"
    assert new_run_directory(tmp_path, "exp") == tmp_path / "exp2"
    assert new_run_directory(tmp_path, "exp") == tmp_path / "exp3"
    assert new_run_directory(tmp_path, "exp", exist_ok=True) == tmp_path / "exp"


def test_weights_of_another_class_count_keep_all_but_the_class_outputs(checkpoint_pt):
    _, source = checkpoint_pt
    model = source.with_classes(5, list(SYNTHETIC_CLASS_NAMES))
    assert model.num_classes == 5 and model.class_names == list(SYNTHETIC_CLASS_NAMES)
    # The lead head's 3 output convs (kernel, bias) and 3 implicit multipliers depend on the
    # class count: their box and objectness channels are copied, the class ones start fresh.
    sources = {w.path: keras.ops.convert_to_numpy(w) for w in source.weights}
    per_anchor = 0
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight)
        if sources[weight.path].shape == value.shape:
            np.testing.assert_array_equal(value, sources[weight.path], err_msg=weight.path)
        else:
            assert "lead_head" in weight.path
            per_anchor += 1
            old = sources[weight.path].reshape(sources[weight.path].shape[:-1] + (3, 8))
            np.testing.assert_array_equal(value.reshape(value.shape[:-1] + (3, 10))[..., :5], old[..., :5])
    assert per_anchor == 9


def test_hyperparameters_from_files_and_pairs(tmp_path):
    hyp = tmp_path / "hyp.yaml"
    hyp.write_text("lr0: 0.02\nfliplr: 0.3\nbox: 0.07\npaste_in: 0.15\ncls_pw: 1.0\nloss_ota: 1\n")
    values = parse_hyperparameters([str(hyp), "lr0=0.005", "mosaic=0.5"])
    optimizer, loss, augmentation, notes = route_hyperparameters(values)
    assert optimizer == {"lr0": 0.005}
    assert loss == {"box": 0.07}
    assert augmentation == {"flip_lr": 0.3, "mosaic": 0.5}
    assert len(notes) == 1 and "paste_in" in notes[0]
    with pytest.raises(ValueError, match="cls_pw=2 is not supported"):
        route_hyperparameters({"cls_pw": 2.0})
    with pytest.raises(ValueError, match="unknown hyperparameter 'lr'"):
        route_hyperparameters({"lr": 0.1})
    with pytest.raises(ValueError, match="'fast' is not a number"):
        parse_hyperparameters(["lr0=fast"])


# Val --------------------------------------------------------------------------------------------


def test_val_prints_the_tables_and_writes_plots_and_json(trained, tmp_path):
    run_dir, _ = trained
    code, out, err = run_cli(
        "val", "--weights", run_dir / "weights" / "best.keras", "--data", val_annotations(run_dir),
        "--image-size", SIZE, "--save-json", "--project", tmp_path, "--name", "val",
    )  # fmt: skip
    assert code == 0, err
    assert "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]" in out
    header = next(line for line in out.splitlines() if line.split()[:2] == ["class", "labels"])
    assert header.split() == ["class", "labels", "P", "R", "AP50", "AP"]
    for name in SYNTHETIC_CLASS_NAMES:
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name
    results = json.loads((tmp_path / "val" / "predictions.json").read_text())
    ground_truth = json.loads(val_annotations(run_dir).read_text())
    image_ids = {image["id"] for image in ground_truth["images"]}
    assert results and {r["image_id"] for r in results} <= image_ids
    assert {r["category_id"] for r in results} <= {1, 2, 3, 4, 5}
    for r in results:  # COCO [x, y, w, h] inside the 64 x 64 original images
        x, y, w, h = r["bbox"]
        assert 0 <= x and 0 <= y and x + w <= SIZE + 1e-3 and y + h <= SIZE + 1e-3
    for name in (
        "PR_curve.png",
        "F1_curve.png",
        "confusion_matrix.png",
        "val_batch0.png",
        "args.yaml",
    ):
        assert (tmp_path / "val" / name).is_file(), name


def test_val_refuses_weights_for_another_class_count(trained, checkpoint_pt):
    run_dir, _ = trained
    path, _ = checkpoint_pt
    result = run_cli("val", "--weights", path, "--data", val_annotations(run_dir))
    assert_one_line_error(result, "predicts 3 classes", "has 5")


# Predict ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Grayscale, RGBA, wide and short images beside a file that is not an image."""
    folder = tmp_path_factory.mktemp("images")
    images, _, _ = make_synthetic_arrays(3, image_size=SIZE, seed=5, stream=1)
    Image.fromarray(images[0]).convert("L").save(folder / "gray.png")
    alpha = np.full((SIZE, SIZE, 1), 200, np.uint8)
    Image.fromarray(np.concatenate([images[1], alpha], -1), "RGBA").save(folder / "rgba.png")
    wide = np.concatenate([images[0], images[1]], axis=1)[::2, ::1]  # 32 x 128
    Image.fromarray(np.ascontiguousarray(wide)).save(folder / "wide.png")
    Image.fromarray(images[2][:40]).save(folder / "short.png")  # 40 x 64: padded in y
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_predict_saves_pictures_and_json_in_original_pixels(trained, image_folder, tmp_path):
    run_dir, _ = trained
    weights = run_dir / "weights" / "best.keras"
    code, out, err = run_cli(
        "predict", "--weights", weights, "--source", image_folder, "--image-size", SIZE,
        "--conf", 0.001, "--max-det", 20, "--save-json", "--project", tmp_path, "--name", "p",
        "--precision", "float32",  # compared with model.predict in float32 below
    )  # fmt: skip
    assert code == 0, err
    assert "inference precision: float32\n" in out
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "notes.txt" in warnings[0]
    out_dir = tmp_path / "p"
    sizes = {
        "gray.png": (64, 64),
        "rgba.png": (64, 64),
        "wide.png": (128, 32),
        "short.png": (64, 40),
    }
    for name, size in sizes.items():
        with Image.open(out_dir / name) as picture:
            assert picture.size == size and picture.mode == "RGB", name
    assert not (out_dir / "notes.png").exists()

    records = {
        os.path.basename(r["image"]): r
        for r in json.loads((out_dir / "predictions.json").read_text())
    }
    assert set(records) == set(sizes)
    for name, (width, height) in sizes.items():
        assert (records[name]["width"], records[name]["height"]) == (width, height)
        for det in records[name]["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
            assert det["class_name"] == SYNTHETIC_CLASS_NAMES[det["class_id"]]

    # short.png (40 x 64) is padded by 12 rows above and below: the JSON boxes are the model's
    # detections on that padded input moved up 12 pixels and clipped to the image.
    model = keras.models.load_model(weights, compile=False).get_fused()
    model.set_prediction_settings(confidence_threshold=0.001, max_detections=20)
    image = np.asarray(Image.open(image_folder / "short.png").convert("RGB"))
    padded = np.full((1, 64, 64, 3), 114, np.uint8)
    padded[0, 12:52] = image
    expected = model.predict(padded, verbose=0)
    count = int(expected["num_detections"][0])
    boxes = expected["boxes"][0, :count] - np.array([0, 12, 0, 12], np.float32)
    boxes = np.clip(boxes, 0, [64, 40, 64, 40])
    found = records["short.png"]["detections"]
    assert count > 0 and len(found) == count
    np.testing.assert_allclose([d["box"] for d in found], boxes, atol=0.02)
    np.testing.assert_allclose(
        [d["score"] for d in found], expected["confidence"][0, :count], atol=1e-4
    )

    # Batched: the three 64 x 64 inputs run together, the wide image alone; same detections.
    code, _, err = run_cli(
        "predict", "--weights", weights, "--source", image_folder, "--image-size", SIZE,
        "--conf", 0.001, "--max-det", 20, "--save-json", "--no-save", "--batch", 4,
        "--project", tmp_path, "--name", "batched", "--precision", "float32",
    )  # fmt: skip
    assert code == 0, err
    batched = json.loads((tmp_path / "batched" / "predictions.json").read_text())
    assert [r["image"] for r in batched] == sorted(str(image_folder / name) for name in sizes)
    assert not list((tmp_path / "batched").glob("*.png"))
    for record in batched:
        # Scores, not boxes: this barely trained model has many near-equal scores, whose order
        # float rounding in another batch shape may change.
        alone = records[os.path.basename(record["image"])]["detections"]
        np.testing.assert_allclose(
            [d["score"] for d in record["detections"]], [d["score"] for d in alone], atol=1e-4
        )


def test_predict_auto_precision_says_what_it_chose(trained, image_folder, tmp_path):
    from keras_yolov7.training import resolve_inference_precision
    from keras_yolov7.training.devices import cpu_bfloat16_features

    weights = trained[0] / "weights" / "best.keras"
    code, out, err = run_cli(
        "predict", "--weights", weights, "--source", image_folder / "gray.png",
        "--image-size", SIZE, "--no-save", "--project", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    features = ", ".join(cpu_bfloat16_features()) or "none"
    line = f"inference precision: {resolve_inference_precision('auto')} (auto; CPU bfloat16 "
    assert f"{line}features: {features})" in out


def test_inference_model_is_fused_xyxy_and_takes_any_size():
    model = kyv7.YOLOv7ObjectDetector.from_preset(
        "yolov7_tiny", num_classes=2, image_size=64, bounding_box_format="center_xywh"
    )
    flexible = inference_model(model)
    assert flexible.fused and flexible.bounding_box_format == "xyxy"
    assert flexible.image_size == (64, 64)  # the network size travels with the model
    images = np.random.default_rng(0).integers(0, 255, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(flexible(images)[0]),
        keras.ops.convert_to_numpy(model(images)[0]),
        atol=1e-3,
    )
    assert flexible(np.zeros((1, 32, 96, 3), "float32"))[0].shape[1:3] == (4, 12)


def test_predict_bad_sources_are_one_line_errors(trained, image_folder, tmp_path):
    weights = trained[0] / "weights" / "best.keras"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(
        run_cli("predict", "--weights", weights, "--source", empty), "has no files"
    )
    missing = tmp_path / "missing.jpg"
    assert_one_line_error(
        run_cli("predict", "--weights", weights, "--source", missing), "does not exist"
    )
    code, _, err = run_cli(
        "predict",
        "--weights",
        weights,
        "--source",
        image_folder / "notes.txt",
        "--project",
        tmp_path,
    )
    assert code == 2 and err.strip().splitlines()[-1].endswith("none readable as an image")
    assert not any(tmp_path.glob("exp*"))  # no run directory without a result


# Export -----------------------------------------------------------------------------------------


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="on JAX / PyTorch the export runs the same TensorFlow code in a subprocess "
    "(tests/test_export_backends.py)",
)
def test_export_tflite_prints_the_verification(trained, tmp_path):
    run_dir, _ = trained
    output = tmp_path / "model.tflite"
    code, out, err = run_cli(
        "export", "--weights", run_dir / "weights" / "best.keras", "--format", "tflite",
        "--image-size", SIZE, "--output", output,
    )  # fmt: skip
    assert code == 0, err
    figures = dict(re.findall(r"^\s+(\w+_max_abs_diff): (\S+)$", out, re.MULTILINE))
    assert (
        float(figures["boxes_max_abs_diff"]) < 1e-4 and float(figures["scores_max_abs_diff"]) < 1e-4
    )
    assert "CONV_2D" in out and "MB" in out
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(output))
    shapes = sorted(tuple(d["shape"]) for d in interpreter.get_output_details())
    candidates = 3 * (8 * 8 + 4 * 4 + 2 * 2)
    assert shapes == [(1, candidates, 4), (1, candidates, 5)]


def test_int8_export_needs_data(trained):
    weights = trained[0] / "weights" / "best.keras"
    result = run_cli("export", "--weights", weights, "--precision", "int8")
    assert_one_line_error(result, "--precision int8 needs --data")
    result = run_cli("export", "--weights", weights, "--format", "onnx", "--precision", "fp16")
    assert_one_line_error(result, "--precision fp16 is not offered for onnx", "fp32, int8")
    result = run_cli("export", "--weights", weights, "--max-map-drop", "lots")
    assert_one_line_error(result, "expected mAP points >= 0 or 'off'")


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="on JAX / PyTorch the export runs the same TensorFlow code in a subprocess "
    "(tests/test_export_backends.py)",
)
def test_export_android_int8_prints_the_report_once(trained, tmp_path):
    run_dir, _ = trained
    output = tmp_path / "android.tflite"
    code, out, err = run_cli(
        "export", "--weights", run_dir / "weights" / "best.keras", "--format", "tflite",
        "--nms", "android", "--precision", "int8", "--data", val_annotations(run_dir),
        "--image-size", SIZE, "--output", output, "--max-map-drop", "off",
    )  # fmt: skip
    assert code == 0, err
    assert out.count("verification:") == 1 and out.count("mAP50_drop_points") == 1
    assert "metadata: written: 5 labels" in out and "max_map_drop: None" in out
    from keras_yolov7.export.metadata import read_object_detector_metadata

    assert read_object_detector_metadata(output.read_bytes())["labels"] == list(
        SYNTHETIC_CLASS_NAMES
    )


# Convert and preview ----------------------------------------------------------------------------


def test_convert_reproduces_the_checkpoint(checkpoint_pt, tmp_path):
    path, model = checkpoint_pt
    output = tmp_path / "tiny3.keras"
    code, out, err = run_cli("convert", path, "--output", output)
    assert code == 0, err
    assert "yolov7_tiny, 3 classes, training form" in out
    converted = keras.models.load_model(output, compile=False)
    for a, b in zip(converted.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    code, out, _ = run_cli("convert", path, "--output", tmp_path / "fused.keras", "--fuse")
    assert code == 0 and "fused form" in out
    assert keras.models.load_model(tmp_path / "fused.keras", compile=False).fused


def test_preview_draws_augmented_samples(trained, tmp_path):
    run_dir, _ = trained
    output = tmp_path / "samples.png"
    code, out, err = run_cli(
        "preview", "--data", run_dir / "data" / "annotations" / "instances_train.json",
        "--preset", "yolov7_tiny", "--image-size", SIZE, "--num-images", 6, "--output", output,
    )  # fmt: skip
    assert code == 0, err
    assert "6 samples drawn" in out
    with Image.open(output) as picture:
        assert picture.size == (4 * 320, 2 * 320)


# Bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (
            ["predict", "--weights", "w.keras", "--source", ".", "--conf", "1.5"],
            ["--conf", "must be in [0, 1], got 1.5"],
        ),
        (
            ["predict", "--weights", "w.keras", "--source", ".", "--iou", "-0.1"],
            ["--iou", "must be in [0, 1]"],
        ),
        (
            ["val", "--weights", "w.keras", "--data", "x.yaml", "--conf", "2"],
            ["--conf", "must be in [0, 1]"],
        ),
        (
            ["export", "--weights", "w.keras", "--iou", "high"],
            ["--iou", "expected a number in [0, 1]"],
        ),
        (["train", "--data", "synthetic", "--epochs", "0"], ["--epochs", "must be at least 1"]),
        (["predict", "--source", "."], ["--weights"]),
        (
            ["export", "--weights", "w.keras", "--format", "tensorrt"],
            ["--format", "invalid choice"],
        ),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, fragments):
    assert_one_line_error(run_cli(*argv), *fragments)


def test_bad_weights_are_one_line_errors(trained, tmp_path):
    data = val_annotations(trained[0])
    assert_one_line_error(
        run_cli("val", "--weights", tmp_path / "none.keras", "--data", data), "does not exist"
    )
    garbage = tmp_path / "garbage.keras"
    garbage.write_text("not a zip")
    assert_one_line_error(
        run_cli("val", "--weights", garbage, "--data", data), "is not a .keras model"
    )
    other = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(other)
    assert_one_line_error(
        run_cli("val", "--weights", other, "--data", data),
        "holds a Sequential, not a YOLOv7ObjectDetector",
    )
    not_pt = tmp_path / "fake.pt"
    not_pt.write_text("not a checkpoint")
    assert_one_line_error(run_cli("convert", not_pt))
    legacy = tmp_path / "model.h5"
    legacy.write_bytes(b"")
    assert_one_line_error(
        run_cli("val", "--weights", legacy, "--data", data),
        "must be a .keras model or an official .pt",
    )


def test_bad_training_setups_are_one_line_errors(tmp_path):
    project = ["--project", tmp_path]
    assert_one_line_error(
        run_cli(
            "train", "--data", "synthetic", "--preset", "yolov7_tiny", "--image-size", 100, *project
        ),
        "not a multiple of yolov7_tiny's largest stride 32; use e.g. 96",
    )
    assert_one_line_error(
        run_cli("train", "--data", tmp_path / "none.yaml", *project), "does not exist"
    )
    assert not any(tmp_path.iterdir())  # checked before the run directory is made
    assert_one_line_error(
        run_cli("train", "--data", "synthetic", "--hyp", "mosaic=2", *project), "mosaic"
    )
    single = tmp_path / "train.json"
    single.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert_one_line_error(run_cli("train", "--data", single, *project), "--val-data")
