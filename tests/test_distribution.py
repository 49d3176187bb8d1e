"""Training on several devices: the engine switch, the global-batch loss, one distributed step
against the single-device step, synchronised BatchNormalization, and the CLI flags.

The distributed runs need two devices configured before the backend starts, so they run in a child
process (tests/distributed_worker.py) on two virtual CPU devices: JAX with
`--xla_force_host_platform_device_count=2`, TensorFlow with two logical CPUs. Keras has no
multi-device trainer for the torch backend; those tests skip there.
"""

import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_yolov7.cli import main
from keras_yolov7.losses import YOLOv7Loss
from keras_yolov7.models.configs import ARCHITECTURES
from keras_yolov7.training import ReplicaConsistentLossScaleOptimizer
from keras_yolov7.training import TrainingDistribution
from keras_yolov7.training import make_distribution
from keras_yolov7.training import replicas_in_sync
from keras_yolov7.training import select_devices
from keras_yolov7.training import sum_over_replicas
from keras_yolov7.training import synchronize_batch_normalization
from keras_yolov7.training import with_loss_scaling

BACKEND = keras.backend.backend()
WORKER = pathlib.Path(__file__).with_name("distributed_worker.py")
ENGINE = {"tensorflow": "mirrored", "jax": "data_parallel"}.get(BACKEND)
OTHER_ENGINE = {"tensorflow": "data_parallel", "jax": "mirrored"}.get(BACKEND)
needs_engine = pytest.mark.skipif(
    ENGINE is None,
    reason=f"Keras has no multi-device trainer for the {BACKEND} backend (single device only)",
)


# ----------------------------------------------------------------------------------------------
# The loss over a batch split between replicas.


def split_case(preset, image_size, seed):
    """Random raw outputs of `preset` (lead and auxiliary levels) for a batch of 4 whose halves
    hold 2 and 6 targets, and the matching loss."""
    rng = np.random.default_rng(seed)
    arch = ARCHITECTURES[preset]
    strides = arch["strides"]
    anchors = np.asarray(arch["anchors"], "float32").reshape(len(strides), -1, 2)
    num_classes = 3
    levels = len(strides) * (2 if arch.get("aux") else 1)
    outputs = [
        rng.normal(0.0, 1.5, (4, image_size // s, image_size // s, 3, 5 + num_classes)).astype(
            "float32"
        )
        for s in (list(strides) * 2)[:levels]
    ]
    boxes = np.full((4, 3, 4), -1.0, "float32")
    labels = np.full((4, 3), -1, "int32")
    counts = (1, 1, 3, 3)
    for image, count in enumerate(counts):
        for slot in range(count):
            x0, y0 = rng.uniform(0, image_size * 0.6, 2)
            w, h = rng.uniform(image_size * 0.1, image_size * 0.4, 2)
            boxes[image, slot] = (x0, y0, x0 + w, y0 + h)
            labels[image, slot] = rng.integers(0, num_classes)
    loss = YOLOv7Loss(num_classes, anchors, strides)
    return loss, outputs, {"boxes": boxes, "labels": labels}


def half(outputs, targets, part):
    rows = slice(0, 2) if part == 0 else slice(2, 4)
    return [o[rows] for o in outputs], {k: v[rows] for k, v in targets.items()}


def compiled(function):
    """`jax.jit` on JAX (eager JAX runs this loss op by op: ~25 s a case); else as it is."""
    if BACKEND == "jax":
        import jax

        return jax.jit(function)
    return function


@pytest.mark.parametrize("preset,image_size", [("yolov7_tiny", 64), ("yolov7_w6", 128)])
def test_replica_shares_of_the_loss_add_up_to_the_global_batch_loss(preset, image_size):
    """Each replica's loss, normalised with the global counts through `replica_sum`, is its share
    of the global batch's loss: the shares add up to the loss of the whole batch (so their
    gradients add up to its gradient). Replicas run in lockstep; here they are emulated by
    recording what each half passes to `replica_sum`, then answering with the sum of both."""
    loss, outputs, targets = split_case(preset, image_size, seed=1)

    @compiled
    def whole(outputs, targets):
        return loss.compute_components(targets, outputs)

    @compiled
    def recording(outputs, targets):
        """The half's own terms (normalised by itself) and what it passes to `replica_sum`."""
        calls = []

        def record(value):
            calls.append(value)
            return value

        return loss.compute_components(targets, outputs, replica_sum=record), calls

    @compiled
    def answering(outputs, targets, answers):
        """The half's share, `replica_sum` answering with the sums over both halves."""
        pending = iter(answers)
        return loss.compute_components(targets, outputs, replica_sum=lambda _: next(pending))

    full = whole(outputs, targets)
    local, recorded = zip(*(recording(*half(outputs, targets, part)) for part in (0, 1)))
    assert len(recorded[0]) == len(recorded[1]) > 0
    answers = [a + b for a, b in zip(*recorded)]
    shares = [answering(*half(outputs, targets, part), answers) for part in (0, 1)]
    for name in ("loss", "box", "obj", "cls", "aux"):
        expected = float(full[name])
        summed = float(shares[0][name]) + float(shares[1][name])
        assert summed == pytest.approx(expected, rel=1e-5, abs=1e-7), name

    # Normalised per half (each replica on its own), the halves do not add up: the positives are
    # split unevenly, so the check above is not trivially true.
    summed_local = float(local[0]["loss"]) + float(local[1]["loss"])
    assert abs(summed_local - float(full["loss"])) > 1e-3 * abs(float(full["loss"]))


def test_replica_helpers_outside_a_strategy():
    value = keras.ops.ones((3,))
    assert replicas_in_sync() == 1
    assert sum_over_replicas(value) is value


# ----------------------------------------------------------------------------------------------
# The engine switch.


def test_auto_on_one_device_is_no_engine():
    distribution = make_distribution("auto")
    assert distribution.strategy == "none"
    assert distribution.engine is None and distribution.num_replicas == 1
    assert distribution.backend == BACKEND
    assert distribution.per_replica_batch_size(5) == 5
    with distribution.scope():
        pass
    assert make_distribution("none").strategy == "none"


def test_per_replica_batch_size_needs_an_even_split():
    distribution = TrainingDistribution("mirrored", "tensorflow", ("gpu:0", "gpu:1"), 2, False)
    assert distribution.per_replica_batch_size(64) == 32
    with pytest.raises(ValueError, match="batch size 5 does not split evenly over 2 replicas"):
        distribution.per_replica_batch_size(5)
    assert "2 replicas (gpu:0, gpu:1)" in distribution.describe()


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown distribution strategy 'ddp'"):
        make_distribution("ddp")


@pytest.mark.parametrize("strategy", ["data_parallel", "mirrored", "multi-worker"])
def test_engines_of_other_backends_are_refused(strategy):
    name = strategy.replace("-", "_")
    from keras_yolov7.training.distribution import BACKENDS_OF

    if BACKEND in BACKENDS_OF[name]:
        pytest.skip(f"{name} runs on {BACKEND}")
    with pytest.raises(
        ValueError, match=f"'{name}' needs the .* backend, but Keras runs on {BACKEND}"
    ) as refused:
        make_distribution(strategy)
    if name == "multi_worker" and BACKEND == "tensorflow":
        assert "keras-team/keras#20585" in str(refused.value)


@needs_engine
def test_more_devices_than_visible_are_refused():
    visible = select_devices()
    with pytest.raises(ValueError, match=f"devices={len(visible) + 1} but only {len(visible)}"):
        make_distribution("auto", devices=len(visible) + 1)


@needs_engine
def test_device_names():
    first = select_devices()[0]
    kind, index = first.split(":")
    assert select_devices(f"/device:{kind.upper()}:{index}") == [first]
    assert select_devices(1) == [first] and select_devices("1") == [first]
    with pytest.raises(ValueError, match="device 'tpu:7' is not visible"):
        select_devices("tpu:7")
    with pytest.raises(ValueError, match="not of the form"):
        select_devices(["gpu"])
    with pytest.raises(ValueError, match="more than once"):
        select_devices([first, first])
    with pytest.raises(ValueError, match="at least 1"):
        select_devices(0)


def test_contradictions_are_refused():
    with pytest.raises(ValueError, match="sync_batchnorm"):
        make_distribution("none", sync_batchnorm=True)
    if BACKEND == "torch":
        with pytest.raises(ValueError, match="torch backend trains on one device"):
            make_distribution("auto", devices=2)
    if BACKEND == "jax":
        with pytest.raises(ValueError, match="cannot be chosen with 'multi_worker'"):
            make_distribution("multi_worker", devices=2)


def test_synchronize_batch_normalization():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.BatchNormalization()(x))
    if BACKEND != "tensorflow":
        with pytest.raises(ValueError, match=f"Keras runs on {BACKEND}"):
            synchronize_batch_normalization(model)
        return
    assert synchronize_batch_normalization(model) == 2
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(layer.synchronized for layer in norms)


def test_loss_scaling_wrapper_where_keras_would_scale():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        inputs = keras.Input((4,))
        half = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    finally:
        keras.config.set_dtype_policy(previous)
    inputs = keras.Input((4,))
    full = keras.Model(inputs, keras.layers.Dense(1)(inputs))

    wrapped = with_loss_scaling(half, "sgd")
    assert isinstance(wrapped, ReplicaConsistentLossScaleOptimizer)
    assert isinstance(wrapped.inner_optimizer, keras.optimizers.SGD)
    assert with_loss_scaling(half, wrapped) is wrapped
    for unscaled in (
        with_loss_scaling(half, "sgd", auto_scale_loss=False),
        with_loss_scaling(full, "sgd"),
    ):
        assert isinstance(unscaled, keras.optimizers.SGD)
        assert not isinstance(unscaled, keras.optimizers.LossScaleOptimizer)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(wrapped))
    assert isinstance(restored, ReplicaConsistentLossScaleOptimizer)
    # One replica: Keras' own overflow check.
    finite = [keras.ops.ones((2,)), keras.ops.zeros((3,))]
    assert bool(wrapped.check_finite(finite))
    assert not bool(wrapped.check_finite([keras.ops.ones((2,)), keras.ops.full((3,), np.inf)]))


# ----------------------------------------------------------------------------------------------
# One distributed step on two virtual CPU devices (child process). The model computes in float64
# there: in float32 the order of the sums alone moves one step's update by ~1e-3 relative (see
# tests/distributed_worker.py), which would hide a real discrepancy.

CHECKS = {"tensorflow": ["step", "batchnorm", "loss_scaling"], "jax": ["step"]}


def run_worker(*checks):
    """The measurements of tests/distributed_worker.py for `checks`, run in a child process."""
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(WORKER), *checks],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1][len("RESULTS ") :])


@pytest.fixture(scope="module")
def worker():
    if ENGINE is None:
        pytest.skip(f"Keras has no multi-device trainer for the {BACKEND} backend")
    return run_worker(*CHECKS[BACKEND])


def relative_difference(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def test_distributed_step_equals_the_single_device_step(worker):
    step = worker["step"]
    assert (
        step["num_replicas"] == 2 and "BatchNormalization statistics global" in step["description"]
    )
    assert step["steps"] == [1, 1]  # the optimizer stepped at this batch, on both
    # The step moved the weights (the comparisons below are not of two unchanged models).
    assert step["update_norm"] > 1e-2 and step["updated_fraction"] > 0.5
    assert step["moving_statistics_changed"] > 1e-3
    single, distributed = step["logs_single"], step["logs_distributed"]
    for name in ("loss", "box_loss", "obj_loss", "cls_loss"):
        assert relative_difference(distributed[name], single[name]) < 1e-5, name
    # The update itself (weights after minus before) agrees to 1e-4 of its size, the weights after
    # the step, their BatchNormalization statistics (the global batch's) and their EMA to 1e-5 of
    # the weights' scale.
    assert step["update_relative"] < 1e-4
    assert step["weights_relative"] < 1e-5
    assert step["moving_statistics_relative"] < 1e-5
    assert step["ema_relative"] < 1e-5
    assert step["replica_spread"] == [0.0, 0.0]  # every replica holds the same weights


@pytest.mark.slow
@needs_engine
def test_per_replica_batchnorm_statistics_change_the_step():
    if BACKEND != "tensorflow":
        pytest.skip("JAX's DataParallel always normalises with the global batch statistics")
    step = run_worker("step_local_batchnorm")["step_local_batchnorm"]
    # Each replica normalises with its half's statistics (the official DDP without --sync-bn):
    # another step than the single-device one, but the same on every replica.
    assert "BatchNormalization statistics per replica" in step["description"]
    assert step["update_relative"] > 1e-2
    assert step["replica_spread"][0] == 0.0


def test_synchronized_batchnorm_uses_the_global_batch_statistics(worker):
    if "batchnorm" not in worker:
        pytest.skip("synchronized BatchNormalization is a tf.distribute option")
    stats = worker["batchnorm"]
    for replica in (0, 1):
        np.testing.assert_allclose(stats["sync_means"][replica], stats["global_mean"], rtol=1e-5)
        np.testing.assert_allclose(
            stats["sync_variances"][replica], stats["global_variance"], rtol=1e-5
        )
        # Not synchronised: each replica's copy holds its own half's statistics.
        np.testing.assert_allclose(
            stats["local_means"][replica], stats["replica_means"][replica], rtol=1e-5, atol=1e-6
        )


def test_float16_step_is_skipped_when_any_replica_overflows(worker):
    if "loss_scaling" not in worker:
        pytest.skip("Keras' LossScaleOptimizer decides per replica only under tf.distribute")
    result = worker["loss_scaling"]
    # On one device, the first half-batch steps and the second overflows (and is skipped).
    assert result["first_half"]["stepped"] and result["first_half"]["finite"]
    assert not result["second_half"]["stepped"] and result["second_half"]["scale"] == 2.0**14
    # A replica per half: the step is skipped on every replica and the scale halved, as the
    # official GradScaler does after DDP's all-reduce.
    consistent = result["consistent"]
    assert consistent["finite"] and not consistent["stepped"] and consistent["scale"] == 2.0**14


@pytest.mark.slow
@needs_engine
def test_cli_trains_on_two_devices():
    cli = run_worker("cli")["cli"]
    assert cli["code"] == 0, cli["stderr"]
    assert f"{ENGINE} on 2 replicas" in cli["stdout"]
    assert "best weights: epoch 1 of 1" in cli["stdout"]  # evaluated (EMA weights) and kept
    assert "replicas: 2" in cli["args"] and f"strategy: {ENGINE}" in cli["args"]


def free_port():
    """A free port on localhost (for the JAX coordinator)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "jax", reason="several hosts are trained with the JAX backend")
def test_cli_trains_as_a_two_process_cluster(tmp_path):
    """`--distribute multi-worker` with two processes on this machine standing for two hosts
    (KERAS_DISTRIBUTION_*), one CPU device each: both train the same steps."""
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    port = free_port()
    members = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "member", str(i), "2", str(port), str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = []
    for member in members:
        stdout, stderr = member.communicate(timeout=600)
        lines = [line for line in stdout.splitlines() if line.startswith("RESULTS ")]
        assert member.returncode == 0 and lines, stderr[-4000:]
        results.append(json.loads(lines[-1][len("RESULTS ") :]))
    for result in results:
        assert result["code"] == 0, result["stderr"]
        assert "multi_worker on 2 replicas" in result["stdout"]
    assert results[0]["results"] and results[0]["results"] == results[1]["results"]


# ----------------------------------------------------------------------------------------------
# CLI flags.


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(result, *fragments):
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2, result
    assert len(lines) == 1 and "error:" in lines[0], err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def train(*extra, tmp_path):
    return run_cli(
        "train", "--data", "synthetic", "--preset", "yolov7_tiny", "--project", tmp_path, *extra
    )


def test_cli_refuses_an_engine_of_another_backend(tmp_path):
    flag = {"tensorflow": "data-parallel", "jax": "mirrored", "torch": "mirrored"}[BACKEND]
    expected = (
        "not available on the torch backend" if BACKEND == "torch" else f"Keras runs on {BACKEND}"
    )
    assert_one_line_error(
        train("--distribute", flag, tmp_path=tmp_path), f"--distribute {flag}", expected
    )
    assert not any(tmp_path.iterdir())  # nothing was written


def test_cli_device_arguments(tmp_path):
    assert_one_line_error(train("--devices", "0", tmp_path=tmp_path), "--devices", "at least 1")
    assert_one_line_error(
        train("--devices", "gpu", tmp_path=tmp_path), "--devices", "names like gpu:0,gpu:1"
    )
    assert_one_line_error(
        train("--distribute", "none", "--sync-bn", tmp_path=tmp_path), "--sync-bn", "none"
    )
    if ENGINE is not None:
        many = len(select_devices()) + 7
        assert_one_line_error(
            train("--devices", many, tmp_path=tmp_path), f"--devices {many}", "visible"
        )
        assert_one_line_error(
            train("--devices", "cpu:0,cpu:0", tmp_path=tmp_path), "more than once"
        )
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(
    BACKEND != "tensorflow", reason="XLA under tf.distribute is a TensorFlow matter"
)
def test_cli_refuses_jit_under_tf_distribute(tmp_path):
    result = train("--distribute", "mirrored", "--devices", 1, "--jit", tmp_path=tmp_path)
    assert_one_line_error(result, "--jit", "tf.distribute")


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the refusal is about TensorFlow's strategy")
def test_cli_refuses_multi_worker_on_tensorflow(tmp_path):
    result = train("--distribute", "multi-worker", tmp_path=tmp_path)
    assert_one_line_error(result, "--distribute multi-worker", "keras-team/keras#20585")
