"""`keras-yolov7 val`: COCO mAP of a model on a dataset, with the per-class table and plots."""

import argparse

from keras_yolov7.cli import arguments

EPILOG = """\
examples:
  keras-yolov7 val --weights runs/train/exp/weights/best.keras --data data.yaml
  keras-yolov7 val --weights yolov7.pt --data coco/annotations/instances_val2017.json --save-json

run directory (PROJECT/NAME): args.yaml, PR_curve.png, F1_curve.png, confusion_matrix.png,
val_batch0-2.png (labels beside predictions), predictions.json (--save-json, COCO results format)
"""


def add_parser(commands):
    parser = commands.add_parser(
        "val",
        help="evaluate a model: COCO mAP, per-class table, plots",
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
    from keras_yolov7.cli import data_sources
    from keras_yolov7.cli.reports import print_evaluation
    from keras_yolov7.cli.runs import new_run_directory
    from keras_yolov7.cli.runs import write_args
    from keras_yolov7.cli.weights import check_num_classes
    from keras_yolov7.cli.weights import inference_model_in
    from keras_yolov7.cli.weights import input_size
    from keras_yolov7.cli.weights import load_model
    from keras_yolov7.data import make_val_dataset
    from keras_yolov7.evaluation import evaluate_model

    # The dataset first: bad data is refused without the cost of loading (or converting) weights.
    dataset = data_sources.read_split(
        args.data, args.split, args.image_dir, args.allow_outside_root
    )
    print(data_sources.describe(dataset, f"{args.split} ({args.data})"))
    model = load_model(args.weights)
    size = input_size(model, args.image_size)
    check_num_classes(model, dataset, args.weights, args.data)
    run_dir = new_run_directory(args.project, args.name, args.exist_ok)
    write_args(run_dir / "args.yaml", args, image_size=size)
    model, precision_line = inference_model_in(model, args.precision)
    print(precision_line)
    data = make_val_dataset(
        dataset, image_size=size, batch_size=args.batch, stride=max(model.strides)
    )
    results_file = run_dir / "predictions.json" if args.save_json else None
    print(f"evaluating {args.weights} at {size} px on {len(dataset)} images")
    result = evaluate_model(
        model,
        data,
        dataset,
        plot_dir=str(run_dir) if args.plots else None,
        results_file=None if results_file is None else str(results_file),
        confidence_threshold=args.conf,
        iou_threshold=args.iou,
        max_detections=args.max_det,
    )
    print_evaluation(result, dataset.class_names)
    print(f"results saved to {run_dir}")
    if results_file is not None:
        print(f"  detections: {results_file}")
