"""COCOEvaluationCallback: COCO mAP during `fit`, in the epoch logs, with best-weights keeping."""

import math

import keras

from keras_yolov7.evaluation import inference
from keras_yolov7.ops.postprocess import EVALUATION_SETTINGS


class COCOEvaluationCallback(keras.callbacks.Callback):
    """Evaluates the model with COCO metrics every few epochs and keeps the best weights.

    The metrics go into the epoch logs under `prefix` (`val_mAP`, `val_mAP50`, `val_mAP75`,
    `val_precision`, ...), so `History`, `CSVLogger`, `TensorBoard`, `EarlyStopping` and
    `ModelCheckpoint(monitor="val_mAP", mode="max")` see them. Keras passes one logs dict
    through the callbacks in list order: put this callback before the ones that read its
    metrics (`History` is always last).

    Evaluation runs after the first epoch, every `interval` epochs and after the last epoch (the
    first one fixes `CSVLogger`'s columns; epochs in between log no metrics).

    Args:
        validation_data: validation batches `(images, targets)` with per-image `image_id`,
            `scale`, `pad` and `original_size` (see `predict_dataset`).
        dataset: the `DetectionDataset` of the validation images (ground truth).
        interval: evaluate every `interval` epochs.
        monitor: the metric deciding the best weights (a key of `evaluate_detections`, without
            prefix); higher is better.
        save_best_path: optional `*.weights.h5` path, written whenever `monitor` improves.
        restore_best_weights: load the best weights back into the model when training ends.
        prefix: put before each metric name in the logs.
        plot_dir: optional folder for the evaluation plots (overwritten at each evaluation).
        verbose: 0 silent, 1 progress bar and a summary line, 2 also COCO's tables.
        coco_backend: see `evaluate_detections`.
        **settings: `postprocess` keyword arguments; default the official evaluation settings
            (conf 0.001, IoU 0.65, multi-label, 300 detections).
    """

    def __init__(
        self,
        validation_data,
        dataset,
        interval=1,
        monitor="mAP",
        save_best_path=None,
        restore_best_weights=False,
        prefix="val_",
        plot_dir=None,
        verbose=1,
        coco_backend="auto",
        **settings,
    ):
        super().__init__()
        if int(interval) < 1:
            raise ValueError(f"interval is {interval}; expected a positive number of epochs")
        if save_best_path is not None and not str(save_best_path).endswith(".weights.h5"):
            raise ValueError(
                f"save_best_path is {save_best_path!r}; expected a path ending in '.weights.h5'"
            )
        self.validation_data = validation_data
        self.dataset = dataset
        self.interval = int(interval)
        self.monitor = monitor
        self.save_best_path = save_best_path
        self.restore_best_weights = restore_best_weights
        self.prefix = prefix
        self.plot_dir = plot_dir
        self.verbose = verbose
        self.coco_backend = coco_backend
        self.settings = {**EVALUATION_SETTINGS, **settings}
        self.best = -math.inf
        self.best_epoch = None
        self.best_weights = None
        self.last_result = None
        self._detect_fn = None

    def on_train_begin(self, logs=None):
        self.best = -math.inf
        self.best_epoch = None
        self.best_weights = None
        # Compiled once per training run: later evaluations reuse it with the current weights.
        self._detect_fn = inference.compile_detect_function(self.model, **self.settings)

    def _due(self, epoch):
        last = self.params.get("epochs") if self.params else None
        return epoch == 0 or (epoch + 1) % self.interval == 0 or epoch + 1 == last

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch):
            return
        if self._detect_fn is None:
            self._detect_fn = inference.compile_detect_function(self.model, **self.settings)
        result = inference.evaluate_model(
            self.model,
            self.validation_data,
            self.dataset,
            verbose=self.verbose,
            plot_dir=self.plot_dir,
            coco_backend=self.coco_backend,
            detect_fn=self._detect_fn,
        )
        self.last_result = result
        if self.monitor not in result:
            raise ValueError(
                f"monitor is {self.monitor!r}, which evaluation does not produce; expected one "
                f"of {sorted(k for k, v in result.items() if isinstance(v, float))}"
            )
        if logs is not None:
            for name, value in result.items():
                if isinstance(value, float):
                    logs[self.prefix + name] = value

        current = result[self.monitor]
        improved = current > self.best
        if improved:
            self.best, self.best_epoch = current, epoch
            if self.save_best_path is not None:
                self.model.save_weights(self.save_best_path)
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
        if self.verbose:
            note = (
                " (best)" if improved else f" (best {self.best:.4f} at epoch {self.best_epoch + 1})"
            )
            print(
                f"Epoch {epoch + 1}: {self.prefix}mAP {result['mAP']:.4f}, "
                f"{self.prefix}mAP50 {result['mAP50']:.4f}, {self.prefix}{self.monitor} "
                f"{current:.4f}{note}"
            )

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
