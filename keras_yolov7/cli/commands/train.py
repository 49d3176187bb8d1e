"""`keras-yolov7 train`: the official YOLOv7 recipe on a dataset, into a run directory
(`keras_yolov7.engine.train`), or `--resume` an interrupted run (`keras_yolov7.engine.resume`)."""

import argparse
import pathlib
import re

from keras_yolov7.cli import arguments
from keras_yolov7.cli.errors import CLIError
from keras_yolov7.models.configs import ARCHITECTURES

# As keras_yolov7.engine.train's (not imported here: building the parser imports no Keras).
DEFAULT_PRESET = "yolov7"
MIXED_PRECISION = ("auto", "mixed_float16", "mixed_bfloat16")
DISTRIBUTE = ("auto", "none", "data-parallel", "mirrored", "multi-worker")

EPILOG = """\
examples:
  keras-yolov7 train --data data.yaml --preset yolov7_tiny --epochs 300 --batch 16
  keras-yolov7 train --data annotations/instances_train2017.json --weights yolov7.pt --epochs 30
  keras-yolov7 train --data VOCdevkit/VOC2012 --preset yolov7 --val-split val --image-size 512
  keras-yolov7 train --data synthetic --preset yolov7_tiny --image-size 256 --epochs 10 --batch 8
  keras-yolov7 train --data data.yaml --hyp hyp.scratch.p5.yaml --hyp lr0=0.005 mosaic=0.5
  keras-yolov7 train --data data.yaml --preset yolov7 --batch 64 --devices 4 --sync-bn
  keras-yolov7 train --data data.yaml --preset yolov7 --batch 64 --devices gpu:0,gpu:1
  keras-yolov7 train --resume runs/train/exp     (continue an interrupted run)
  keras-yolov7 train --resume                    (the run under --project saved last)

several devices (docs/distributed.md): --batch is the global batch, split evenly over them;
  TensorFlow uses tf.distribute.MirroredStrategy (one host), JAX keras.distribution.DataParallel
  (one host, or several with --distribute multi-worker); the torch backend trains on one device.

run directory (PROJECT/NAME, numbered exp, exp2, ...; every file written atomically):
  args.yaml           the arguments and the values they resolved to
  train_batch.png     the first training batch with its boxes (check the labels by eye)
  results.csv         one row per epoch from 1: loss, box_loss, obj_loss, cls_loss, then
                      val_box_loss, val_obj_loss, val_cls_loss, val_precision, val_recall,
                      val_mAP50, val_mAP, ... (NA between evaluations), then lr_no_decay,
                      lr_decay, lr_bias, momentum
  results.png         the curves of results.csv
  PR_curve.png, F1_curve.png, confusion_matrix.png, val_batch0-2.png
                      evaluation plots of the best weights
  weights/last.keras  the EMA weights after the last epoch
  weights/best.keras  the EMA weights of the best validation mAP@0.5:0.95
  weights/training_state.npz
                      what --resume continues from (raw and EMA weights, optimizer, epoch)
  data/               --data synthetic only: the generated dataset
"""


HELP = "train on a dataset (YOLO data YAML, COCO JSON, Pascal VOC or synthetic)"


def add_parser(commands):
    parser = commands.add_parser(
        "train",
        help=HELP,
        description="Train a YOLOv7 detector with the official recipe: SGD with warmup, cosine "
        "schedule and gradient accumulation to a batch of 64, EMA weights, the lead-guided "
        "OTA loss and the mosaic / mixup / perspective / HSV / flip augmentations of the "
        "preset's family. Evaluates COCO mAP on the validation set and keeps the best weights.",
        epilog=EPILOG,
        formatter_class=arguments.Formatter,
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser):
    """The options of `train` (also parsed alone, to tell the given ones from the defaults)."""
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="RUN",
        help="continue an interrupted run (RUN, or the run under --project whose state was saved "
        "last) exactly where its last finished epoch left it, with its own arguments",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        metavar="PATH",
        help="training data: a data YAML (YOLO txt), a COCO JSON file, a Pascal VOC folder, a "
        "folder with annotations/instances_<split>*.json, or the word `synthetic` (a built-in "
        "dataset of coloured shapes written into the run directory)",
    )
    data.add_argument(
        "--val-data",
        metavar="PATH",
        help="validation data, in any of the --data forms (default: the --val-split of --data; "
        "for a COCO JSON file the file named with 'val' instead of 'train')",
    )
    data.add_argument(
        "--train-split", default="train", metavar="NAME", help="split of --data to train on"
    )
    data.add_argument("--val-split", default="val", metavar="NAME", help="split to validate on")
    data.add_argument(
        "--image-dir", metavar="DIR", help="COCO JSON --data: its images folder (default: inferred)"
    )
    data.add_argument(
        "--val-image-dir",
        metavar="DIR",
        help="COCO JSON --val-data: its images folder (default: inferred)",
    )
    arguments.add_allow_outside_root(data)
    data.add_argument(
        "--synthetic-images",
        nargs=2,
        type=arguments.positive_int,
        default=(512, 128),
        metavar=("TRAIN", "VAL"),
        help="--data synthetic: number of training and validation images (default: 512 128)",
    )
    data.add_argument(
        "--max-boxes",
        type=arguments.positive_int,
        default=200,
        metavar="N",
        help="targets per training sample (a sample with more keeps the largest)",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--preset",
        choices=list(ARCHITECTURES),
        default=None,
        help=f"architecture (default: the one of --weights, else {DEFAULT_PRESET})",
    )
    model.add_argument(
        "--weights",
        metavar="PATH",
        help="start from these weights (.keras or official .pt); with another class count every "
        "weight but the head's class outputs is transferred",
    )

    training = parser.add_argument_group("training")
    training.add_argument(
        "--epochs", type=arguments.positive_int, default=300, metavar="N", help="epochs"
    )
    arguments.add_image_size(training, "the preset's training size, 640 or 1280 for P6 presets")
    training.add_argument(
        "--batch", type=arguments.positive_int, default=16, metavar="N", help="images per batch"
    )
    training.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the weights and the data order"
    )
    training.add_argument(
        "--hyp",
        nargs="+",
        action="extend",
        metavar="FILE|KEY=VALUE",
        help="hyperparameter overrides: official hyp YAML files and/or KEY=VALUE pairs (lr0, "
        "lrf, momentum, weight_decay, warmup_epochs, box, obj, cls, mosaic, mixup, degrees, "
        "translate, scale, hsv_h, fliplr, ...)",
    )
    training.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISION,
        default=None,
        help=(
            "train in mixed precision (auto: float16 on a GPU, bfloat16 on TensorFlow with a "
            "bfloat16 CPU, else float32; default float32)"
        ),
    )
    training.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile the train step with XLA (default: no XLA for TensorFlow on a CPU, where its "
        "oneDNN convolutions are faster; Keras' choice otherwise)",
    )

    devices = parser.add_argument_group("devices")
    devices.add_argument(
        "--distribute",
        choices=DISTRIBUTE,
        default="auto",
        help="multi-device engine: auto (mirrored on tensorflow, data-parallel on jax when "
        "several GPUs / TPUs are visible or --devices chooses several; else none), none (one "
        "device), data-parallel (jax, keras.distribution.DataParallel), mirrored (tensorflow, "
        "tf.distribute.MirroredStrategy), multi-worker (jax, several hosts: reads "
        "KERAS_DISTRIBUTION_JOB_ADDRESSES / _NUM_PROCESSES / _PROCESS_ID or JAX's cluster "
        "detection)",
    )
    devices.add_argument(
        "--devices",
        type=arguments.device_list,
        default=None,
        metavar="N|LIST",
        help="devices to train on: a count (the first N) or names like gpu:0,gpu:1 (default: "
        "every GPU / TPU, with --distribute auto)",
    )
    devices.add_argument(
        "--sync-bn",
        action="store_true",
        help="BatchNormalization statistics over the global batch, synchronised across replicas "
        "(tensorflow; jax data-parallel always uses the global batch statistics)",
    )

    validation = parser.add_argument_group("validation")
    validation.add_argument(
        "--no-val", action="store_true", help="no validation: only weights/last.keras is written"
    )
    validation.add_argument(
        "--val-interval",
        type=arguments.positive_int,
        default=1,
        metavar="EPOCHS",
        help="evaluate every this many epochs (always after the first and the last)",
    )
    arguments.add_run_directory(parser, "runs/train")
    arguments.add_backend(parser)


def run(args):
    from keras_yolov7 import engine

    if args.resume is not None:
        _check_resume_options(args)
        result = engine.resume(
            None if args.resume is True else args.resume, project=args.project
        )
    else:
        if args.data is None:
            raise CLIError("--data is required (or --resume a run)")
        try:
            result = engine.train(**_train_options(args))
        except ValueError as error:
            raise CLIError(_as_options(str(error))) from None
    _print_summary(result)


# engine.train's argument names in its messages, as the options the command line took.
_OPTION_NAMES = (
    (re.compile(r"\bdistribute='([\w-]+)'"), r"--distribute \1"),
    (re.compile(r"\bdistribute is '([\w-]+)'"), r"--distribute is '\1'"),
    (re.compile(r"\bdevices=([\w:]+)"), r"--devices \1"),
    (re.compile(r"^sync_bn\b"), "--sync-bn"),
    (re.compile(r"^jit_compile\b"), "--jit"),
)


def _as_options(message):
    """A message of engine.train with its argument names spelled as the command's options."""
    for pattern, option in _OPTION_NAMES:
        message = pattern.sub(option, message)
    return message


def _train_options(args):
    """`engine.train`'s keyword arguments from the parsed options."""
    from keras_yolov7.engine.hyperparameters import parse_hyperparameters

    return dict(
        data=args.data,
        val_data=args.val_data,
        preset=args.preset,
        weights=args.weights,
        epochs=args.epochs,
        batch_size=args.batch,
        image_size=args.image_size,
        seed=args.seed,
        hyperparameters=parse_hyperparameters(args.hyp),
        max_boxes=args.max_boxes,
        train_split=args.train_split,
        val_split=args.val_split,
        image_dir=args.image_dir,
        val_image_dir=args.val_image_dir,
        allow_outside_root=args.allow_outside_root,
        synthetic_images=tuple(args.synthetic_images),
        validate=not args.no_val,
        val_interval=args.val_interval,
        mixed_precision=args.mixed_precision,
        jit_compile=args.jit,
        distribute=args.distribute,
        devices=args.devices,
        sync_bn=args.sync_bn,
        project=args.project,
        name=args.name,
        exist_ok=args.exist_ok,
    )


def _check_resume_options(args):
    """With --resume the run's own arguments (RUN/args.yaml) are used: an option given besides
    --project and --backend must agree with them, else a CLIError names the first that
    differs."""
    from keras_yolov7.engine.hyperparameters import AUGMENTATION_ALIASES
    from keras_yolov7.engine.runs import latest_run
    from keras_yolov7.engine.runs import plain
    from keras_yolov7.engine.runs import read_args

    run_dir = latest_run(args.project) if args.resume is True else pathlib.Path(args.resume)
    if run_dir is None or not (run_dir / "args.yaml").is_file():
        return  # engine.resume names the problem
    recorded = read_args(run_dir / "args.yaml")
    recorded_hyp = {**recorded.get("hyperparameters", {}), **recorded.get("augmentation", {})}
    options = _train_options(args)
    for dest in sorted(_given_options(args.argv) - {"resume", "project", "backend"}):
        key = OPTION_KEYS.get(dest, dest)
        if key == "hyperparameters":
            same = all(
                recorded_hyp.get(AUGMENTATION_ALIASES.get(k, k)) == v
                for k, v in options[key].items()
            )
        else:
            same = plain(options[key]) == plain(recorded.get(key))
        if not same:
            raise CLIError(
                f"--resume continues {run_dir} with its own arguments, but "
                f"--{dest.replace('_', '-')} differs from {run_dir / 'args.yaml'} ({key}: "
                f"{plain(recorded.get(key, recorded_hyp))}): drop it, or start a new run"
            )


def _given_options(argv):
    """The destinations of the train options given in `argv` (not left at their default)."""
    parser = arguments.Parser(prog="keras-yolov7 train")
    add_arguments(parser)
    unset = object()
    # Options that collect values (--hyp) need a list to extend; they are given when not empty.
    namespace = argparse.Namespace(
        **{
            action.dest: None if isinstance(action, argparse._AppendAction) else unset
            for action in parser._actions
        }
    )
    given = parser.parse_args(argv, namespace)
    return {dest for dest, value in vars(given).items() if value is not unset and value is not None}


# The args.yaml key of each option whose name differs.
OPTION_KEYS = {
    "batch": "batch_size",
    "hyp": "hyperparameters",
    "no_val": "validate",
    "jit": "jit_compile",
}


def _print_summary(result):
    from keras_yolov7.cli.reports import print_evaluation

    run_dir = result.run_dir
    weights = run_dir / "weights"
    if result.evaluation is not None:
        print(f"best weights: epoch {result.best_epoch} of {len(result.rows)}")
        print_evaluation(result.evaluation, result.model.class_names)
    print(f"results saved to {run_dir}")
    best = f", {weights / 'best.keras'}" if result.evaluation is not None else ""
    print(f"  weights:  {weights / 'last.keras'}{best}")
    print(f"  curves:   {run_dir / 'results.csv'}, {run_dir / 'results.png'}")
    if result.evaluation is not None:
        print(
            f"  plots:    {run_dir}/PR_curve.png, F1_curve.png, confusion_matrix.png, "
            "val_batch*.png"
        )
