"""The callbacks of a training run: its files at every epoch end, and its log lines."""

import csv
import io
import math
import shutil
import sys
import time

import keras

from keras_yolov7.engine.training_state import STATE_FILE
from keras_yolov7.engine.training_state import capture_training_state
from keras_yolov7.engine.training_state import save_training_state
from keras_yolov7.engine.weights import ModelSaver
from keras_yolov7.files import atomic_path
from keras_yolov7.files import write_text

MISSING = "NA"


class RunRecorder(keras.callbacks.Callback):
    """Writes a run's files at every epoch end, each atomically, in an order that keeps them
    consistent whenever the process stops:

    1. `weights/last.keras`: the model's current (EMA) weights, float32, no optimizer;
    2. `results.csv`: the epoch's row appended (`columns`);
    3. `weights/training_state.npz`: the commit point (see `training_state`);
    4. `weights/best.keras`: a copy of last.keras when `evaluation` found a new best.

    A resumed run rewrites 1, 2 and 4 from the state (`resume_from`), so files written after
    the last commit are replaced by the committed epoch's.

    Place it after `ModelEMA` and the evaluation callback.

    Args:
        run_dir: the run directory.
        ema: the run's `ModelEMA`.
        evaluation: the `COCOEvaluationCallback`, or None.
        columns: results.csv's columns (`engine.train.results_columns`).
        run: the run's identity, stored in the state.
    """

    def __init__(self, run_dir, ema, evaluation, columns, run):
        super().__init__()
        self.run_dir = run_dir
        self.weights = run_dir / "weights"
        self.last = self.weights / "last.keras"
        self.best = self.weights / "best.keras"
        self.state = self.weights / STATE_FILE
        self.results_csv = run_dir / "results.csv"
        self.ema = ema
        self.evaluation = evaluation
        self.columns = list(columns)
        self.run = run
        self.rows = []
        self._saver = None

    def _saver_of(self, model):
        if self._saver is None or self._saver.model is not model:
            self._saver = ModelSaver(model)
        return self._saver

    def resume_from(self, state, model):
        """Continues after `state`'s epoch: its rows, and the files rewritten from it."""
        self.weights.mkdir(parents=True, exist_ok=True)
        self.rows = [dict(row) for row in state.rows]
        saver = self._saver_of(model)
        saver.save(self.last, _ordered(model, state.ema_weights))
        self._write_results()
        if state.best_epoch is not None and state.best_epoch == state.epoch - 1:
            saver.save(self.best, _ordered(model, state.ema_weights))

    def on_train_begin(self, logs=None):
        self.weights.mkdir(parents=True, exist_ok=True)
        self._saver_of(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append(self._row(epoch, logs or {}))
        self._saver.save(self.last)
        self._write_results()
        evaluation = self.evaluation
        best = None if evaluation is None or evaluation.best_epoch is None else evaluation.best
        state = capture_training_state(
            self.model,
            self.ema,
            epoch + 1,
            best,
            None if evaluation is None else evaluation.best_epoch,
            self.rows,
            self.run,
        )
        save_training_state(self.state, state)
        if evaluation is not None and evaluation.best_epoch == epoch:
            with atomic_path(self.best) as temporary:
                shutil.copyfile(self.last, temporary)

    def _row(self, epoch, logs):
        rates = learning_rates(self.model)
        row = {"epoch": epoch + 1}
        for column in self.columns[1:]:
            if column.startswith("lr_"):
                row[column] = rates[column[len("lr_") :]]
            elif column == "momentum":
                row[column] = rates["momentum"]
            else:
                value = logs.get(column)
                row[column] = None if value is None else float(value)
        return row

    def _write_results(self):
        write_text(self.results_csv, format_results(self.columns, self.rows))


def learning_rates(model):
    """The learning rate of each parameter group and the momentum at the last batch trained
    (`{"no_decay", "decay", "bias", "momentum"}` floats), from the `YOLOv7SGD` schedule."""
    inner = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    step = int(keras.ops.convert_to_numpy(inner.batch_iterations))
    return {k: float(v) for k, v in inner.schedule.group_values(max(step - 1, 0)).items()}


def format_results(columns, rows):
    """results.csv's text: a header, one line per row, "NA" where a row has no value."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return text.getvalue()


def _cell(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


def _ordered(model, ema_weights):
    """`model.get_weights()`-ordered arrays from EMA weights (aligned with the model's
    floating-point weights; integer weights, if any, keep the model's values)."""
    values = iter(ema_weights)
    return [
        next(values) if keras.backend.is_float_dtype(variable.dtype) else keras.ops.convert_to_numpy(variable)
        for variable in model.weights
    ]


class EpochLog(keras.callbacks.Callback):
    """One line per epoch: the training losses, the learning rate and, when the epoch was
    validated, the validation losses and metrics, and the epoch's time. No control characters:
    a log file reads line by line. In a terminal the batches of the running epoch also show
    on one line, redrawn with a carriage return.

    Args:
        steps: batches per epoch.
        evaluation: the `COCOEvaluationCallback`, or None (to mark a new best).
        interactive: redraw a progress line per batch (stdout is a terminal).
    """

    def __init__(self, steps, evaluation=None, interactive=False):
        super().__init__()
        self.steps = steps
        self.evaluation = evaluation
        self.interactive = interactive
        self._start = None
        self._width = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not self.interactive:
            return
        loss = (logs or {}).get("loss")
        text = f"epoch {self._epoch + 1}/{self.params['epochs']}: batch {batch + 1}/{self.steps}"
        if loss is not None:
            text += f", loss {float(loss):.4g}"
        self._width = max(self._width, len(text))
        sys.stdout.write("\r" + text.ljust(self._width))
        sys.stdout.flush()

    def on_epoch_end(self, epoch, logs=None):
        line = format_epoch_line(
            epoch,
            self.params["epochs"],
            logs or {},
            learning_rates(self.model)["decay"],
            time.perf_counter() - self._start,
            best=self.evaluation is not None and self.evaluation.best_epoch == epoch,
        )
        if self.interactive:
            line = "\r" + line.ljust(self._width)
        print(line, flush=True)


def format_epoch_line(epoch, epochs, logs, learning_rate, seconds, best=False):
    """`epoch 3/300: loss 12.3 (box 0.0512, obj 0.0231, cls 0.0148), lr 0.00923; val box
    0.0498, obj 0.0212, cls 0.0139, P 0.512, R 0.431, mAP50 0.462, mAP 0.287 (best); 41 s`"""

    def terms(prefix):
        names = ("box", "obj", "cls", "aux")
        found = [(n, logs[f"{prefix}{n}_loss"]) for n in names if f"{prefix}{n}_loss" in logs]
        return ", ".join(f"{name} {float(value):.4g}" for name, value in found)

    line = f"epoch {epoch + 1}/{epochs}: loss {float(logs.get('loss', math.nan)):.4g} ({terms('')})"
    line += f", lr {learning_rate:.3g}"
    if "val_mAP" in logs:
        line += (
            f"; val {terms('val_')}, P {logs['val_precision']:.3f}, R {logs['val_recall']:.3f}, "
            f"mAP50 {logs['val_mAP50']:.4f}, mAP {logs['val_mAP']:.4f}"
        )
        if best:
            line += " (best)"
    return f"{line}; {seconds:.0f} s"
