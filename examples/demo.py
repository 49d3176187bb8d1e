"""The whole main job on built-in synthetic data, through the library (`keras_yolov7.engine`).

Trains yolov7_tiny briefly on generated images of coloured shapes, evaluates it (COCO table),
exports it to TFLite int8 (calibrated, verified, mAP compared with the float model) and ONNX,
and detects objects in a new picture. Nothing is downloaded. What `make demo` runs:

    KERAS_BACKEND=tensorflow python examples/demo.py --output demo_output

Each step is one `kyv7.engine` call, shown in its banner with the `keras-yolov7` command that does
the same. The training is a few minutes on a laptop CPU: enough to detect the shapes roughly, far
from a converged model (train for 100+ epochs on more images for that).
"""

import argparse
import csv
import pathlib
import time

import numpy as np
from PIL import Image

from keras_yolov7 import engine
from keras_yolov7.datasets import make_synthetic_arrays

IMAGE_SIZE = 160
BATCH = 8
# A short schedule for a run of a few hundred batches (the official recipe is tuned for runs of
# 100k+): warm up for one epoch instead of 1000 batches at least, and step the optimizer every
# batch instead of accumulating gradients to a batch of 64.
SHORT_SCHEDULE = {"warmup_epochs": 1, "min_warmup_iterations": 40, "nominal_batch_size": BATCH}


def step(title, command, call, *args, **kwargs):
    """Runs one engine call with a banner showing it and the equivalent command."""
    print(f"\n{'=' * 100}\n{title}\n$ keras-yolov7 {command}\n{'=' * 100}", flush=True)
    start = time.perf_counter()
    result = call(*args, **kwargs)
    return result, time.perf_counter() - start


def make_scene(path):
    """A wide picture the model has not seen: three new synthetic images side by side."""
    images, _, _ = make_synthetic_arrays(3, image_size=IMAGE_SIZE, seed=2024, stream=7)
    Image.fromarray(np.concatenate(list(images), axis=1)).save(path, quality=95)
    return images.shape[2] * 3


def best_f1_confidence(results_csv):
    """The confidence threshold with the best F1 in the last evaluation of a training run."""
    with open(results_csv) as file:
        rows = [row for row in csv.DictReader(file) if row["val_best_f1_confidence"] != "NA"]
    return round(max(0.05, float(rows[-1]["val_best_f1_confidence"])), 2)


def run(output, epochs, train_images, val_images):
    runs = output / "runs"
    timings = {}
    hyp = " ".join(f"{key}={value}" for key, value in SHORT_SCHEDULE.items())
    training, timings["train"] = step(
        f"1. Train yolov7_tiny for {epochs} epochs on {train_images} synthetic images "
        f"({IMAGE_SIZE} px)",
        f"train --data synthetic --synthetic-images {train_images} {val_images} --preset "
        f"yolov7_tiny --image-size {IMAGE_SIZE} --batch {BATCH} --epochs {epochs} --hyp {hyp}",
        engine.train,
        "synthetic",
        synthetic_images=(train_images, val_images),
        preset="yolov7_tiny",
        image_size=IMAGE_SIZE,
        batch_size=BATCH,
        epochs=epochs,
        val_interval=max(1, epochs // 4),
        max_boxes=64,
        hyperparameters=SHORT_SCHEDULE,
        project=runs / "train",
        name="demo",
        exist_ok=True,
    )
    train_dir = training.run_dir
    weights = train_dir / "weights" / "best.keras"
    val_data = train_dir / "data" / "annotations" / "instances_val.json"

    _, timings["val"] = step(
        "2. Evaluate the best weights on the validation images",
        f"val --weights {weights} --data {val_data} --save-json",
        engine.evaluate,
        weights,
        val_data,
        save_json=True,
        project=runs / "val",
        name="demo",
        exist_ok=True,
    )

    exports = output / "export"
    _, timings["export int8"] = step(
        "3. Export to TFLite int8 (calibrated on the validation images, mAP compared)",
        f"export --weights {weights} --format tflite --precision int8 --data {val_data}",
        engine.export,
        weights,
        format="tflite",
        precision="int8",
        data=val_data,
        output=exports / "yolov7_tiny_int8.tflite",
    )
    _, timings["export onnx"] = step(
        "4. Export to ONNX",
        f"export --weights {weights} --format onnx",
        engine.export,
        weights,
        format="onnx",
        output=exports / "yolov7_tiny.onnx",
    )

    scene = output / "scene.jpg"
    width = make_scene(scene)
    conf = best_f1_confidence(train_dir / "results.csv")
    # At --image-size 480 the wide picture is letterboxed at scale 1 (padded to 480 x 480): its
    # shapes keep the sizes the model was trained on. A briefly trained model scores low:
    # detections are kept from the confidence with the best F1 on the validation images.
    _, timings["predict"] = step(
        f"5. Detect objects in a new {width} x {IMAGE_SIZE} picture and save it with its boxes "
        f"(confidence >= {conf}, the best-F1 confidence in validation)",
        f"predict --weights {weights} --source {scene} --image-size {width} --conf {conf} "
        "--save-json",
        engine.predict,
        weights,
        scene,
        image_size=width,
        conf=conf,
        save_json=True,
        project=runs / "predict",
        name="demo",
        exist_ok=True,
    )

    picture = runs / "predict" / "demo" / scene.name
    print(
        f"\n{'=' * 100}\nDemo finished in {sum(timings.values()) / 60:.1f} min ("
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
        + ")"
    )
    print(f"  training run:      {train_dir}  (args.yaml, results.csv/png, plots, weights/)")
    print(f"  trained model:     {weights}")
    print(f"  evaluation:        {runs / 'val' / 'demo'}  (plots, predictions.json)")
    print(f"  exports:           {exports}  (yolov7_tiny_int8.tflite, yolov7_tiny.onnx)")
    print(f"  detection picture: {picture}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="demo_output", help="folder for everything written")
    parser.add_argument("--epochs", type=int, default=16, help="training epochs")
    parser.add_argument("--train-images", type=int, default=320, help="synthetic training images")
    parser.add_argument("--val-images", type=int, default=64, help="synthetic validation images")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    run(pathlib.Path(args.output), args.epochs, args.train_images, args.val_images)
