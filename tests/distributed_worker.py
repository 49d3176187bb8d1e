"""Distributed training checks on two virtual CPU devices, run in a child process.

The devices must be configured before the backend starts (JAX reads XLA_FLAGS when it is imported,
TensorFlow fixes its logical devices when its runtime starts), so tests/test_distribution.py runs
this file as `python tests/distributed_worker.py` with KERAS_BACKEND set ("tensorflow" or "jax").
It prints one JSON line of measurements, which the tests check.

What is measured:
- "step": one training step of yolov7_tiny with the official optimizer (stepping every batch) and
  the EMA callback, on one device and distributed over two, from the same weights and the same
  global batch: reported losses, weights, updates, BatchNormalization statistics, EMA weights, and
  (TensorFlow) whether every replica holds the same weights afterwards. "step_local_batchnorm":
  the same under MirroredStrategy without synchronised BatchNormalization.
- "batchnorm" (TensorFlow): moving statistics of a BatchNormalization after one step under
  MirroredStrategy, synchronised and not, next to the global and per-replica batch statistics.
- "loss_scaling" (TensorFlow): a float16 step where one replica's gradients overflow, with Keras'
  LossScaleOptimizer and with ReplicaConsistentLossScaleOptimizer.
- "cli": `keras-yolov7 train --devices 2` end to end on a few synthetic images.

`python tests/distributed_worker.py member INDEX COUNT PORT PROJECT` is instead one process of a
multi-worker cluster on this machine (see `cluster_member`).
"""

import json
import os
import pathlib
import sys
import tempfile
import time

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
NUM_DEVICES = 2
IMAGE_SIZE = 64
NUM_CLASSES = 3
STRATEGY = {"tensorflow": "mirrored", "jax": "data_parallel"}[BACKEND]
# The step checks build the model in float64 (the loss computes in float32 whatever the model):
# in float32, summing a batch's BatchNormalization statistics and the first convolutions'
# gradients in another order (per replica, then across) moves one step's update of yolov7_tiny by
# ~1e-3 relative (measured: 1.3e-3 under JAX, 3.6e-4 under TensorFlow with Keras' synchronized
# BatchNormalization, whose variance is E[x^2] - E[x]^2), which would hide a real discrepancy; in
# float64 the distributed update agrees with the single-device one to ~1e-5 (JAX) / ~1e-7 (TF).
MODEL_DTYPE = "float64"


def configure_devices(float64=False):
    """Two CPU devices (and, for JAX, float64 support), before the backend starts."""
    if BACKEND == "jax":
        flag = f"--xla_force_host_platform_device_count={NUM_DEVICES}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
        if float64:
            os.environ["JAX_ENABLE_X64"] = "1"  # float64 arrays (the step checks' model)
    else:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * NUM_DEVICES
        )


def batch():
    """4 images (2 per replica) whose halves hold different numbers of boxes, so that the
    replicas' positive counts differ and a per-replica normalisation would show."""
    import numpy as np

    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (4, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    boxes = np.full((4, 4, 4), -1.0, np.float32)
    labels = np.full((4, 4), -1, np.int32)
    objects = {
        0: [((8, 10, 30, 40), 0)],
        1: [((20, 4, 60, 28), 2)],
        2: [((2, 2, 20, 24), 1), ((30, 30, 62, 60), 0), ((12, 36, 40, 58), 2)],
        3: [((5, 20, 50, 44), 1), ((40, 2, 60, 22), 1), ((10, 45, 25, 62), 0)],
    }
    for index, items in objects.items():
        for slot, (box, label) in enumerate(items):
            boxes[index, slot] = box
            labels[index, slot] = label
    return images, {"boxes": boxes, "labels": labels}


def train_one_step(model, images, targets, run_eagerly=False):
    """One `fit` step with the official optimizer stepping at this batch (nominal batch = the
    global batch, no warmup: every group moves at lr0) and the EMA callback."""
    import keras
    import numpy as np

    from keras_yolov7.training import make_training_setup

    optimizer, callbacks = make_training_setup(
        model,
        epochs=1,
        steps_per_epoch=1,
        batch_size=len(images),
        nominal_batch_size=len(images),
        warmup_epochs=0,
        min_warmup_iterations=0,
    )
    model.compile(optimizer=optimizer, run_eagerly=run_eagerly)
    history = model.fit(
        images, targets, batch_size=len(images), epochs=1, shuffle=False, verbose=0,
        callbacks=callbacks,
    )  # fmt: skip
    ema = callbacks[0]
    with ema.training_weights_applied():
        weights = [np.asarray(w) for w in model.get_weights()]
    logs = {name: float(values[-1]) for name, values in history.history.items()}
    return {
        "weights": weights,
        "ema": ema.ema_weights(),
        "logs": logs,
        "steps": int(keras.ops.convert_to_numpy(optimizer.iterations)),
    }


def relative(a, b):
    """max |a - b| / max |b| over a list of arrays (each compared on its own scale)."""
    import numpy as np

    worst = 0.0
    for x, y in zip(a, b):
        scale = max(float(np.max(np.abs(y))), 1e-12)
        worst = max(worst, float(np.max(np.abs(x - y))) / scale)
    return worst


def global_relative(a, b):
    """max |a - b| / max |b| over all the arrays together (one scale for all weights)."""
    import numpy as np

    error = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
    return error / max(max(float(np.max(np.abs(y))) for y in b), 1e-12)


def build_model():
    """yolov7_tiny computing in MODEL_DTYPE (the loss stays float32)."""
    import keras

    import keras_yolov7 as kyv7

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(MODEL_DTYPE)
    try:
        return kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=NUM_CLASSES)
    finally:
        keras.config.set_dtype_policy(previous)


_single_device_step = {}


def single_device_step():
    """`(initial weights, step results)` of the single-device step (computed once)."""
    import keras
    import numpy as np

    if not _single_device_step:
        keras.utils.set_random_seed(0)
        reference = build_model()
        initial = [np.asarray(w) for w in reference.get_weights()]
        trainable = {id(v) for v in reference.trainable_variables}
        _single_device_step.update(
            initial=initial,
            is_trainable=[id(v) in trainable for v in reference.weights],
            # TensorFlow: the reference runs eagerly (the same arithmetic, without the ~15 s of
            # tracing a train function used once).
            result=train_one_step(reference, *batch(), run_eagerly=BACKEND == "tensorflow"),
        )
    return _single_device_step


def check_step(sync_batchnorm):
    import numpy as np

    from keras_yolov7.training import make_distribution

    images, targets = batch()
    reference = single_device_step()
    initial, is_trainable, single = (
        reference["initial"],
        reference["is_trainable"],
        reference["result"],
    )
    distribution = make_distribution(STRATEGY, devices=NUM_DEVICES, sync_batchnorm=sync_batchnorm)
    with distribution.scope():
        model = build_model()
        model.set_weights(initial)
        distribution.prepare_model(model)
        distributed = train_one_step(model, images, targets)
        replica_spread = _replica_spread(distribution, model)

    updates_single = [w - w0 for w, w0, t in zip(single["weights"], initial, is_trainable) if t]
    updates_distributed = [
        w - w0 for w, w0, t in zip(distributed["weights"], initial, is_trainable) if t
    ]
    flat_single = np.concatenate([u.ravel() for u in updates_single])
    flat_distributed = np.concatenate([u.ravel() for u in updates_distributed])
    moving = [i for i, t in enumerate(is_trainable) if not t]
    return {
        "description": distribution.describe(),
        "num_replicas": distribution.num_replicas,
        "logs_single": single["logs"],
        "logs_distributed": distributed["logs"],
        "steps": [single["steps"], distributed["steps"]],
        "update_norm": float(np.linalg.norm(flat_single)),
        "update_relative": float(
            np.linalg.norm(flat_distributed - flat_single) / np.linalg.norm(flat_single)
        ),
        "updated_fraction": float(np.mean(flat_single != 0)),
        "weights_relative": global_relative(distributed["weights"], single["weights"]),
        "moving_statistics_relative": global_relative(
            [distributed["weights"][i] for i in moving], [single["weights"][i] for i in moving]
        ),
        "moving_statistics_changed": relative(
            [initial[i] for i in moving], [single["weights"][i] for i in moving]
        ),
        "ema_relative": global_relative(distributed["ema"], single["ema"]),
        "replica_spread": replica_spread,
    }


def _replica_spread(distribution, model):
    """`[trainable, non-trainable]`: largest difference between the replicas' copies of a weight.

    TensorFlow keeps one copy per device: 0 for the trainable weights when every replica applied
    the same update. JAX's replicated arrays are one value (0 by construction).
    """
    import numpy as np

    if BACKEND != "tensorflow":
        return [0.0, 0.0]
    spread = [0.0, 0.0]
    trainable = {id(v) for v in model.trainable_variables}
    for variable in model.weights:
        local = distribution.engine.experimental_local_results(variable.value)
        copies = [np.asarray(copy) for copy in local]
        kind = 0 if id(variable) in trainable else 1
        for copy in copies[1:]:
            spread[kind] = max(spread[kind], float(np.max(np.abs(copy - copies[0]))))
    return spread


def check_batchnorm():
    """Moving statistics after one step (momentum 0: they are the batch statistics)."""
    import keras
    import numpy as np

    from keras_yolov7.training import make_distribution

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0.0, 1.0, (4, 3)), rng.normal(5.0, 2.0, (4, 3))]).astype(
        "float32"
    )
    result = {
        "global_mean": x.mean(0).tolist(),
        "global_variance": x.var(0).tolist(),
        "replica_means": [x[:4].mean(0).tolist(), x[4:].mean(0).tolist()],
    }
    for sync in (True, False):
        distribution = make_distribution("mirrored", devices=NUM_DEVICES, sync_batchnorm=sync)
        with distribution.scope():
            inputs = keras.Input((3,))
            outputs = keras.layers.BatchNormalization(momentum=0.0)(inputs)
            model = keras.Model(inputs, outputs)
            distribution.prepare_model(model)
            model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
            model.fit(x, np.zeros_like(x), batch_size=8, epochs=1, shuffle=False, verbose=0)
        layer = model.layers[-1]
        engine = distribution.engine
        key = "sync" if sync else "local"
        result[f"{key}_means"] = [
            np.asarray(c).tolist()
            for c in engine.experimental_local_results(layer.moving_mean.value)
        ]
        result[f"{key}_variances"] = [
            np.asarray(c).tolist()
            for c in engine.experimental_local_results(layer.moving_variance.value)
        ]
    return result


def check_loss_scaling():
    """One float16 step of a Dense layer whose second half-batch overflows (the first does not):
    on one device per half with Keras' LossScaleOptimizer, then under MirroredStrategy (a half per
    replica) with Keras' and with ReplicaConsistentLossScaleOptimizer."""
    import contextlib

    import keras
    import numpy as np

    from keras_yolov7.training import ReplicaConsistentLossScaleOptimizer
    from keras_yolov7.training import make_distribution

    x = np.concatenate([np.full((2, 4), 0.1), np.full((2, 4), 3e3)]).astype("float32")
    y = np.zeros((4, 1), "float32")

    def one_step(rows, wrapper, distribution=None):
        scope = distribution.scope() if distribution else contextlib.nullcontext()
        with scope:
            inputs = keras.Input((4,))
            layer = keras.layers.Dense(1, kernel_initializer="ones")
            model = keras.Model(inputs, layer(inputs))
            optimizer = wrapper(keras.optimizers.SGD(0.01))
            model.compile(optimizer=optimizer, loss="mse")
            model.fit(x[rows], y[rows], batch_size=len(x[rows]), epochs=1, shuffle=False, verbose=0)
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        return {
            "finite": bool(np.all(np.isfinite(kernel))),
            "stepped": bool(np.any(kernel != 1.0)),
            "scale": float(keras.ops.convert_to_numpy(optimizer.dynamic_scale)),
        }

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        keras_scaling = keras.optimizers.LossScaleOptimizer
        result = {
            "first_half": one_step(slice(0, 2), keras_scaling),
            "second_half": one_step(slice(2, 4), keras_scaling),
        }
        for name, wrapper in (
            ("keras", keras_scaling),
            ("consistent", ReplicaConsistentLossScaleOptimizer),
        ):
            distribution = make_distribution("mirrored", devices=NUM_DEVICES)
            result[name] = one_step(slice(0, 4), wrapper, distribution)
    finally:
        keras.config.set_dtype_policy(previous)
    return result


def check_cli():
    """`keras-yolov7 train --devices 2` on 8 synthetic images, with the COCO evaluation of 4:
    exit code and what it printed."""
    import contextlib
    import io

    from keras_yolov7.cli import main

    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryDirectory() as project:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([
                "train", "--data", "synthetic", "--synthetic-images", "8", "4",
                "--preset", "yolov7_tiny", "--image-size", str(IMAGE_SIZE), "--batch", "4",
                "--epochs", "1", "--max-boxes", "8", "--devices", str(NUM_DEVICES),
                "--project", project, "--name", "exp",
            ])  # fmt: skip
        with open(os.path.join(project, "exp", "args.yaml")) as handle:
            args = handle.read()
    return {"code": code, "stdout": out.getvalue()[-3000:], "stderr": err.getvalue()[-3000:],
            "args": args}  # fmt: skip


def cluster_member(index, count, port, project):
    """One process of a `count`-process JAX cluster on this machine (one CPU device each),
    training with `keras-yolov7 train --distribute multi-worker`, configured through
    KERAS_DISTRIBUTION_* as on separate hosts."""
    os.environ["KERAS_DISTRIBUTION_JOB_ADDRESSES"] = f"localhost:{port}"
    os.environ["KERAS_DISTRIBUTION_NUM_PROCESSES"] = str(count)
    os.environ["KERAS_DISTRIBUTION_PROCESS_ID"] = str(index)
    import contextlib
    import io

    from keras_yolov7.cli import main as cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli([
            "train", "--data", "synthetic", "--synthetic-images", "8", "4", "--no-val",
            "--preset", "yolov7_tiny", "--image-size", str(IMAGE_SIZE), "--batch", "4",
            "--epochs", "1", "--max-boxes", "8", "--distribute", "multi-worker",
            "--project", project, "--name", f"worker{index}",
        ])  # fmt: skip
    results = pathlib.Path(project, f"worker{index}", "results.csv")
    rows = results.read_text() if results.exists() else ""
    print("RESULTS " + json.dumps({"code": code, "stdout": out.getvalue()[-3000:],
                                   "stderr": err.getvalue()[-3000:], "results": rows}))  # fmt: skip


def main(checks):
    if checks and checks[0] == "member":
        index, count, port, project = checks[1:]
        cluster_member(int(index), int(count), int(port), project)
        return
    configure_devices(float64=any(check.startswith("step") for check in checks))
    results = {"seconds": {}}
    for check in checks:
        start = time.perf_counter()
        if check == "step":
            results["step"] = check_step(sync_batchnorm=True)
        elif check == "step_local_batchnorm":
            results[check] = check_step(sync_batchnorm=False)
        elif check == "batchnorm":
            results[check] = check_batchnorm()
        elif check == "loss_scaling":
            results[check] = check_loss_scaling()
        elif check == "cli":
            results[check] = check_cli()
        else:
            raise SystemExit(f"unknown check {check!r}")
        results["seconds"][check] = round(time.perf_counter() - start, 1)
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main(sys.argv[1:])
