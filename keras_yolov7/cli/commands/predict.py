"""`keras-yolov7 predict`: detections on image files, folders and globs, drawn and saved."""

import json
import sys
import time

from keras_yolov7.cli import arguments
from keras_yolov7.cli.errors import CLIError

# Pictures keep their file type when Pillow writes it well; others are saved as PNG.
KEPT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

EPILOG = """\
examples:
  keras-yolov7 predict --weights runs/train/exp/weights/best.keras --source images/
  keras-yolov7 predict --weights yolov7.pt --source street.jpg "shots/*.png" --conf 0.4 --save-json

run directory (PROJECT/NAME): one picture per image with boxes, class names and scores, named
like the image; predictions.json (--save-json): per image its path, size and detections, boxes
xyxy in original image pixels.
"""


def add_parser(commands):
    parser = commands.add_parser(
        "predict",
        help="detect objects in images; save pictures (and JSON)",
        description="Run a model on images of any size and aspect ratio (grayscale, palette and "
        "RGBA images are converted to RGB), letterboxed by the model's preprocessor: the longer "
        "side to --image-size, padded to a square with gray. Boxes are drawn on the original "
        "images.",
        epilog=EPILOG,
        formatter_class=arguments.Formatter,
    )
    arguments.add_weights(parser)
    parser.add_argument(
        "--source",
        nargs="+",
        required=True,
        metavar="PATH",
        help="image files, folders (their files, not recursive) and glob patterns; files that "
        "are not images are skipped with a warning",
    )
    arguments.add_image_size(parser, "the model's training size")
    arguments.add_inference_precision(parser)
    arguments.add_nms_options(parser, conf=0.25, iou=0.45, max_det=300)
    parser.add_argument(
        "--batch",
        type=arguments.positive_int,
        default=1,
        metavar="N",
        help="images per forward pass (images of the same letterboxed shape are batched)",
    )
    parser.add_argument(
        "--save-json", action="store_true", help="write the detections to predictions.json"
    )
    parser.add_argument("--no-save", action="store_true", help="do not save the pictures")
    parser.add_argument(
        "--line-width",
        type=arguments.positive_int,
        default=None,
        metavar="PIXELS",
        help="box line width (default: grows with the image size)",
    )
    arguments.add_run_directory(parser, "runs/predict")
    arguments.add_backend(parser)
    parser.set_defaults(run=run)


def run(args):
    from keras_yolov7.cli import images as image_files
    from keras_yolov7.cli.weights import inference_model_in
    from keras_yolov7.cli.weights import input_size
    from keras_yolov7.cli.weights import load_model
    from keras_yolov7.models.image_inputs import NotAnImageError
    from keras_yolov7.models.image_inputs import read_image

    files = image_files.find_files(args.source)
    model = load_model(args.weights)
    size = input_size(model, args.image_size)
    model, precision_line = inference_model_in(model, args.precision)
    print(precision_line)
    model.set_prediction_settings(
        confidence_threshold=args.conf,
        iou_threshold=args.iou,
        max_detections=args.max_det,
        multi_label=False,
    )
    names = model.class_names or [str(i) for i in range(model.num_classes)]
    writer = _Writer(args, names, files)
    batcher = _Batcher(model, args.batch, writer)
    model.preprocessor.image_size = (size, size)
    for index, path in enumerate(files):
        try:
            image = read_image(path)
        except NotAnImageError as error:
            print(f"warning: skipping {error}", file=sys.stderr)
            writer.skipped += 1
            continue
        padded, scale, pad = model.preprocessor.letterbox(image)
        batcher.add(index, path, image, padded, scale, pad)
    batcher.flush_all()
    if writer.done == 0:
        raise CLIError(
            f"no images in {' '.join(args.source)}: {writer.skipped} file(s), none readable as "
            "an image"
        )
    writer.finish()


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
        import numpy as np

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
    """Prints a line per image, saves the pictures and collects the JSON records."""

    def __init__(self, args, names, files):
        self.args = args
        self.run_dir = None  # created with the first result, so a run without images leaves none
        self.names = names
        self.total = len(files)
        self.output_names = _output_names(files)
        self.records = {}
        self.done = 0
        self.skipped = 0

    def write(self, index, path, image, input_shape, detections, milliseconds):
        from keras_yolov7.cli.runs import new_run_directory
        from keras_yolov7.visualization import draw_detections

        if self.run_dir is None:
            self.run_dir = new_run_directory(self.args.project, self.args.name, self.args.exist_ok)
        self.done += 1
        height, width = image.shape[:2]
        counts = {}
        for label in detections["labels"]:
            counts[self.names[int(label)]] = counts.get(self.names[int(label)], 0) + 1
        found = ", ".join(f"{n} {name}" for name, n in counts.items()) or "no detections"
        print(
            f"image {index + 1}/{self.total} {path} ({width}x{height}, input "
            f"{input_shape[1]}x{input_shape[0]}): {found}, {milliseconds:.1f} ms",
            flush=True,
        )
        if not self.args.no_save:
            picture = draw_detections(
                image,
                {
                    "boxes": detections["boxes"],
                    "labels": detections["labels"],
                    "confidence": detections["scores"],
                },
                class_names=self.names,
                line_width=self.args.line_width,
            )
            picture.save(self.run_dir / self.output_names[index])
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
        }

    def finish(self):
        print(f"{self.done} image(s), {self.skipped} skipped; results saved to {self.run_dir}")
        if self.args.save_json:
            path = self.run_dir / "predictions.json"
            records = [json.dumps(self.records[i]) for i in sorted(self.records)]
            with open(path, "w") as file:
                file.write("[\n" + ",\n".join(records) + "\n]\n")
            print(f"  detections: {path} (boxes xyxy in original image pixels)")


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
