"""`keras-yolov7 train`: the official YOLOv7 recipe on a dataset, into a run directory."""

import argparse
import dataclasses
import math
import os

from keras_yolov7.cli import arguments
from keras_yolov7.cli.errors import CLIError
from keras_yolov7.models.configs import ARCHITECTURES

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

several devices (docs/distributed.md): --batch is the global batch, split evenly over them;
  TensorFlow uses tf.distribute.MirroredStrategy (one host), JAX keras.distribution.DataParallel
  (one host, or several with --distribute multi-worker); the torch backend trains on one device.

run directory (PROJECT/NAME, numbered exp, exp2, ...):
  args.yaml           the arguments and the values they resolved to
  train_batch.png     augmented training samples with their boxes (check the labels by eye)
  results.csv         one row per epoch: losses, then val_mAP, val_mAP50, ... (NA between
                      evaluations)
  results.png         the curves of results.csv
  PR_curve.png, F1_curve.png, confusion_matrix.png, val_batch0-2.png
                      evaluation plots of the best weights
  weights/last.keras  the EMA weights after the last epoch
  weights/best.keras  the EMA weights of the best validation mAP@0.5:0.95
  data/               --data synthetic only: the generated dataset
"""


def add_parser(commands):
    parser = commands.add_parser(
        "train",
        help="train on a dataset (YOLO data YAML, COCO JSON, Pascal VOC or synthetic)",
        description="Train a YOLOv7 detector with the official recipe: SGD with warmup, cosine "
        "schedule and gradient accumulation to a batch of 64, EMA weights, the lead-guided "
        "OTA loss and the mosaic / mixup / perspective / HSV / flip augmentations of the "
        "preset's family. Evaluates COCO mAP on the validation set and keeps the best weights.",
        epilog=EPILOG,
        formatter_class=arguments.Formatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        required=True,
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
        help="train in mixed precision (auto: float16 on a GPU, else bfloat16; default float32)",
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
    parser.set_defaults(run=run)


def run(args):
    import keras

    from keras_yolov7.training import use_mixed_precision

    # First: JAX's multi-host set-up (jax.distributed.initialize) must run before JAX computes.
    distribution = _distribution(args)
    previous_policy = keras.config.dtype_policy()
    try:
        if args.mixed_precision is not None:
            policy = use_mixed_precision(
                None if args.mixed_precision == "auto" else args.mixed_precision
            )
            print(f"mixed precision: {policy}")
        with distribution.scope():
            _train(args, distribution)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _distribution(args):
    """The `TrainingDistribution` of --distribute / --devices / --sync-bn, or a CLIError."""
    import keras

    from keras_yolov7.training import make_distribution

    backend = keras.backend.backend()
    engine_backends = {"data-parallel": "jax", "mirrored": "tensorflow"}
    if backend == "torch" and args.distribute not in ("auto", "none"):
        raise CLIError(
            f"--distribute {args.distribute} is not available on the torch backend (Keras has no "
            "multi-device trainer for torch): use --backend jax or tensorflow"
        )
    needed = engine_backends.get(args.distribute)
    if needed is not None and backend != needed:
        other = "data-parallel" if backend == "jax" else "mirrored"
        raise CLIError(
            f"--distribute {args.distribute} needs the {needed} backend, but Keras runs on "
            f"{backend}: use --distribute {other} (or --backend {needed})"
        )
    if args.sync_bn and args.distribute == "none":
        raise CLIError("--sync-bn synchronises several replicas, but --distribute is none")
    devices = args.devices
    try:
        distribution = make_distribution(args.distribute, devices, args.sync_bn)
    except ValueError as error:
        given = f"--distribute {args.distribute}"
        if devices is not None:
            given += f" --devices {_shown(devices)}"
        raise CLIError(f"{given}: {error}") from None
    if backend == "tensorflow" and args.jit and distribution.strategy == "mirrored":
        raise CLIError(
            "--jit: Keras leaves XLA off under tf.distribute (jit_compile='auto'), and XLA with "
            f"--distribute {distribution.strategy} is not supported here; drop --jit or use "
            "--backend jax (which always compiles)"
        )
    return distribution


def _shown(devices):
    return str(devices) if isinstance(devices, int) else ",".join(devices)


@dataclasses.dataclass
class _Plan:
    """What the arguments resolve to, checked before anything is written."""

    preset: str
    image_size: int
    stride: int
    source: object  # the --weights model, or None
    augmentation: object  # AugmentationConfig
    optimizer_hyp: dict
    loss_hyp: dict
    notes: list


def _plan(args):
    from keras_yolov7.cli import hyperparameters
    from keras_yolov7.data import AugmentationConfig

    optimizer_hyp, loss_hyp, augmentation_hyp, notes = hyperparameters.route_hyperparameters(
        hyperparameters.parse_hyperparameters(args.hyp)
    )
    if args.no_val and args.val_data is not None:
        raise CLIError("--val-data and --no-val contradict each other")
    for name, path in (("--data", args.data), ("--val-data", args.val_data)):
        if path is not None and path != "synthetic" and not os.path.exists(path):
            raise CLIError(f"{name} {path!r} does not exist")
    source = _load_start_weights(args.weights)
    preset = _resolve_preset(args.preset, source)
    image_size = args.image_size or ARCHITECTURES[preset]["input_size"]
    stride = max(ARCHITECTURES[preset]["strides"])
    if image_size % stride:
        raise CLIError(
            f"--image-size {image_size} is not a multiple of {preset}'s largest stride {stride}; "
            f"use e.g. {max(1, round(image_size / stride)) * stride}"
        )
    augmentation = dataclasses.replace(AugmentationConfig.for_preset(preset), **augmentation_hyp)
    return _Plan(preset, image_size, stride, source, augmentation, optimizer_hyp, loss_hyp, notes)


def _train(args, distribution):
    import keras

    from keras_yolov7.cli.hyperparameters import LOSS_KEYS
    from keras_yolov7.cli.runs import new_run_directory
    from keras_yolov7.cli.runs import write_args
    from keras_yolov7.data import make_train_dataset
    from keras_yolov7.data import plot_augmented_samples
    from keras_yolov7.losses import YOLOv7Loss
    from keras_yolov7.training import HYPERPARAMETERS
    from keras_yolov7.training import PRESET_FAMILIES
    from keras_yolov7.training import make_training_setup

    plan = _plan(args)
    preset, image_size, stride = plan.preset, plan.image_size, plan.stride
    try:
        distribution.per_replica_batch_size(args.batch)
    except ValueError:
        raise CLIError(
            f"--batch {args.batch} does not split evenly over {distribution.num_replicas} "
            f"devices: use a multiple of {distribution.num_replicas} (--batch is the global batch)"
        ) from None
    # A dataset on disk is read (and refused) before anything is written; the synthetic one is
    # written into the run directory.
    run_dir = None
    if args.data == "synthetic":
        run_dir = new_run_directory(args.project, args.name, args.exist_ok)
    train_set, val_set, data_paths = _read_data(args, run_dir, image_size)
    run_dir = run_dir or new_run_directory(args.project, args.name, args.exist_ok)
    print(f"run directory: {run_dir}")
    for note in plan.notes:
        print(note)
    # Several replicas get equal shares of every batch: the last, incomplete one is dropped.
    drop_remainder = distribution.num_replicas > 1
    if drop_remainder and len(train_set) < args.batch:
        raise CLIError(
            f"--batch {args.batch} is larger than the {len(train_set)} training images, and "
            f"training on {distribution.num_replicas} devices uses whole batches only"
        )
    keras.utils.set_random_seed(args.seed)
    model = distribution.prepare_model(
        _build_model(preset, train_set, plan.source, args.weights, image_size)
    )

    def train_pipeline():
        return make_train_dataset(
            train_set,
            image_size=image_size,
            batch_size=args.batch,
            max_boxes=args.max_boxes,
            augmentation=plan.augmentation,
            seed=args.seed,
            stride=stride,
            drop_remainder=drop_remainder,
        )

    # A pipeline of its own, so that drawing it leaves the training passes as they would be.
    preview = run_dir / "train_batch.png"
    plot_augmented_samples(
        train_pipeline(), preview, model.class_names, num_images=min(16, len(train_set))
    )
    print(f"augmented samples: {preview}")
    train_data = train_pipeline()
    if drop_remainder:
        steps = len(train_set) // args.batch
    else:
        steps = math.ceil(len(train_set) / args.batch)

    optimizer, recipe_callbacks = make_training_setup(
        model,
        epochs=args.epochs,
        steps_per_epoch=steps,
        batch_size=args.batch,
        **plan.optimizer_hyp,
    )
    loss = YOLOv7Loss.from_detector(model, **plan.loss_hyp)
    model.compile(
        optimizer=optimizer, loss=loss, jit_compile="auto" if args.jit is None else args.jit
    )
    write_args(
        run_dir / "args.yaml",
        args,
        preset=preset,
        image_size=image_size,
        num_classes=model.num_classes,
        class_names=list(model.class_names),
        data_paths={k: str(v) for k, v in data_paths.items()},
        hyperparameters={
            **HYPERPARAMETERS[PRESET_FAMILIES[preset]],
            **plan.optimizer_hyp,
            **{key: getattr(loss, key) for key in LOSS_KEYS},
        },
        augmentation=dataclasses.asdict(plan.augmentation),
        distribution={
            "strategy": distribution.strategy,
            "replicas": distribution.num_replicas,
            "devices": list(distribution.devices),
            "sync_bn": distribution.sync_batchnorm,
        },
    )
    callbacks, evaluation, checkpoints = _callbacks(
        args, run_dir, model, val_set, image_size, stride
    )
    print(
        f"training {preset} ({model.num_classes} classes) at {image_size} px for {args.epochs} "
        f"epochs of {steps} batches of {args.batch} on {keras.backend.backend()}, "
        f"{distribution.describe()}"
    )
    # Recipe callbacks (ModelEMA) first: evaluation and checkpoints then see the EMA weights.
    model.fit(
        train_data,
        epochs=args.epochs,
        callbacks=recipe_callbacks + callbacks,
        shuffle=False,  # the pipeline shuffles itself
        verbose=1,
    )
    _finish(args, run_dir, model, val_set, image_size, stride, evaluation, checkpoints)


def _load_start_weights(weights):
    from keras_yolov7.cli.weights import load_model

    if weights is None:
        return None
    source = load_model(weights)
    if source.fused:
        raise CLIError(
            f"{weights} is a fused (inference-only) model; train from the training form (convert "
            "without --fuse)"
        )
    if not isinstance(source.architecture, str) or source.architecture not in ARCHITECTURES:
        raise CLIError(
            f"{weights} has a custom architecture; the command line trains the presets "
            f"{list(ARCHITECTURES)} (use the Python API for others)"
        )
    return source


def _resolve_preset(preset, source):
    if source is None:
        return preset or DEFAULT_PRESET
    if preset is not None and preset != source.architecture:
        raise CLIError(f"--weights holds a {source.architecture} model but --preset is {preset}")
    return source.architecture


def _read_data(args, run_dir, image_size):
    """`(train DetectionDataset, val DetectionDataset or None, {name: path})`; `run_dir` is
    where `--data synthetic` is written (None for a dataset on disk)."""
    from keras_yolov7.cli import data_sources

    if args.data == "synthetic":
        from keras_yolov7.datasets import write_synthetic_dataset

        num_train, num_val = args.synthetic_images
        written = write_synthetic_dataset(
            run_dir / "data",
            num_train=num_train,
            num_val=0 if args.no_val else num_val,
            image_size=image_size,
            seed=args.seed,
        )
        train_path, train_split, train_images = written["train_annotations"], args.train_split, None
        val_path, val_split, val_images = written["val_annotations"], args.val_split, None
    else:
        train_path, train_split, train_images = args.data, args.train_split, args.image_dir
        val_path, val_split, val_images = None, args.val_split, args.val_image_dir
        if not args.no_val:
            val_path, val_split = data_sources.validation_source(
                args.data, args.val_data, args.val_split
            )
    train_set = data_sources.read_split(
        train_path, train_split, train_images, args.allow_outside_root
    )
    print(data_sources.describe(train_set, f"train ({train_path})"))
    paths = {"train": train_path}
    if args.no_val:
        return train_set, None, paths
    if (
        val_images is None
        and args.val_data is None
        and args.image_dir
        and str(val_path).endswith(".json")
    ):
        raise CLIError("--image-dir is given for the training JSON: give --val-image-dir too")
    val_set = data_sources.read_split(val_path, val_split, val_images, args.allow_outside_root)
    print(data_sources.describe(val_set, f"val ({val_path})"))
    if list(val_set.class_names) != list(train_set.class_names):
        raise CLIError(
            f"the validation classes {val_set.class_names[:8]} differ from the training classes "
            f"{train_set.class_names[:8]}"
        )
    paths["val"] = val_path
    return train_set, val_set, paths


def _build_model(preset, dataset, source, weights, image_size):
    import keras_yolov7 as kyv7
    from keras_yolov7.cli.weights import model_for_dataset

    if source is None:
        return kyv7.YOLOv7ObjectDetector.from_preset(
            preset,
            num_classes=dataset.num_classes,
            class_names=dataset.class_names,
            image_size=image_size,
            name=preset,
        )
    model = model_for_dataset(source, dataset.num_classes, dataset.class_names)
    model.preprocessor.image_size = (image_size, image_size)
    note = ""
    if source.num_classes != dataset.num_classes:
        note = (
            f"; {weights} has {source.num_classes} classes, the dataset {dataset.num_classes}: "
            "the heads' class outputs start fresh"
        )
    print(f"starting from the weights of {weights}{note}")
    return model


def _callbacks(args, run_dir, model, val_set, image_size, stride):
    import keras

    from keras_yolov7.cli.checkpoints import RunCheckpoints
    from keras_yolov7.data import make_val_dataset
    from keras_yolov7.evaluation import COCOEvaluationCallback

    evaluation = None
    callbacks = []
    if val_set is not None:
        val_data = make_val_dataset(
            val_set, image_size=image_size, batch_size=args.batch, stride=stride
        )
        evaluation = COCOEvaluationCallback(
            val_data,
            val_set,
            interval=args.val_interval,
            restore_best_weights=True,
            plot_dir=str(run_dir),
        )
        callbacks.append(evaluation)
    checkpoints = RunCheckpoints(run_dir / "weights", evaluation)
    callbacks += [checkpoints, keras.callbacks.CSVLogger(str(run_dir / "results.csv"))]
    return callbacks, evaluation, checkpoints


def _finish(args, run_dir, model, val_set, image_size, stride, evaluation, checkpoints):
    from keras_yolov7.cli.reports import print_evaluation
    from keras_yolov7.evaluation import evaluate_model
    from keras_yolov7.evaluation.plots import plot_results

    plot_results(str(run_dir / "results.csv"), str(run_dir / "results.png"))
    if evaluation is not None:
        result = evaluation.last_result
        last_evaluated = args.epochs - 1
        if evaluation.best_epoch != last_evaluated:
            # The plots in the run directory are of the last evaluation: redo them for the best
            # weights, which the model holds again (restore_best_weights).
            from keras_yolov7.data import make_val_dataset

            print(f"evaluating the best weights (epoch {evaluation.best_epoch + 1})")
            val_data = make_val_dataset(
                val_set, image_size=image_size, batch_size=args.batch, stride=stride
            )
            result = evaluate_model(model, val_data, val_set, plot_dir=str(run_dir))
        print(f"best weights: epoch {evaluation.best_epoch + 1} of {args.epochs}")
        print_evaluation(result, val_set.class_names)
    print(f"results saved to {run_dir}")
    print(f"  weights:  {checkpoints.last}" + (f", {checkpoints.best}" if evaluation else ""))
    print(f"  curves:   {run_dir / 'results.csv'}, {run_dir / 'results.png'}")
    if evaluation is not None:
        print(
            f"  plots:    {run_dir}/PR_curve.png, F1_curve.png, confusion_matrix.png, "
            "val_batch*.png"
        )
