"""`keras-yolov7 predict`: detections on image files, folders and globs, drawn and saved
(`keras_yolov7.engine.predict`)."""

from keras_yolov7.cli import arguments

EPILOG = """\
examples:
  keras-yolov7 predict --weights runs/train/exp/weights/best.keras --source images/
  keras-yolov7 predict --weights yolov7.pt --source street.jpg "shots/*.png" --conf 0.4 --save-json

run directory (PROJECT/NAME): one picture per image with boxes, class names and scores, named
like the image; predictions.json (--save-json): per image its path, size and detections, boxes
xyxy in original image pixels; labels/NAME.txt (--save-txt): one line per detection, `class
x_center y_center width height [score]` normalised by the image size (YOLO format).
"""

HELP = "detect objects in images; save pictures (and JSON, text)"


def add_parser(commands):
    parser = commands.add_parser(
        "predict",
        help=HELP,
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
    parser.add_argument(
        "--save-txt",
        action="store_true",
        help="write labels/NAME.txt per image: class x_center y_center width height, normalised",
    )
    parser.add_argument(
        "--save-conf", action="store_true", help="--save-txt: add each detection's score"
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
    from keras_yolov7 import engine

    result = engine.predict(
        args.weights,
        args.source,
        image_size=args.image_size,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        precision=args.precision,
        batch_size=args.batch,
        save=not args.no_save,
        save_json=args.save_json,
        save_txt=args.save_txt,
        save_conf=args.save_conf,
        line_width=args.line_width,
        project=args.project,
        name=args.name,
        exist_ok=args.exist_ok,
    )
    print(
        f"{len(result.records)} image(s), {len(result.skipped)} skipped; results saved to "
        f"{result.run_dir}"
    )
    if args.save_json:
        print(
            f"  detections: {result.run_dir / 'predictions.json'} (boxes xyxy in original "
            "image pixels)"
        )
    if args.save_txt:
        print(f"  labels:     {result.run_dir / 'labels'}")
