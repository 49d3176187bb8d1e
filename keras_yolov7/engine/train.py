"""Training as a workflow: a dataset in, a run directory out; and resuming an interrupted run.

`train(data, ...)` trains with the official recipe (`make_training_setup`: YOLOv7SGD, warmup,
cosine schedule, accumulation, EMA; the YOLOv7 loss; the training pipeline with the family's
augmentations), validates with COCO metrics and writes the run directory:

    args.yaml            every argument and what it resolved to
    train_batch.png      the first training batch with its boxes
    results.csv          one row per epoch (columns: `results_columns`)
    results.png          its curves
    PR_curve.png, F1_curve.png, confusion_matrix.png, val_batch0-2.png   plots of the best weights
    weights/last.keras   the EMA weights of the last epoch (float32, no optimizer)
    weights/best.keras   the EMA weights of the best validation mAP@0.5:0.95
    weights/training_state.npz   what `resume` continues from (see `training_state`)
    data/                the generated dataset (data="synthetic")

`resume(run)` continues an interrupted run where its last finished epoch left it and ends with
the weights the uninterrupted run would have (see docs/training.md for how close per backend).
The command line's `keras-yolov7 train` calls `train` and `resume` with its parsed arguments.
"""

import contextlib
import dataclasses
import logging
import os
import pathlib
import sys

from keras_yolov7.engine import datasets as dataset_sources
from keras_yolov7.engine.runs import latest_run
from keras_yolov7.engine.runs import new_run_directory
from keras_yolov7.engine.runs import read_args
from keras_yolov7.engine.runs import write_args
from keras_yolov7.engine.training_state import STATE_FILE
from keras_yolov7.engine.training_state import load_training_state

logger = logging.getLogger("keras_yolov7.engine")

DEFAULT_PRESET = "yolov7"
DISTRIBUTE = ("auto", "none", "data-parallel", "mirrored", "multi-worker")
MIXED_PRECISION = ("auto", "mixed_float16", "mixed_bfloat16")
# The validation metrics in results.csv, in this order (after the validation losses).
METRIC_COLUMNS = (
    "precision",
    "recall",
    "mAP50",
    "mAP",
    "mAP75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
    "f1",
    "best_f1_confidence",
)
RATE_COLUMNS = ("lr_no_decay", "lr_decay", "lr_bias", "momentum")


@dataclasses.dataclass
class TrainingConfig:
    """Every argument of a training run, as `train` takes them and args.yaml records them.

    Attributes: as `train`'s arguments. `data` and `val_data` are paths (or "synthetic"), or
    None when a `DetectionDataset` was passed.
    """

    data: str = None
    val_data: str = None
    preset: str = None
    weights: str = None
    epochs: int = 300
    batch_size: int = 16
    image_size: int = None
    seed: int = 0
    hyperparameters: dict = None
    max_boxes: int = 200
    train_split: str = "train"
    val_split: str = "val"
    image_dir: str = None
    val_image_dir: str = None
    allow_outside_root: bool = False
    synthetic_images: tuple = (512, 128)
    validate: bool = True
    val_interval: int = 1
    mixed_precision: str = None
    jit_compile: bool = None
    distribute: str = "auto"
    devices: object = None
    sync_bn: bool = False
    project: str = "runs/train"
    name: str = "exp"
    exist_ok: bool = False


@dataclasses.dataclass
class TrainingResult:
    """What `train` and `resume` return.

    Attributes:
        run_dir: the run directory (`pathlib.Path`).
        model: the trained `YOLOv7ObjectDetector`, holding the best EMA weights (the last ones
            without validation).
        best_epoch: 1-based epoch of the best validation mAP@0.5:0.95, or None.
        evaluation: the evaluation of the best weights (`evaluate_detections`' dict), or None.
        rows: results.csv's rows (dicts, one per epoch).
    """

    run_dir: pathlib.Path
    model: object
    best_epoch: int
    evaluation: dict
    rows: list


def train(data, **options):
    """Trains a YOLOv7 detector with the official recipe into a run directory.

    Args:
        data: the training data: a path (a data YAML, a COCO JSON file, a Pascal VOC folder, a
            folder with `annotations/instances_<split>*.json`), "synthetic" (a built-in dataset
            of coloured shapes written into the run directory) or a `DetectionDataset`.
        val_data: the validation data in the same forms; default the `val_split` of `data`
            (for a COCO JSON file, the file named with "val" for "train").
        preset: architecture ("yolov7_tiny", "yolov7", ...); default the one of `weights`,
            else "yolov7".
        weights: start from these weights: a `.keras` / official `.pt` path or a
            `YOLOv7ObjectDetector`; with another class count every weight but the heads' class
            outputs is kept.
        epochs: epochs (default 300).
        batch_size: global batch size (default 16).
        image_size: network input size; default the preset's training size.
        seed: seed of the weights, the data order and the augmentations (default 0).
        hyperparameters: overrides by official name (`lr0`, `lrf`, `momentum`,
            `weight_decay`, `warmup_epochs`, `min_warmup_iterations`, `nominal_batch_size`,
            `box`, `obj`, `cls`, `mosaic`, `mixup`, `fliplr`, ...; see
            `engine.hyperparameters.route_hyperparameters`).
        max_boxes: targets per training sample (default 200).
        train_split, val_split: splits of a data YAML / VOC / COCO folder.
        image_dir, val_image_dir: images folders of COCO JSON files (default: inferred).
        allow_outside_root: read dataset files outside the dataset root.
        synthetic_images: `(train, val)` image counts of data="synthetic".
        validate: validate (COCO mAP, best weights); False writes only last weights.
        val_interval: validate every this many epochs (always after the first and the last).
        mixed_precision: None (float32), "auto", "mixed_float16" or "mixed_bfloat16".
        jit_compile: None (the detector's default), True or False.
        distribute, devices, sync_bn: several devices (`keras_yolov7.training.make_distribution`).
        project, name, exist_ok: the run directory `project/name` (numbered when taken; with
            `exist_ok` an existing one is reused after moving its files aside).
        verbose: 1 (default) prints the run's progress (one line per epoch when stdout is not
            a terminal), 0 nothing.

    Returns:
        A `TrainingResult`.

    Example:

        result = keras_yolov7.engine.train(
            "data.yaml", preset="yolov7_tiny", epochs=100, batch_size=16
        )
        result.model.predict("photo.jpg")
    """
    verbose = options.pop("verbose", 1)
    val_data = options.pop("val_data", None)
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(TrainingConfig)})
    if unknown:
        raise TypeError(f"train() got unexpected arguments {unknown}")
    config = TrainingConfig(
        data=_path_or_none(data),
        val_data=_path_or_none(val_data),
        **{k: v for k, v in options.items() if k != "weights"},
        weights=_path_or_none(options.get("weights")),
    )
    return _Run(config, data, val_data, options.get("weights"), verbose).train()


def resume(run=None, data=None, val_data=None, project="runs/train", verbose=1):
    """Continues an interrupted training run where its last finished epoch left it.

    Everything comes back from the run directory: its arguments (args.yaml) and its training
    state (weights/training_state.npz: raw and EMA weights, optimizer variables, epoch, best
    metric, results so far). The data is read again from the recorded paths and must be the
    same (its fingerprint is compared).

    Args:
        run: the run directory; default the run under `project` whose state was saved last.
        data, val_data: the `DetectionDataset`s, for a run trained on datasets passed from
            Python (there are no paths to read again).
        project: where to look for the latest run when `run` is None.
        verbose: as `train`.

    Returns:
        A `TrainingResult`.

    Raises:
        FileNotFoundError: no run, no args.yaml or no training state.
        ValueError: the run has finished, its state is of an older format or of another
            preset / class count / dataset (each named with the file).
    """
    if run is None:
        run = latest_run(project)
        if run is None:
            raise FileNotFoundError(f"no run with weights/{STATE_FILE} under {project} to resume")
    run_dir = pathlib.Path(run)
    arguments = read_args(run_dir / "args.yaml")
    state_path = run_dir / "weights" / STATE_FILE
    if not state_path.is_file():
        raise FileNotFoundError(
            f"{state_path} does not exist: {run_dir} has no finished epoch to resume from (or "
            "was written by a version without resume)"
        )
    state = load_training_state(state_path)
    config = TrainingConfig(
        **{f.name: arguments[f.name] for f in dataclasses.fields(TrainingConfig) if f.name in arguments}
    )
    config.hyperparameters = {**arguments["hyperparameters"], **arguments["augmentation"]}
    _check_state(state, arguments, state_path, run_dir / "args.yaml")
    if state.epoch >= config.epochs:
        raise ValueError(
            f"{run_dir} finished all {config.epochs} epochs ({state_path} is at epoch "
            f"{state.epoch}): nothing to resume; train a new run from its weights "
            f"({run_dir / 'weights' / 'last.keras'}) to train longer"
        )
    if config.data is None and data is None:
        raise ValueError(
            f"{run_dir} was trained on a dataset passed from Python: pass it again (data=...)"
        )
    data = data if data is not None else config.data
    val_data = val_data if val_data is not None else config.val_data
    return _Run(config, data, val_data, None, verbose).resume(run_dir, arguments, state, state_path)


def _check_state(state, arguments, state_path, args_path):
    for key in ("preset", "num_classes", "image_size", "batch_size", "epochs", "seed"):
        saved, recorded = state.run.get(key), arguments.get(key)
        if saved != recorded:
            raise ValueError(
                f"{state_path} is of a run with {key} {saved!r} but {args_path} says {recorded!r}: "
                "the state belongs to another run"
            )


def _path_or_none(value):
    if value is None or isinstance(value, (str, os.PathLike)):
        return None if value is None else os.fspath(value)
    return None


def _interactive():
    return hasattr(sys.stdout, "isatty") and sys.stdout.isatty()


class _Run:
    """One training run: resolves the arguments, builds everything, trains, finishes."""

    def __init__(self, config, data, val_data, weights, verbose):
        self.config = config
        self.resuming = False
        self.data = data
        self.val_data = val_data
        self.weights = weights
        self.verbose = verbose

    def say(self, line):
        if self.verbose:
            print(line, flush=True)

    # Entry points ---------------------------------------------------------------------------

    def train(self):
        with self._environment():
            self._prepare()
            run_dir = None
            if self.config.data == "synthetic":
                run_dir = self._run_directory()
            self._read_data(run_dir)
            self.run_dir = run_dir or self._run_directory()
            self.say(f"run directory: {self.run_dir}")
            for note in self.notes:
                logger.warning(note)
            self._build_model()
            self._compile()
            self._write_preview()
            self._write_args()
            return self._fit(initial_epoch=0, state=None)

    def resume(self, run_dir, arguments, state, state_path):
        from keras_yolov7.files import remove_temporary_files

        self.run_dir = run_dir
        self.resuming = True
        with self._environment():
            self._prepare()
            self._read_data(run_dir)
            for split, fingerprint in arguments.get("data_fingerprints", {}).items():
                found = self.fingerprints.get(split)
                if found != fingerprint:
                    raise ValueError(
                        f"the {split} data now read ({arguments['data_paths'].get(split, 'given')}) "
                        f"differs from the run's: fingerprint {found}, {run_dir / 'args.yaml'} "
                        f"records {fingerprint}"
                    )
            if self.train_set.num_classes != state.run["num_classes"]:
                raise ValueError(
                    f"{state_path} was trained on {state.run['num_classes']} classes but the "
                    f"data has {self.train_set.num_classes}"
                )
            for folder in (run_dir, run_dir / "weights"):
                remove_temporary_files(folder)
            self._build_model(state=state)
            self._compile()
            self.say(
                f"resuming {run_dir} at epoch {state.epoch + 1} of {self.config.epochs} "
                f"(batch {state.step})"
            )
            return self._fit(initial_epoch=state.epoch, state=state, state_path=state_path)

    # Steps ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _environment(self):
        """The dtype policy and the distribution scope of the run, undone afterwards."""
        import keras

        from keras_yolov7.training import use_mixed_precision

        # First: JAX's multi-host set-up (jax.distributed.initialize) must run before JAX
        # computes anything.
        self.distribution = _distribution(self.config)
        previous_policy = keras.config.dtype_policy()
        try:
            if self.config.mixed_precision is not None:
                choice = self.config.mixed_precision
                policy = use_mixed_precision(None if choice == "auto" else choice)
                self.say(f"mixed precision: {policy}")
            with self.distribution.scope():
                yield
        except KeyboardInterrupt:
            if getattr(self, "run_dir", None) is not None and self.verbose:
                print(
                    f"interrupted: resume with `keras-yolov7 train --resume {self.run_dir}` or "
                    f"keras_yolov7.engine.resume({str(self.run_dir)!r})",
                    file=sys.stderr,
                    flush=True,
                )
            raise
        finally:
            keras.config.set_dtype_policy(previous_policy)

    def _prepare(self):
        """Checks the arguments and resolves what does not need the data."""
        from keras_yolov7.data import AugmentationConfig
        from keras_yolov7.engine.hyperparameters import route_hyperparameters
        from keras_yolov7.models.configs import ARCHITECTURES

        config = self.config
        if not config.validate and self.val_data is not None:
            raise ValueError("val_data is given but validate is False")
        if config.mixed_precision is not None and config.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision must be one of {MIXED_PRECISION} or None, got "
                f"{config.mixed_precision!r}"
            )
        for name in ("epochs", "batch_size", "max_boxes", "val_interval"):
            value = getattr(config, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        for name, value in (("data", self.data), ("val_data", self.val_data)):
            if isinstance(value, (str, os.PathLike)) and value != "synthetic":
                if not os.path.exists(value):
                    raise FileNotFoundError(f"{name} {os.fspath(value)!r} does not exist")
        self.optimizer_hyp, self.loss_hyp, augmentation_hyp, self.notes = route_hyperparameters(
            dict(config.hyperparameters or {})
        )
        # A resumed run's weights come from its training state, not from where it started.
        start = None if self.resuming else self.weights if self.weights is not None else config.weights
        self.source = _start_weights(start)
        self.preset = _resolve_preset(config.preset, self.source, config.weights)
        architecture = ARCHITECTURES[self.preset]
        self.image_size = config.image_size or architecture["input_size"]
        self.stride = max(architecture["strides"])
        if self.image_size % self.stride:
            raise ValueError(
                f"image size {self.image_size} is not a multiple of {self.preset}'s largest "
                f"stride {self.stride}; use e.g. "
                f"{max(1, round(self.image_size / self.stride)) * self.stride}"
            )
        self.augmentation = dataclasses.replace(
            AugmentationConfig.for_preset(self.preset), **augmentation_hyp
        )
        _split_batch(self.distribution, config.batch_size)

    def _run_directory(self):
        return new_run_directory(self.config.project, self.config.name, self.config.exist_ok)

    def _read_data(self, run_dir):
        """Reads (or, for "synthetic", writes into `run_dir` and reads) the datasets."""
        from keras_yolov7.data import DetectionDataset

        config = self.config
        paths = {}
        if self.data == "synthetic":
            written = _synthetic_paths(run_dir, config, self.image_size, self.verbose)
            train_source, train_split, train_images = written["train"], config.train_split, None
            val_source, val_split, val_images = written.get("val"), config.val_split, None
        else:
            train_source, train_split, train_images = self.data, config.train_split, config.image_dir
            val_source, val_split, val_images = self.val_data, config.val_split, config.val_image_dir
            if config.validate and val_source is None and not isinstance(self.data, DetectionDataset):
                val_source, val_split = dataset_sources.validation_source(
                    self.data, None, config.val_split
                )
                if (
                    val_images is None
                    and config.image_dir
                    and str(val_source).lower().endswith(".json")
                ):
                    raise ValueError(
                        "image_dir is given for the training JSON: give val_image_dir too"
                    )
        self.train_set = _dataset(train_source, train_split, train_images, config)
        paths["train"] = train_source
        self.say(dataset_sources.describe_dataset(self.train_set, f"train ({_shown(train_source)})"))
        self.val_set = None
        if config.validate:
            if val_source is None:
                raise ValueError(
                    "training data given as a DetectionDataset needs val_data (or validate=False)"
                )
            self.val_set = _dataset(val_source, val_split, val_images, config)
            paths["val"] = val_source
            self.say(dataset_sources.describe_dataset(self.val_set, f"val ({_shown(val_source)})"))
            if list(self.val_set.class_names) != list(self.train_set.class_names):
                raise ValueError(
                    f"the validation classes {list(self.val_set.class_names)[:8]} differ from the "
                    f"training classes {list(self.train_set.class_names)[:8]}"
                )
        self.data_paths = {
            split: os.path.abspath(path) for split, path in paths.items() if _is_path(path)
        }
        self.fingerprints = {"train": dataset_sources.dataset_fingerprint(self.train_set)}
        if self.val_set is not None:
            self.fingerprints["val"] = dataset_sources.dataset_fingerprint(self.val_set)
        replicas = self.distribution.num_replicas
        self.drop_remainder = replicas > 1
        if self.drop_remainder and len(self.train_set) < config.batch_size:
            raise ValueError(
                f"batch size {config.batch_size} is larger than the {len(self.train_set)} "
                f"training images, and training on {replicas} devices uses whole batches only"
            )

    def _build_model(self, state=None):
        import keras

        import keras_yolov7 as kyv7

        keras.utils.set_random_seed(self.config.seed)
        if state is not None:
            # The class the config names registers when `kyv7.models` is imported (which the
            # command line does on first use).
            model = kyv7.models.YOLOv7ObjectDetector.from_config(state.model_config["config"])
        elif self.source is None:
            model = kyv7.YOLOv7ObjectDetector.from_preset(
                self.preset,
                num_classes=self.train_set.num_classes,
                class_names=self.train_set.class_names,
                image_size=self.image_size,
                name=self.preset,
            )
        else:
            model = self.source.with_classes(self.train_set.num_classes, self.train_set.class_names)
            model.preprocessor.image_size = (self.image_size, self.image_size)
            note = ""
            if self.source.num_classes != self.train_set.num_classes:
                note = (
                    f"; it has {self.source.num_classes} classes, the dataset "
                    f"{self.train_set.num_classes}: the heads' class outputs start fresh"
                )
            self.say(f"starting from the weights of {_shown(self.config.weights or self.source.name)}{note}")
        self.model = self.distribution.prepare_model(model)

    def _compile(self):
        from keras_yolov7.data.train_pipeline import batches_per_epoch
        from keras_yolov7.losses import YOLOv7Loss
        from keras_yolov7.training import make_training_setup
        from keras_yolov7.training.recipe import short_run_advice

        config = self.config
        self.steps = batches_per_epoch(len(self.train_set), config.batch_size, self.drop_remainder)
        optimizer, (self.ema,) = make_training_setup(
            self.model,
            epochs=config.epochs,
            steps_per_epoch=self.steps,
            batch_size=config.batch_size,
            **self.optimizer_hyp,
        )
        self.loss = YOLOv7Loss.from_detector(self.model, **self.loss_hyp)
        self.model.compile(
            optimizer=optimizer,
            loss=self.loss,
            jit_compile="auto" if config.jit_compile is None else config.jit_compile,
        )
        self.optimizer = optimizer
        advice = short_run_advice(
            config.epochs, self.steps, config.batch_size, **self.optimizer_hyp
        )
        if advice:
            logger.warning(advice)

    def _train_pipeline(self, initial_epoch, epochs):
        from keras_yolov7.data import make_train_dataset

        return make_train_dataset(
            self.train_set,
            image_size=self.image_size,
            batch_size=self.config.batch_size,
            max_boxes=self.config.max_boxes,
            augmentation=self.augmentation,
            seed=self.config.seed,
            stride=self.stride,
            drop_remainder=self.drop_remainder,
            epochs=epochs,
            initial_epoch=initial_epoch,
        )

    def _write_preview(self):
        from keras_yolov7.data import plot_augmented_samples

        # The first batch of the first epoch, from a pipeline of its own.
        path = self.run_dir / "train_batch.png"
        plot_augmented_samples(
            self._train_pipeline(0, 1),
            path,
            self.model.class_names,
            num_images=min(16, len(self.train_set)),
        )
        self.say(f"augmented samples: {path}")

    def _write_args(self):
        from keras_yolov7.training import HYPERPARAMETERS
        from keras_yolov7.training import PRESET_FAMILIES
        from keras_yolov7.training.schedule import MIN_WARMUP_ITERATIONS
        from keras_yolov7.training.schedule import NOMINAL_BATCH_SIZE
        from keras_yolov7.training.schedule import accumulation_steps

        config = self.config
        entries = dataclasses.asdict(config)
        entries.update(
            preset=self.preset,
            image_size=self.image_size,
            hyperparameters={
                **HYPERPARAMETERS[PRESET_FAMILIES[self.preset]],
                "min_warmup_iterations": MIN_WARMUP_ITERATIONS,
                "nominal_batch_size": NOMINAL_BATCH_SIZE,
                **self.optimizer_hyp,
                **{key: getattr(self.loss, key) for key in _loss_keys()},
            },
            augmentation=dataclasses.asdict(self.augmentation),
            num_classes=self.model.num_classes,
            class_names=list(self.model.class_names),
            data_paths=self.data_paths,
            data_fingerprints=self.fingerprints,
            steps_per_epoch=self.steps,
            warmup_iterations=self.optimizer.schedule.warmup_iterations,
            accumulate=accumulation_steps(config.batch_size, self.optimizer.nominal_batch_size),
            distribution={
                "strategy": self.distribution.strategy,
                "replicas": self.distribution.num_replicas,
                "devices": list(self.distribution.devices),
                "sync_bn": self.distribution.sync_batchnorm,
            },
        )
        write_args(self.run_dir / "args.yaml", entries)

    def _run_identity(self):
        import keras_yolov7

        return {
            "preset": self.preset,
            "num_classes": self.model.num_classes,
            "image_size": self.image_size,
            "batch_size": self.config.batch_size,
            "epochs": self.config.epochs,
            "seed": self.config.seed,
            "keras_yolov7": keras_yolov7.__version__,
        }

    def _fit(self, initial_epoch, state, state_path=None):
        import keras

        from keras_yolov7.engine.recorder import EpochLog
        from keras_yolov7.engine.recorder import RunRecorder
        from keras_yolov7.engine.training_state import restore_training_state

        config = self.config
        evaluation = self._evaluation()
        recorder = RunRecorder(
            self.run_dir,
            self.ema,
            evaluation,
            results_columns(self.model, evaluation is not None),
            self._run_identity(),
        )
        if state is not None:
            restore_training_state(state, self.model, self.ema, state_path)
            recorder.resume_from(state, self.model)
            if evaluation is not None and state.best is not None:
                evaluation.resume_from(state.best, state.best_epoch)
        callbacks = [self.ema] + ([evaluation] if evaluation else []) + [recorder]
        if self.verbose:
            callbacks.append(EpochLog(self.steps, evaluation, interactive=_interactive()))
        self.say(
            f"training {self.preset} ({self.model.num_classes} classes) at {self.image_size} px "
            f"for {config.epochs} epochs of {self.steps} batches of {config.batch_size} on "
            f"{keras.backend.backend()}, {self.distribution.describe()}"
        )
        self.model.fit(
            self._train_pipeline(initial_epoch, config.epochs),
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=self.steps,
            callbacks=callbacks,
            shuffle=False,  # the pipeline shuffles itself
            verbose=0,
        )
        return self._finish(recorder, evaluation)

    def _evaluation(self):
        from keras_yolov7.evaluation import COCOEvaluationCallback

        if self.val_set is None:
            return None
        return COCOEvaluationCallback(
            self._val_pipeline(),
            self.val_set,
            interval=self.config.val_interval,
            plot_dir=str(self.run_dir),
            verbose=0,
        )

    def _val_pipeline(self):
        from keras_yolov7.data import make_val_dataset

        return make_val_dataset(
            self.val_set,
            image_size=self.image_size,
            batch_size=self.config.batch_size,
            stride=self.stride,
        )

    def _finish(self, recorder, evaluation):
        from keras_yolov7.engine.weights import load_model
        from keras_yolov7.evaluation import evaluate_model
        from keras_yolov7.evaluation.plots import plot_results

        plot_results(str(recorder.results_csv), str(self.run_dir / "results.png"))
        result, best_epoch = None, None
        if evaluation is not None and evaluation.best_epoch is not None:
            best_epoch = evaluation.best_epoch
            # The model holds the last EMA weights; the best ones are in best.keras. The plots
            # in the run directory are of the last evaluation: redo them for the best weights.
            best = load_model(recorder.best)
            self.model.set_weights(best.get_weights())
            self.say(f"evaluating the best weights (epoch {best_epoch + 1} of {self.config.epochs})")
            result = evaluate_model(
                self.model,
                self._val_pipeline(),
                self.val_set,
                verbose=0,
                plot_dir=str(self.run_dir),
                loss=self.model.detection_loss,
            )
        return TrainingResult(
            run_dir=self.run_dir,
            model=self.model,
            best_epoch=None if best_epoch is None else best_epoch + 1,
            evaluation=result,
            rows=list(recorder.rows),
        )


def results_columns(model, validation):
    """The columns of results.csv, in order: `epoch` (from 1); the training losses `loss`
    (the official objective, `(box + obj + cls) * batch_size`), `box_loss`, `obj_loss`,
    `cls_loss` (and `aux_loss`, the auxiliary head's share, for P6 presets); with validation
    the validation losses `val_box_loss`, `val_obj_loss`, `val_cls_loss` (`val_aux_loss`) and
    the metrics `val_precision`, `val_recall`, `val_mAP50`, `val_mAP`, then COCO's others
    (`METRIC_COLUMNS`); last the learning rate of each parameter group and the momentum at the
    epoch's last batch (`lr_no_decay`, `lr_decay`, `lr_bias`, `momentum`)."""
    from keras_yolov7.evaluation.inference import validation_loss_names

    losses = validation_loss_names(model)
    columns = ["epoch", "loss"] + losses
    if validation:
        columns += [f"val_{name}" for name in losses]
        columns += [f"val_{name}" for name in METRIC_COLUMNS]
    return columns + list(RATE_COLUMNS)


def _loss_keys():
    from keras_yolov7.engine.hyperparameters import LOSS_KEYS

    return LOSS_KEYS


def _distribution(config):
    """The `TrainingDistribution` of `distribute` / `devices` / `sync_bn`."""
    import keras

    from keras_yolov7.training import make_distribution

    backend = keras.backend.backend()
    if config.distribute not in DISTRIBUTE:
        raise ValueError(f"distribute must be one of {DISTRIBUTE}, got {config.distribute!r}")
    given = f"distribute={config.distribute!r}"
    if backend == "torch" and config.distribute not in ("auto", "none"):
        raise ValueError(
            f"{given} is not available on the torch backend (Keras has no multi-device trainer "
            "for torch): use the jax or tensorflow backend"
        )
    needed = {"data-parallel": "jax", "mirrored": "tensorflow"}.get(config.distribute)
    if needed is not None and backend != needed:
        other = "data-parallel" if backend == "jax" else "mirrored"
        raise ValueError(
            f"{given} needs the {needed} backend, but Keras runs on {backend}: use "
            f"distribute={other!r} (or the {needed} backend)"
        )
    if config.sync_bn and config.distribute == "none":
        raise ValueError("sync_bn synchronises several replicas, but distribute is 'none'")
    try:
        distribution = make_distribution(config.distribute, config.devices, config.sync_bn)
    except ValueError as error:
        if config.devices is not None:
            given += f", devices={_shown_devices(config.devices)}"
        raise ValueError(f"{given}: {error}") from None
    if backend == "tensorflow" and config.jit_compile and distribution.strategy == "mirrored":
        raise ValueError(
            "jit_compile: Keras leaves XLA off under tf.distribute, and XLA with the "
            f"{distribution.strategy} strategy is not supported here; turn jit off or use the "
            "jax backend (which always compiles)"
        )
    return distribution


def _split_batch(distribution, batch_size):
    try:
        return distribution.per_replica_batch_size(batch_size)
    except ValueError:
        raise ValueError(
            f"batch size {batch_size} does not split evenly over {distribution.num_replicas} "
            f"devices: use a multiple of {distribution.num_replicas} (it is the global batch)"
        ) from None


def _shown_devices(devices):
    return str(devices) if isinstance(devices, int) else ",".join(devices)


def _start_weights(weights):
    """The model to start from (a path is loaded), checked to be trainable, or None."""
    from keras_yolov7.engine.weights import load_model
    from keras_yolov7.models.configs import ARCHITECTURES

    if weights is None:
        return None
    source = load_model(weights) if isinstance(weights, (str, os.PathLike)) else weights
    shown = _shown(weights) if isinstance(weights, (str, os.PathLike)) else source.name
    if source.fused:
        raise ValueError(
            f"{shown} is a fused (inference-only) model; train from the training form (convert "
            "without --fuse)"
        )
    if not isinstance(source.architecture, str) or source.architecture not in ARCHITECTURES:
        raise ValueError(
            f"{shown} has a custom architecture; train() trains the presets {list(ARCHITECTURES)}"
        )
    return source


def _resolve_preset(preset, source, weights):
    from keras_yolov7.models.configs import ARCHITECTURES

    if preset is not None and preset not in ARCHITECTURES:
        raise ValueError(f"unknown preset {preset!r}; expected one of {list(ARCHITECTURES)}")
    if source is None:
        return preset or DEFAULT_PRESET
    if preset is not None and preset != source.architecture:
        raise ValueError(
            f"the weights ({_shown(weights) if weights else source.name}) hold a "
            f"{source.architecture} model but the preset is {preset}"
        )
    return source.architecture


def _synthetic_paths(run_dir, config, image_size, verbose):
    """Writes (or, resuming, finds) the synthetic dataset of a run: `{"train", "val"}` paths."""
    from keras_yolov7.datasets import write_synthetic_dataset

    folder = run_dir / "data"
    annotations = folder / "annotations"
    found = {
        split: annotations / f"instances_{split}.json"
        for split in ("train", "val")
        if (annotations / f"instances_{split}.json").is_file()
    }
    if "train" in found:
        return found
    num_train, num_val = config.synthetic_images
    written = write_synthetic_dataset(
        folder,
        num_train=num_train,
        num_val=num_val if config.validate else 0,
        image_size=image_size,
        seed=config.seed,
        progress=bool(verbose) and _interactive(),
    )
    paths = {"train": written["train_annotations"]}
    if config.validate:
        paths["val"] = written["val_annotations"]
    return paths


def _dataset(source, split, image_dir, config):
    from keras_yolov7.data import DetectionDataset

    if isinstance(source, DetectionDataset):
        return source
    return dataset_sources.read_split(source, split, image_dir, config.allow_outside_root)


def _is_path(value):
    return isinstance(value, (str, os.PathLike))


def _shown(value):
    return os.fspath(value) if _is_path(value) else "given dataset"


