"""RunCheckpoints: weights/last.keras every epoch and weights/best.keras at each best evaluation."""

import pathlib
import shutil

import keras

from keras_yolov7.cli.weights import ModelSaver


class RunCheckpoints(keras.callbacks.Callback):
    """Saves the model as `last.keras` at every epoch end and copies it to `best.keras` in the
    epochs where `evaluation` (a `COCOEvaluationCallback`) found a new best.

    The files hold the model's weights at epoch end: the EMA weights when a `ModelEMA` callback
    comes before this one in the list (as the official checkpoints hold `ema`), so put this
    callback after `ModelEMA` and after `evaluation`. They are float32 `.keras` models without
    optimizer state.

    Args:
        folder: the weights folder (created).
        evaluation: optional `COCOEvaluationCallback`; without it only `last.keras` is written.
    """

    def __init__(self, folder, evaluation=None):
        super().__init__()
        self.folder = pathlib.Path(folder)
        self.evaluation = evaluation
        self.last = self.folder / "last.keras"
        self.best = self.folder / "best.keras"
        self._saver = None

    def on_train_begin(self, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._saver is None or self._saver.model is not self.model:
            self._saver = ModelSaver(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self._saver.save(self.last)
        if self.evaluation is not None and self.evaluation.best_epoch == epoch:
            shutil.copyfile(self.last, self.best)
