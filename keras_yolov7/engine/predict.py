"""Prediction as a workflow: detections on image files, folders and globs, saved as pictures,
JSON and per-image text files in a run directory."""

import dataclasses
import glob
import json
import logging
import os
import pathlib
import time

import numpy as np

from keras_yolov7.engine.runs import new_run_directory
from keras_yolov7.files import atomic_path
from keras_yolov7.files import write_text

logger = logging.getLogger("keras_yolov7.engine")

# Pictures keep their file type when Pillow writes it well; others are saved as PNG.
KEPT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclasses.dataclass
class PredictionResult:
    """What `predict` returns.

    Attributes:
        run_dir: the run directory (`pathlib.Path`), None when no image was readable.
        records: one dict per image read, in source order: `image` (path), `width`, `height`,
            `detections` (dicts `box` xyxy original pixels, `score`, `class_id`, `class_name`),
            `input_size` `(width, height)` of the network input, `milliseconds` per image.
        skipped: files that are not images (skipped with a warning).
    """

    run_dir: pathlib.Path
    records: list
    skipped: list


def find_images(sources):
    """The files named by `sources` entries, in order: files as given, the files of a folder
    (sorted, hidden ones left out, not recursive) and the matches of a glob pattern (sorted).

    Raises:
        FileNotFoundError: a path that does not exist, a pattern matching nothing.
        ValueError: an empty folder.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    files = []
    for source in sources:
        source = os.fspath(source)
        path = pathlib.Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not found:
                raise ValueError(f"folder {source} has no files (expected images)")
            files += found
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(source):
            found = sorted(pathlib.Path(p) for p in glob.glob(source) if pathlib.Path(p).is_file())
            if not found:
                raise FileNotFoundError(f"pattern {source!r} matches no files")
            files += found
        else:
            raise FileNotFoundError(f"source {source!r} does not exist")
    return files


def predict(
    weights,
    source,
    image_size=None,
    conf=0.25,
    iou=0.45,
    max_det=300,
    precision="auto",
    batch_size=1,
    save=True,
    save_json=False,
    save_txt=False,
    save_conf=False,
    line_width=None,
    project="runs/predict",
    name="exp",
    exist_ok=False,
    verbose=1,
):
    """Detects objects in image files of any size and saves the results in a run directory.

    Images are read upright (EXIF orientation) and converted to RGB, letterboxed by the model's
    preprocessor to the network size, run through the fused model, and their boxes mapped back
    to the original pixels.

    Args:
        weights: a `.keras` / official `.pt` path or a `YOLOv7ObjectDetector`.
        source: image files, folders (their files, not recursive) and glob patterns (a path or
            a list of them); files that are not images are skipped with a warning.
        image_size: network size (default: the model's training size).
        precision: compute precision, "float32", "bfloat16" or "auto" (bfloat16 on the
            TensorFlow backend on a CPU with AMX or AVX512-BF16 and no GPU, else float32;
            `keras_yolov7.training.with_inference_precision`).
        conf, iou, max_det: detection settings (official detect.py: 0.25, 0.45, 300).
        batch_size: images per forward pass (images of the same letterboxed shape are batched).
        save: write one picture per image with its boxes, named like the image.
        save_json: write predictions.json: per image its path, size and detections (boxes xyxy
            in original-image pixels).
        save_txt: write labels/<image name>.txt per image: one line `class x_center y_center
            width height` per detection, normalised by the image size (YOLO format, as the
            official detect.py --save-txt), with the score last when `save_conf`.
        save_conf: see `save_txt`.
        line_width: box line width in the pictures (default: grows with the image size).
        project, name, exist_ok: the run directory (created with the first result).
        verbose: 1 prints a line per image, 0 nothing.

    Returns:
        A `PredictionResult`.

    Raises:
        ValueError: no readable image at all (no run directory is made).
    """
    from keras_yolov7.engine.weights import inference_model_in
    from keras_yolov7.models.yolov7_image_converter import square_input_size
    from keras_yolov7.engine.weights import load_model
    from keras_yolov7.models.image_inputs import NotAnImageError
    from keras_yolov7.models.image_inputs import read_image

    files = find_images(source)
    model = load_model(weights) if isinstance(weights, (str, os.PathLike)) else weights
    size = square_input_size(model, image_size)
    model, precision_line = inference_model_in(model, precision)
    if verbose:
        print(precision_line)
    model.set_prediction_settings(
        confidence_threshold=conf, iou_threshold=iou, max_detections=max_det, multi_label=False
    )
    model.preprocessor.image_size = (size, size)
    names = model.class_names or [str(i) for i in range(model.num_classes)]
    writer = _Writer(
        names, files, dict(project=project, name=name, exist_ok=exist_ok), save, save_txt,
        save_conf, line_width, verbose,
    )  # fmt: skip
    batcher = _Batcher(model, batch_size, writer)
    for index, path in enumerate(files):
        try:
            image = read_image(path)
        except NotAnImageError as error:
            logger.warning("skipping %s", error)
            writer.skipped.append(path)
            continue
        padded, scale, pad = model.preprocessor.letterbox(image)
        batcher.add(index, path, image, padded, scale, pad)
    batcher.flush_all()
    if not writer.records:
        shown = " ".join(os.fspath(s) for s in ([source] if isinstance(source, (str, os.PathLike)) else source))
        raise ValueError(
            f"no images in {shown}: {len(writer.skipped)} file(s), none readable as an image"
        )
    records = [writer.records[i] for i in sorted(writer.records)]
    if save_json:
        shown = [{k: v for k, v in r.items() if k not in ("input_size", "milliseconds")} for r in records]
        write_text(
            writer.run_dir / "predictions.json",
            "[\n" + ",\n".join(json.dumps(r) for r in shown) + "\n]\n",
        )
    return PredictionResult(writer.run_dir, records, writer.skipped)


class _Batcher:
    """Groups letterboxed images of one shape into batches of up to `batch_size`."""

    def __init__(self, model, batch_size, writer):
        self.model = model
        self.batch_size = batch_size
        self.writer = writer
        self.pending = {}

    def add(self, index, path, image, padded, scale, pad):
        group = self.pending.setdefault(padded.shape, [])
        group.append((index, path, image, padded, scale, pad))
        if len(group) == self.batch_size:
            self.flush(padded.shape)

    def flush_all(self):
        for shape in list(self.pending):
            self.flush(shape)

    def flush(self, shape):
        group = self.pending.pop(shape)
        inputs = {
            "images": np.stack([item[3] for item in group]),
            "scale": np.array([item[4] for item in group], np.float32),
            "pad": np.array([item[5] for item in group], np.float32),
            "original_size": np.array([item[2].shape[:2] for item in group], np.int32),
        }
        start = time.perf_counter()
        outputs = self.model.predict(inputs, batch_size=len(group), verbose=0)
        milliseconds = (time.perf_counter() - start) * 1000 / len(group)
        for i, (index, path, image, padded, _, _) in enumerate(group):
            count = int(outputs["num_detections"][i])
            detections = {
                "boxes": np.asarray(outputs["boxes"][i, :count]),
                "scores": np.asarray(outputs["confidence"][i, :count]),
                "labels": np.asarray(outputs["labels"][i, :count]),
            }
            self.writer.write(index, path, image, padded.shape, detections, milliseconds)


class _Writer:
    """Saves each image's results as they come and prints a line per image."""

    def __init__(self, names, files, run, save, save_txt, save_conf, line_width, verbose):
        self.names = names
        self.total = len(files)
        self.output_names = _output_names(files)
        self.run = run
        self.run_dir = None  # created with the first result: a run without images leaves none
        self.save, self.save_txt, self.save_conf = save, save_txt, save_conf
        self.line_width = line_width
        self.verbose = verbose
        self.records = {}
        self.skipped = []

    def write(self, index, path, image, input_shape, detections, milliseconds):
        from keras_yolov7.visualization import draw_detections

        if self.run_dir is None:
            self.run_dir = new_run_directory(**self.run)
        height, width = image.shape[:2]
        if self.verbose:
            counts = {}
            for label in detections["labels"]:
                counts[self.names[int(label)]] = counts.get(self.names[int(label)], 0) + 1
            found = ", ".join(f"{n} {name}" for name, n in counts.items()) or "no detections"
            print(
                f"image {index + 1}/{self.total} {path} ({width}x{height}, input "
                f"{input_shape[1]}x{input_shape[0]}): {found}, {milliseconds:.1f} ms",
                flush=True,
            )
        output = self.run_dir / self.output_names[index]
        if self.save:
            picture = draw_detections(
                image,
                {
                    "boxes": detections["boxes"],
                    "labels": detections["labels"],
                    "confidence": detections["scores"],
                },
                class_names=self.names,
                line_width=self.line_width,
            )
            with atomic_path(output) as temporary:
                picture.save(temporary)
        if self.save_txt:
            labels = self.run_dir / "labels"
            labels.mkdir(exist_ok=True)
            write_text(
                labels / f"{pathlib.Path(self.output_names[index]).stem}.txt",
                _yolo_lines(detections, width, height, self.save_conf),
            )
        self.records[index] = {
            "image": str(path),
            "width": width,
            "height": height,
            "detections": [
                {
                    "box": [round(float(v), 2) for v in box],
                    "score": round(float(score), 5),
                    "class_id": int(label),
                    "class_name": self.names[int(label)],
                }
                for box, score, label in zip(
                    detections["boxes"], detections["scores"], detections["labels"]
                )
            ],
            "input_size": (int(input_shape[1]), int(input_shape[0])),
            "milliseconds": milliseconds,
        }


def _yolo_lines(detections, width, height, save_conf):
    """YOLO label lines: `class x_center y_center width height [score]`, normalised."""
    lines = []
    for box, score, label in zip(detections["boxes"], detections["scores"], detections["labels"]):
        x1, y1, x2, y2 = (float(v) for v in box)
        values = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
        line = f"{int(label)} " + " ".join(f"{v:.6f}" for v in values)
        lines.append(line + (f" {float(score):.5f}" if save_conf else ""))
    return "".join(line + "\n" for line in lines)


def _output_names(files):
    """The picture file name of each source file: its own name, numbered when taken."""
    names, used = [], set()
    for path in files:
        suffix = path.suffix if path.suffix.lower() in KEPT_SUFFIXES else ".png"
        name, number = f"{path.stem}{suffix}", 2
        while name in used:
            name, number = f"{path.stem}_{number}{suffix}", number + 1
        used.add(name)
        names.append(name)
    return names
