"""`keras-yolov7 val`: COCO mAP of a model on a dataset, with the per-class table and plots
(`keras_yolov7.engine.evaluate`)."""

import argparse

from keras_yolov7.cli import arguments

EPILOG = """\
examples:
  keras-yolov7 val --weights runs/train/exp/weights/best.keras --data data.yaml
  keras-yolov7 val --weights yolov7.pt --data coco/annotations/instances_val2017.json --save-json

run directory (PROJECT/NAME): args.yaml, PR_curve.png, F1_curve.png, confusion_matrix.png,
val_batch0-2.png (labels beside predictions), predictions.json (--save-json, COCO results format)
"""


HELP = "evaluate a model: COCO mAP, per-class table, plots"


def add_parser(commands):
    parser = commands.add_parser(
        "val",
        help=HELP,
        description="Evaluate a model on a dataset split the way the official test.py does: "
        "letterboxed images, class-aware NMS at a low threshold (multi-label), COCO box metrics "
        "on the original image pixels.",
        epilog=EPILOG,
        formatter_class=arguments.Formatter,
    )
    arguments.add_weights(parser)
    arguments.add_dataset(parser, "split to evaluate (data YAML key, VOC image set)")
    arguments.add_image_size(parser, "the model's training size")
    parser.add_argument(
        "--batch", type=arguments.positive_int, default=32, metavar="N", help="images per batch"
    )
    arguments.add_inference_precision(parser)
    arguments.add_nms_options(parser, conf=0.001, iou=0.65, max_det=300)
    parser.add_argument(
        "--plots",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write PR / F1 curves, the confusion matrix and val_batch pictures",
    )
    parser.add_argument(
        "--save-json",
        action="store_true",
        help="write the detections as COCO results JSON (predictions.json)",
    )
    arguments.add_run_directory(parser, "runs/val")
    arguments.add_backend(parser)
    parser.set_defaults(run=run)


def run(args):
    from keras_yolov7 import engine
    from keras_yolov7.cli.reports import print_evaluation

    result = engine.evaluate(
        args.weights,
        args.data,
        split=args.split,
        image_dir=args.image_dir,
        allow_outside_root=args.allow_outside_root,
        image_size=args.image_size,
        batch_size=args.batch,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        precision=args.precision,
        plots=args.plots,
        save_json=args.save_json,
        project=args.project,
        name=args.name,
        exist_ok=args.exist_ok,
    )
    print_evaluation(result.metrics, result.class_names)
    print(f"results saved to {result.run_dir}")
    if result.predictions is not None:
        print(f"  detections: {result.predictions}")
