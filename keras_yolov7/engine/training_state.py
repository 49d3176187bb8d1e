"""The training state a run resumes from: weights, EMA, optimizer, position and history.

`weights/training_state.npz` is written (atomically) at the end of every epoch, after the run's
other files; it is the commit point of the epoch. It holds, as arrays:

- `weights/NNNN`: the raw training weights (`model.get_weights()` order, BatchNormalization
  statistics included), not the EMA ones the `.keras` files hold;
- `ema/NNNN`: the EMA of every floating-point weight (`ModelEMA.ema_weights()` order);
- `optimizer/NNNN`: every optimizer variable (`model.optimizer.variables` order): the momentum
  buffers, `YOLOv7SGD`'s gradient sums, its batch and step counters (the schedule position and
  the accumulation phase follow from the batch counter), the loss scale under float16;
- `meta`: UTF-8 JSON with the format version, the epochs completed, the EMA update count, the
  best metric and its epoch, the results.csv rows so far, the model's config and the run's
  identity (preset, classes, image size, data fingerprints) that a resume is checked against.

Everything else a resumed epoch needs is a function of the run's arguments: the data order and
augmentation of epoch `e` are drawn from `(seed, e)` (`make_train_dataset(..., epochs=...)`).
"""

import dataclasses
import json
import pathlib
import zipfile

import numpy as np

from keras_yolov7.files import atomic_path

STATE_FILE = "training_state.npz"
# Bumped when the contents change so that an older file is refused with a clear error.
STATE_FORMAT = 1


@dataclasses.dataclass
class TrainingState:
    """One epoch end of a run, as saved in `weights/training_state.npz`.

    Attributes:
        epoch: epochs completed (the next epoch to train, 0-based).
        step: batches trained so far (`YOLOv7SGD.batch_iterations`, the schedule position).
        ema_updates: the EMA's optimizer step count (`ModelEMA.updates`).
        best: the best validation `mAP` so far, or None (no evaluation yet / no validation).
        best_epoch: the 0-based epoch of `best`, or None.
        rows: the results.csv rows so far, one dict per epoch.
        run: the run's identity: preset, num_classes, class_names, image_size, epochs,
            batch_size, seed, data fingerprints (compared when resuming).
        model_config: the training model's serialized config (`keras.saving.serialize_keras_object`).
        weights: raw training weights, `model.get_weights()` order.
        weight_paths: the variable path of each of `weights`.
        ema_weights: EMA weights, aligned with the model's floating-point weights.
        optimizer_variables: `model.optimizer.variables` values, in order.
        optimizer_paths: their variable paths.
    """

    epoch: int
    step: int
    ema_updates: int
    best: float
    best_epoch: int
    rows: list
    run: dict
    model_config: dict
    weights: list
    weight_paths: list
    ema_weights: list
    optimizer_variables: list
    optimizer_paths: list


def save_training_state(path, state):
    """Writes `state` to `path` (an `.npz` file), atomically."""
    meta = {
        "format": STATE_FORMAT,
        **{
            field.name: getattr(state, field.name)
            for field in dataclasses.fields(state)
            if field.name not in ("weights", "ema_weights", "optimizer_variables")
        },
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)}
    for prefix, values in (
        ("weights", state.weights),
        ("ema", state.ema_weights),
        ("optimizer", state.optimizer_variables),
    ):
        for index, value in enumerate(values):
            arrays[f"{prefix}/{index:04d}"] = np.asarray(value)
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)


def load_training_state(path):
    """Reads a `TrainingState`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a training state, or one of another format version (named).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run has no training state to resume")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if "meta" not in names:
                raise ValueError(f"{path} is not a keras-yolov7 training state (no 'meta' entry)")
            meta = json.loads(archive["meta"].tobytes().decode("utf-8"))
            if meta.get("format") != STATE_FORMAT:
                raise ValueError(
                    f"{path} is a training state of format {meta.get('format')!r} (written by "
                    f"keras_yolov7 {meta.get('run', {}).get('keras_yolov7', 'of another version')}"
                    f"); this version resumes format {STATE_FORMAT} only: start a new run from "
                    "its weights instead (weights=.../last.keras)"
                )
            arrays = {
                prefix: [archive[name] for name in sorted(n for n in names if n.startswith(prefix + "/"))]
                for prefix in ("weights", "ema", "optimizer")
            }
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} cannot be read as a training state ({error})") from None
    meta.pop("format")
    return TrainingState(
        weights=arrays["weights"],
        ema_weights=arrays["ema"],
        optimizer_variables=arrays["optimizer"],
        **meta,
    )


def capture_training_state(model, ema, epoch, best, best_epoch, rows, run):
    """The `TrainingState` of `model` at the end of epoch `epoch - 1` (0-based), with the raw
    training weights taken from `ema` (which holds them while the model holds the EMA ones)."""
    import keras

    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()
    with ema.training_weights_applied():
        weights = model.get_weights()
    optimizer_variables = list(model.optimizer.variables)
    inner = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    step = getattr(inner, "batch_iterations", inner.iterations)
    return TrainingState(
        epoch=int(epoch),
        step=int(keras.ops.convert_to_numpy(step)),
        ema_updates=ema.updates,
        best=None if best is None else float(best),
        best_epoch=None if best_epoch is None else int(best_epoch),
        rows=list(rows),
        run=dict(run),
        model_config=keras.saving.serialize_keras_object(model),
        weights=weights,
        weight_paths=[v.path for v in model.weights],
        ema_weights=ema.ema_weights(),
        optimizer_variables=[keras.ops.convert_to_numpy(v) for v in optimizer_variables],
        optimizer_paths=[v.path for v in optimizer_variables],
    )


def restore_training_state(state, model, ema, source):
    """Puts a saved state into a freshly built and compiled `model` and its `ema` callback:
    raw weights, optimizer variables (building the optimizer first), EMA average and count.

    Args:
        state: a `TrainingState`.
        model: the model, built as the run built it and compiled with the run's optimizer.
        ema: the run's `ModelEMA` callback.
        source: the state file, named in errors.

    Raises:
        ValueError: the model or its optimizer does not match the saved ones (naming the first
            difference).
    """
    import keras

    variables = list(model.weights)
    if len(variables) != len(state.weights):
        raise ValueError(
            f"{source} holds {len(state.weights)} weights but the model has {len(variables)}"
        )
    for variable, path, value in zip(variables, state.weight_paths, state.weights):
        if tuple(variable.shape) != tuple(value.shape):
            raise ValueError(
                f"{source}: weight {path} has shape {tuple(value.shape)}, the model's "
                f"{variable.path} {tuple(variable.shape)}"
            )
    model.set_weights(state.weights)
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    optimizer_variables = list(optimizer.variables)
    if len(optimizer_variables) != len(state.optimizer_variables):
        raise ValueError(
            f"{source} holds {len(state.optimizer_variables)} optimizer variables but this "
            f"run's optimizer has {len(optimizer_variables)} (another optimizer or precision?)"
        )
    for variable, path, value in zip(
        optimizer_variables, state.optimizer_paths, state.optimizer_variables
    ):
        if tuple(variable.shape) != tuple(value.shape):
            raise ValueError(
                f"{source}: optimizer variable {path} has shape {tuple(value.shape)}, this "
                f"run's {variable.path} {tuple(variable.shape)}"
            )
        variable.assign(keras.ops.convert_to_tensor(value, variable.dtype))
    ema.set_state(model, state.ema_weights, state.ema_updates)
