"""Training on several devices or hosts with the engines Keras and TensorFlow provide.

One switch, `make_distribution`, picks the engine of the backend: `keras.distribution.DataParallel`
on JAX (one host or several), `tf.distribute.MirroredStrategy` on TensorFlow (one host). Keras' own
`fit` drives them; nothing here is a training loop. The detector's loss, the optimizer and the EMA
are written so that a distributed step equals the single-device step on the same global batch
(see `keras_yolov7.training.replicas` and docs/distributed.md).
"""

import contextlib
import dataclasses
import functools

import keras

STRATEGIES = ("auto", "none", "data_parallel", "mirrored", "multi_worker")
"""Accepted `strategy` names (a dash may replace the underscore: "data-parallel")."""

BACKENDS_OF = {
    "data_parallel": ("jax",),
    "mirrored": ("tensorflow",),
    "multi_worker": ("jax",),
}
"""The Keras backends that provide each multi-device strategy."""

_ALTERNATIVE = {"tensorflow": "mirrored", "jax": "data_parallel"}
# Why a strategy is refused on a backend, where the backend's alternative is not the answer.
_REFUSALS = {
    ("multi_worker", "tensorflow"): (
        ": Keras 3.15's fit does not run under tf.distribute.MultiWorkerMirroredStrategy "
        "(keras-team/keras#20585; with two workers it fails reducing the first batch, then the "
        "metrics, across workers); on tensorflow, 'mirrored' trains on the GPUs of one host"
    ),
}
_ACCELERATORS = ("gpu", "tpu")
_jax_cluster_started = False


@dataclasses.dataclass(frozen=True)
class TrainingDistribution:
    """Where the replicas of a training run live, and what the model needs to train there.

    Made by `make_distribution`. Build the model, make the optimizer (`make_training_setup`) and
    call `compile` and `fit` inside `scope()`; pass the model to `prepare_model` after building it.

    Attributes:
        strategy: "none", "data_parallel", "mirrored" or "multi_worker".
        backend: the Keras backend.
        devices: names of the devices holding the replicas, Keras style ("gpu:0", "cpu:1"),
            over all hosts.
        num_replicas: replicas over all hosts; the global batch is split evenly over them.
        sync_batchnorm: whether BatchNormalization normalises with the statistics of the global
            batch. Always True for JAX's data_parallel, whose step is one global computation.
        engine: the `tf.distribute.Strategy`, the `keras.distribution.DataParallel`, or None.
    """

    strategy: str
    backend: str
    devices: tuple
    num_replicas: int
    sync_batchnorm: bool
    engine: object = None

    def scope(self):
        """Context in which to build the model and the optimizer and to run `compile` and `fit`."""
        if self.engine is None:
            return contextlib.nullcontext()
        return self.engine.scope()

    def prepare_model(self, model):
        """Switches the model's BatchNormalization layers to the global batch statistics when
        `sync_batchnorm` asks it under tf.distribute (JAX's data_parallel has them already).
        Call it before `compile`; returns the model."""
        if self.sync_batchnorm and self.backend == "tensorflow" and self.engine is not None:
            synchronize_batch_normalization(model)
        return model

    def per_replica_batch_size(self, batch_size):
        """Images per replica of a global batch; raises ValueError if it does not split evenly."""
        batch_size = int(batch_size)
        if batch_size < self.num_replicas or batch_size % self.num_replicas:
            raise ValueError(
                f"the global batch size {batch_size} does not split evenly over "
                f"{self.num_replicas} replicas: use a multiple of {self.num_replicas}"
            )
        return batch_size // self.num_replicas

    def describe(self):
        """One line for logs: the strategy, its devices and the BatchNormalization statistics."""
        if self.strategy == "none":
            return f"one device ({self.devices[0]})" if self.devices else "one device"
        statistics = "global" if self.sync_batchnorm else "per replica"
        shown = ", ".join(self.devices[:8]) + (", ..." if len(self.devices) > 8 else "")
        return (
            f"{self.strategy} on {self.num_replicas} replicas ({shown}), BatchNormalization "
            f"statistics {statistics}"
        )


def make_distribution(strategy="auto", devices=None, sync_batchnorm=False):
    """The multi-device engine of the current Keras backend, checked and ready to enter.

    Args:
        strategy: "auto": `mirrored` (TensorFlow) or `data_parallel` (JAX) when `devices`
            chooses several devices (or one other than the default) or, with `devices=None`,
            several GPUs / TPUs are visible; else "none".
            "none": one device, no engine. "data_parallel": `keras.distribution.DataParallel`
            (JAX). "mirrored": `tf.distribute.MirroredStrategy` (TensorFlow). "multi_worker":
            several hosts (JAX): `keras.distribution.initialize()` (once per process; it reads
            `KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES`,
            `KERAS_DISTRIBUTION_PROCESS_ID`, or JAX's own cluster detection), then
            `DataParallel` over every host's devices; call it before JAX computes anything.
            TensorFlow's `MultiWorkerMirroredStrategy` is refused: Keras 3.15's `fit` fails under
            it (keras-team/keras#20585). The torch backend has no multi-device trainer in Keras:
            only "auto" / "none".
        devices: None (all devices of the default type: the GPUs / TPUs, else the CPUs), a count
            (the first N of them), or Keras device names ("gpu:0", "gpu:2", or one string
            "gpu:0,gpu:2"). Not with "multi_worker" (each worker uses what it sees; choose with
            `CUDA_VISIBLE_DEVICES`).
        sync_batchnorm: normalise with the statistics of the global batch (the official
            `--sync-bn`): Keras' `BatchNormalization(synchronized=True)` under tf.distribute.
            Under JAX's data_parallel the statistics are global whatever this says.

    Returns:
        A `TrainingDistribution`.

    Example:

        distribution = make_distribution("auto", sync_batchnorm=True)
        with distribution.scope():
            model = YOLOv7ObjectDetector.from_preset("yolov7", num_classes=80)
            distribution.prepare_model(model)
            optimizer, callbacks = make_training_setup(
                model, epochs=300, steps_per_epoch=steps, batch_size=64  # the global batch
            )
            model.compile(optimizer=optimizer)
            model.fit(train, epochs=300, callbacks=callbacks)
    """
    name = str(strategy).replace("-", "_").lower()
    if name not in STRATEGIES:
        raise ValueError(
            f"unknown distribution strategy {strategy!r}; expected one of {STRATEGIES}"
        )
    backend = keras.backend.backend()
    if name in BACKENDS_OF and backend not in BACKENDS_OF[name]:
        hint = f"; on {backend} use {_ALTERNATIVE[backend]!r}" if backend in _ALTERNATIVE else ""
        hint = _REFUSALS.get((name, backend), hint)
        raise ValueError(
            f"distribution strategy {name!r} needs the {' or '.join(BACKENDS_OF[name])} backend, "
            f"but Keras runs on {backend}{hint}"
        )
    if name == "multi_worker":
        if devices is not None:
            raise ValueError(
                f"devices={devices!r} cannot be chosen with 'multi_worker': every worker uses "
                "all the devices it sees (restrict them with CUDA_VISIBLE_DEVICES)"
            )
        return _jax_multi_process()
    if backend not in _ALTERNATIVE:
        return _single_device_only(backend, name, devices, sync_batchnorm)

    requested = _parse_devices(devices)
    default_device = list(keras.distribution.list_devices())[:1]
    chosen = default_device if requested is None and name == "none" else select_devices(requested)
    if name == "auto" and requested is None and chosen[0].split(":")[0] not in _ACCELERATORS:
        chosen = default_device  # several CPUs are used only when asked for
    # One device other than the default one needs an engine to be placed there.
    placed = len(chosen) > 1 or chosen != default_device
    if name == "auto":
        name = _ALTERNATIVE[backend] if placed else "none"
        sync_batchnorm = sync_batchnorm and len(chosen) > 1
    if name == "none":
        if placed:
            raise ValueError(
                f"strategy 'none' trains on the default device {default_device}, but "
                f"devices={devices!r} chooses {chosen}: use 'auto' or {_ALTERNATIVE[backend]!r}"
            )
        if sync_batchnorm:
            raise ValueError("sync_batchnorm needs several replicas; strategy 'none' has one")
        return TrainingDistribution("none", backend, tuple(chosen), 1, False)
    if name == "mirrored":
        engine = _tensorflow_mirrored(tuple(chosen))
        return TrainingDistribution(
            name, backend, tuple(chosen), len(chosen), bool(sync_batchnorm), engine
        )
    engine = keras.distribution.DataParallel(devices=list(chosen))
    return TrainingDistribution(name, backend, tuple(chosen), len(chosen), True, engine)


def select_devices(devices=None):
    """Keras names of the devices `devices` stands for, checked against the visible ones.

    Args:
        devices: None (every device of the default type: GPUs / TPUs, else CPUs), a count N (the
            first N of them; also as a string "4"), or device names: a list or one
            comma-separated string ("gpu:0,gpu:1"; "/gpu:0" and "GPU:0" are accepted too).

    Returns:
        A list of names like "gpu:0".
    """
    devices = _parse_devices(devices)
    if devices is None:
        return list(keras.distribution.list_devices())
    if isinstance(devices, int):
        visible = list(keras.distribution.list_devices())
        if devices < 1:
            raise ValueError(f"devices must be at least 1, got {devices}")
        if devices > len(visible):
            kind = visible[0].split(":")[0] if visible else "device"
            raise ValueError(
                f"devices={devices} but only {len(visible)} {kind} device(s) are visible "
                f"({', '.join(visible)})"
            )
        return visible[:devices]
    names = list(devices)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"devices names {duplicates} more than once")
    for name in names:
        kind = name.split(":")[0]
        visible = _visible(kind)
        if name not in visible:
            raise ValueError(
                f"device {name!r} is not visible; the visible {kind} devices are "
                f"{visible or 'none'}"
            )
    return names


def synchronize_batch_normalization(model):
    """Makes every BatchNormalization of `model` normalise with the global batch's statistics.

    Keras' `BatchNormalization(synchronized=True)`: under tf.distribute the batch mean and
    variance are summed over the replicas (the official `--sync-bn`, PyTorch's SyncBatchNorm);
    without a strategy it is the plain layer. TensorFlow backend only: Keras refuses the option
    elsewhere, and JAX's DataParallel computes the global statistics anyway. Call it before the
    train step is compiled (before `fit`). Returns the number of layers switched.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "synchronized BatchNormalization is a tf.distribute feature (TensorFlow backend), "
            f"but Keras runs on {keras.backend.backend()}; JAX's DataParallel already normalises "
            "with the global batch statistics"
        )
    layers = [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in layers:
        layer.synchronized = True
    return len(layers)


def model_scope(model):
    """The scope `model`'s variables were created in, for variables that must live with them
    (an optimizer made after the model): its tf.distribute strategy's on TensorFlow, else none
    (JAX's distribution is global state, entered by the caller)."""
    if keras.backend.backend() == "tensorflow":
        return model.distribute_strategy.scope()
    return contextlib.nullcontext()


def _single_device_only(backend, name, devices, sync_batchnorm):
    """The torch backend (Keras 3 has no multi-device trainer for it): one device."""
    if devices not in (None, 1, "1") or sync_batchnorm:
        raise ValueError(
            f"the {backend} backend trains on one device here (Keras has no multi-device "
            f"trainer for it), but devices={devices!r}, sync_batchnorm={sync_batchnorm}; use the "
            "jax backend (data_parallel) or tensorflow (mirrored)"
        )
    return TrainingDistribution("none", backend, (), 1, False)


def _parse_devices(devices):
    """None, a count (int), or a list of Keras device names, from any accepted form."""
    if devices is None or isinstance(devices, int):
        return devices
    if isinstance(devices, str):
        text = devices.strip()
        if text.isdigit():
            return int(text)
        devices = [part for part in text.split(",") if part.strip()]
    names = [_keras_device_name(device) for device in devices]
    if not names:
        raise ValueError("devices is empty; give None, a count or device names")
    return names


def _keras_device_name(device):
    """Keras' name of a device: "gpu:0" for "/device:GPU:0", "/gpu:0" or "GPU:0"."""
    text = str(device).strip().lower()
    if text.startswith("/"):
        text = text.rsplit("/", 1)[-1]
    text = text.removeprefix("device:")
    kind, _, index = text.partition(":")
    if not kind or not index.isdigit():
        raise ValueError(f"device name {device!r} is not of the form 'gpu:0' / 'cpu:1'")
    return f"{kind}:{int(index)}"


def _visible(kind):
    try:
        return list(keras.distribution.list_devices(kind))
    except (RuntimeError, ValueError):  # JAX raises for a platform it does not have
        return []


@functools.cache
def _tensorflow_mirrored(devices):
    """One MirroredStrategy per device set and process: every new strategy numbers its collective
    operations from the same keys, and TensorFlow aborts when two strategies' operations meet."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(devices=[f"/{name}" for name in devices])


def _jax_multi_process():
    """`keras.distribution.initialize()` once per process, then DataParallel over every host."""
    global _jax_cluster_started
    if not _jax_cluster_started:
        try:
            keras.distribution.initialize()
        except ValueError as error:
            raise ValueError(
                "multi_worker on JAX needs the cluster: set KERAS_DISTRIBUTION_JOB_ADDRESSES "
                "(the coordinator's host:port), KERAS_DISTRIBUTION_NUM_PROCESSES and "
                "KERAS_DISTRIBUTION_PROCESS_ID, or run where JAX detects them (SLURM, Open MPI, "
                f"Kubernetes, Cloud TPU) ({error})"
            ) from error
        _jax_cluster_started = True
    devices = list(keras.distribution.list_devices())
    engine = keras.distribution.DataParallel(devices=devices)
    return TrainingDistribution("multi_worker", "jax", tuple(devices), len(devices), True, engine)
