"""The official training recipe: parameter groups, schedule, optimizer, EMA, mixed precision.

References are written here independently of the package: the official formulas in NumPy, and
PyTorch's own `torch.optim.SGD` driven by the official train.py loop.
"""

import math
import pathlib

import keras
import numpy as np
import pytest
from keras import ops

from keras_yolov7 import training
from keras_yolov7.layers import Conv
from keras_yolov7.layers import ImplicitAdd
from keras_yolov7.layers import ImplicitMultiply
from keras_yolov7.layers import RepConv
from keras_yolov7.layers import YOLOv7Head

BACKEND = keras.backend.backend()
# jit_compile for the end-to-end fit: XLA on TensorFlow and JAX; torch keeps the default (Inductor fails
# on conv backward, see the spec). The other fits skip XLA on TensorFlow, whose compile time dominates
# them on a CPU.
JIT = BACKEND != "torch"
FAST_JIT = BACKEND == "jax"
FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "keys"


# ----------------------------------------------------------------------------------------------
# Independent NumPy version of the official formulas (train.py, hyp.scratch.*.yaml).


def official_lf(epoch, epochs, lrf):
    return ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (lrf - 1) + 1


def official_values(ni, nb, epochs, hyp, min_warmup=1000):
    """(lr per group [pg0, pg1, pg2], momentum) the official loop has set when it steps at batch ni."""
    nw = max(round(hyp["warmup_epochs"] * nb), min_warmup)
    epoch = ni // nb
    lr = hyp["lr0"] * official_lf(epoch, epochs, hyp["lrf"])
    if ni <= nw:
        lrs = [
            np.interp(ni, [0, nw], [hyp["warmup_bias_lr"] if j == 2 else 0.0, lr]) for j in range(3)
        ]
        momentum = np.interp(ni, [0, nw], [hyp["warmup_momentum"], hyp["momentum"]])
        return lrs, momentum
    return [lr, lr, lr], hyp["momentum"]


def official_accumulate(ni, nw, batch_size):
    accumulate = max(round(64 / batch_size), 1)
    if ni <= nw:
        accumulate = max(1, np.interp(ni, [0, nw], [1, 64 / batch_size]).round())
    return accumulate


def small_model(bn_and_implicit=True):
    """Conv(+BN) -> ImplicitAdd -> Conv2D(bias) -> ImplicitMultiply -> pool -> Dense."""
    inputs = keras.Input((8, 8, 3))
    x = Conv(4, 3, name="conv_bn")(inputs)
    x = ImplicitAdd(name="implicit_add")(x)
    x = keras.layers.Conv2D(5, 1, name="head_conv")(x)
    x = ImplicitMultiply(name="implicit_multiply")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, name="dense")(x)
    return keras.Model(inputs, outputs, name="small")


def regression_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 3), dtype=np.float32), rng.random((n, 2), dtype=np.float32)


def numpy_weights(variables):
    return [np.array(ops.convert_to_numpy(v)) for v in variables]


def sync(model):
    if hasattr(model, "jax_state_sync"):
        model.jax_state_sync()


# ----------------------------------------------------------------------------------------------
# Parameter groups


def test_parameter_groups_classify_by_layer_and_role():
    model = small_model()
    frozen = keras.layers.Dense(3, name="frozen")
    frozen.build((None, 2))
    frozen.trainable = False
    groups = training.parameter_groups(model)
    paths = {
        name: sorted(v.path for v in variables) for name, variables in groups._asdict().items()
    }
    assert paths == {
        "no_decay": ["conv_bn/bn/gamma", "implicit_add/implicit", "implicit_multiply/implicit"],
        "decay": ["conv_bn/conv/kernel", "dense/kernel", "head_conv/kernel"],
        "bias": ["conv_bn/bn/beta", "dense/bias", "head_conv/bias"],
    }
    everything = [id(v) for variables in groups for v in variables]
    assert sorted(everything) == sorted(id(v) for v in model.trainable_variables)


def test_parameter_groups_of_yolov7_blocks():
    inputs = keras.Input((16, 16, 8))
    p3 = RepConv(8, name="repconv")(inputs)
    p4 = Conv(8, 3, strides=2, name="down")(p3)
    outputs = YOLOv7Head(num_classes=2, strides=(8, 16), name="head")([p3, p4])
    model = keras.Model(inputs, outputs)
    groups = training.parameter_groups(model)
    head = model.get_layer("head")
    head_biases = {id(conv.bias) for conv in head.convs}
    assert head_biases <= {id(v) for v in groups.bias}
    implicit = [v for v in model.trainable_variables if v.path.endswith("implicit")]
    assert len(implicit) == 4 and {id(v) for v in implicit} <= {id(v) for v in groups.no_decay}
    bn_layers = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(bn_layers) == 4  # RepConv dense, pointwise and identity branches; Conv
    assert len(groups.no_decay) == len(bn_layers) + 4
    assert len(groups.bias) == len(bn_layers) + 2
    assert all(len(v.shape) == 4 for v in groups.decay)


# Building yolov7-tiny costs ~1 s on TensorFlow and torch but ~45 s of first-call compiles on JAX; the
# grouping code is backend independent and test_parameter_groups_of_yolov7_blocks covers it quickly.
@(pytest.mark.slow if BACKEND == "jax" else lambda test: test)
def test_parameter_groups_match_official_yolov7_tiny():
    """Tensor and element counts per group equal the official pg0 / pg1 / pg2 of yolov7-tiny."""
    from keras_yolov7 import YOLOv7ObjectDetector

    official = {"no_decay": [0, 0], "decay": [0, 0], "bias": [0, 0]}
    lines = (FIXTURES / "yolov7-tiny.training.txt").read_text().splitlines()
    for line in lines:
        name, shape, _ = line.split("\t")
        size = int(np.prod([int(d) for d in shape.strip("()").split(",") if d.strip()]))
        if name.endswith((".implicit", "bn.weight")):
            group = "no_decay"
        elif name.endswith(".bias"):
            group = "bias"
        elif name.endswith(".weight"):
            group = "decay"
        else:
            continue
        official[group][0] += 1
        official[group][1] += size
    model = YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=80)
    groups = training.parameter_groups(model)
    ours = {
        name: [len(variables), sum(int(np.prod(v.shape)) for v in variables)]
        for name, variables in groups._asdict().items()
    }
    assert ours == official


# ----------------------------------------------------------------------------------------------
# Schedule


@pytest.mark.parametrize("family", ["p5", "p6", "tiny"])
def test_schedule_matches_official_formulas(family):
    hyp = training.HYPERPARAMETERS[family]
    nb, epochs = 700, 300
    nw = max(round(3.0 * nb), 1000)
    assert training.warmup_iterations(nb) == nw == 2100
    iterations = np.array(
        [0, 1, 350, 699, 700, 1049, nw - 1, nw, nw + 1, 2799, 2800, 105_000, 209_999]
    )
    schedule_hyp = {k: v for k, v in hyp.items() if k != "weight_decay"}
    got = training.official_lr_and_momentum(iterations, nb, epochs, **schedule_hyp)
    got = {k: ops.convert_to_numpy(v) for k, v in got.items()}
    for index, ni in enumerate(iterations):
        lrs, momentum = official_values(int(ni), nb, epochs, hyp)
        np.testing.assert_allclose(
            [got["no_decay"][index], got["decay"][index], got["bias"][index]],
            lrs,
            rtol=2e-6,
            atol=1e-9,
        )
        np.testing.assert_allclose(got["momentum"][index], momentum, rtol=1e-6)
    # short epochs: the 1000-batch minimum sets the warmup
    assert training.warmup_iterations(100) == 1000


def test_accumulation_rule_matches_official_loop():
    assert [training.accumulation_steps(b) for b in (1, 8, 16, 24, 32, 64, 128)] == [
        64,
        8,
        4,
        3,
        2,
        1,
        1,
    ]
    for batch_size in (16, 24, 48):
        nw = 37
        official = [ni % official_accumulate(ni, nw, batch_size) == 0 for ni in range(120)]
        ours = [training.is_update_iteration(ni, batch_size, nw) for ni in range(120)]
        assert ours == official


def test_keras_schedule_and_config():
    schedule = training.YOLOv7Schedule(
        steps_per_epoch=50, epochs=10, lrf=0.2, min_warmup_iterations=0
    )
    restored = training.YOLOv7Schedule.from_config(schedule.get_config())
    for step in (0, 75, 150, 151, 499):
        lrs, _ = official_values(step, 50, 10, training.HYPERPARAMETERS["p6"], min_warmup=0)
        np.testing.assert_allclose(float(restored(step)), lrs[1], rtol=2e-6, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# Optimizer


def three_variables(seed=0):
    rng = np.random.default_rng(seed)
    variables = {
        "no_decay": keras.Variable(rng.normal(size=(4,)).astype("float32"), name="gamma"),
        "decay": keras.Variable(rng.normal(size=(3, 4)).astype("float32"), name="kernel"),
        "bias": keras.Variable(rng.normal(size=(4,)).astype("float32"), name="bias"),
    }
    groups = training.ParameterGroups(**{name: [v] for name, v in variables.items()})
    return variables, groups


@pytest.mark.parametrize("family", ["p5", "tiny"])
def test_applied_learning_rates_and_momentum(family):
    """Per-group lr and momentum recovered from the actual update equal the official values."""
    hyp = training.HYPERPARAMETERS[family]
    nb, epochs = 400, 30
    nw = 1200
    rng = np.random.default_rng(1)
    for ni in (0, 1, nw // 2, 799, 800, nw, nw + 1, 5 * nb + 3, epochs * nb - 1):
        variables, groups = three_variables()
        optimizer = training.YOLOv7SGD(nb, epochs, batch_size=64, **hyp)
        optimizer.set_parameter_groups(groups)
        order = list(variables.values())
        optimizer.build(order)
        optimizer.batch_iterations.assign(ni)
        buffers0, grads = {}, {}
        for name, variable in variables.items():
            index = optimizer._get_variable_index(variable)
            buffers0[name] = rng.normal(size=variable.shape).astype("float32")
            optimizer.momentums[index].assign(buffers0[name])
            grads[name] = rng.normal(size=variable.shape).astype("float32")
        before = {name: np.array(ops.convert_to_numpy(v)) for name, v in variables.items()}
        lrs, momentum = official_values(ni, nb, epochs, hyp)
        # Keras' `learning_rate` reports the weight groups' rate at the current batch
        np.testing.assert_allclose(float(optimizer.learning_rate), lrs[1], rtol=2e-6, atol=1e-9)
        optimizer.apply([grads[name] for name in variables], order)
        for j, name in enumerate(("no_decay", "decay", "bias")):
            variable = variables[name]
            index = optimizer._get_variable_index(variable)
            decay = 5e-4 if name == "decay" else 0.0  # batch 64: accumulate 1, no scaling
            direction = grads[name] + decay * before[name]
            buffer = ops.convert_to_numpy(optimizer.momentums[index])
            applied_momentum = np.sum((buffer - direction) * buffers0[name]) / np.sum(
                buffers0[name] ** 2
            )
            step = direction + applied_momentum * buffer
            applied_lr = np.sum((before[name] - ops.convert_to_numpy(variable)) * step) / np.sum(
                step * step
            )
            np.testing.assert_allclose(
                applied_momentum, momentum, rtol=1e-5, err_msg=f"{name} ni={ni}"
            )
            np.testing.assert_allclose(
                applied_lr, lrs[j], rtol=1e-4, atol=1e-8, err_msg=f"{name} ni={ni}"
            )
        assert int(optimizer.iterations) == 1 and int(optimizer.batch_iterations) == ni + 1


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_optimizer_follows_official_loop_with_pytorch_sgd(graph):
    """Warmup, cosine epochs, ramped accumulation, epoch-start zero_grad: batch by batch equal to
    PyTorch's SGD(nesterov) with the three groups, driven exactly as the official train.py does.
    (`tf.function`: the TensorFlow graph, where batches without a step take the other branch.)"""
    torch = pytest.importorskip("torch")
    if graph and keras.backend.backend() != "tensorflow":
        pytest.skip("the graph case is TensorFlow's (JAX's jit is covered by the fit tests)")
    hyp = {**training.HYPERPARAMETERS["p5"], "warmup_epochs": 1.0}
    nb, epochs, batch_size = 7, 5, 24  # accumulate 3, scaled weight decay 5e-4 * 24 * 3 / 64
    nw = 7
    variables, groups = three_variables(seed=3)
    optimizer = training.YOLOv7SGD(
        nb, epochs, batch_size, gradient_scale=2.0, min_warmup_iterations=0, **hyp
    )
    optimizer.set_parameter_groups(groups)
    order = list(variables.values())
    apply = lambda gradients: optimizer.apply(gradients, order)  # noqa: E731
    if graph:
        import tensorflow as tf

        optimizer.build(order)
        apply = tf.function(apply)

    params = {
        name: torch.nn.Parameter(torch.tensor(ops.convert_to_numpy(v)))
        for name, v in variables.items()
    }
    weight_decay = hyp["weight_decay"] * batch_size * 3 / 64
    reference = torch.optim.SGD(
        [params["no_decay"]], lr=hyp["lr0"], momentum=hyp["momentum"], nesterov=True
    )
    reference.add_param_group({"params": [params["decay"]], "weight_decay": weight_decay})
    reference.add_param_group({"params": [params["bias"]]})
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        reference, lr_lambda=lambda e: official_lf(e, epochs, hyp["lrf"])
    )
    rng = np.random.default_rng(7)
    steps = 0
    for epoch in range(epochs):
        reference.zero_grad()
        for i in range(nb):
            ni = i + nb * epoch
            accumulate = official_accumulate(ni, nw, batch_size)
            if ni <= nw:
                for j, group in enumerate(reference.param_groups):
                    start = hyp["warmup_bias_lr"] if j == 2 else 0.0
                    group["lr"] = np.interp(
                        ni, [0, nw], [start, group["initial_lr"] * scheduler.lr_lambdas[0](epoch)]
                    )
                    group["momentum"] = np.interp(
                        ni, [0, nw], [hyp["warmup_momentum"], hyp["momentum"]]
                    )
            grads = {name: rng.normal(size=p.shape).astype("float32") for name, p in params.items()}
            for name, p in params.items():
                g = torch.tensor(grads[name])
                p.grad = g if p.grad is None else p.grad + g
            if ni % accumulate == 0:
                reference.step()
                reference.zero_grad()
                steps += 1
            apply([grads[name] / 2.0 for name in variables])
            for name, variable in variables.items():
                np.testing.assert_allclose(
                    ops.convert_to_numpy(variable),
                    params[name].detach().numpy(),
                    rtol=1e-5,
                    atol=1e-6,
                    err_msg=f"{name} after batch {ni}",
                )
        scheduler.step()
    assert int(optimizer.iterations) == steps
    assert int(optimizer.batch_iterations) == epochs * nb


def test_optimizer_needs_parameter_groups():
    model = small_model()
    model.compile(optimizer=training.YOLOv7SGD(3, 1, 16), loss="mse")
    x, y = regression_data(16)
    with pytest.raises(ValueError, match="set_parameter_groups"):
        model.fit(x, y, batch_size=16, verbose=0)


def test_optimizer_config_round_trip_keeps_groups(tmp_path):
    model = small_model()
    optimizer, _ = training.make_training_setup(model, 2, 3, 16, preset_family="tiny", ema=False)
    model.compile(optimizer=optimizer, loss="mse")
    x, y = regression_data(48)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    config = optimizer.get_config()
    assert config["lrf"] == 0.01 and config["batch_size"] == 16
    assert config["variable_groups"] == [
        "decay",
        "no_decay",
        "bias",
        "no_decay",
        "decay",
        "bias",
        "no_decay",
        "decay",
        "bias",
    ]
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.optimizer, training.YOLOv7SGD)
    assert loaded.optimizer.variable_groups == config["variable_groups"]
    assert int(loaded.optimizer.batch_iterations) == 3
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert int(loaded.optimizer.batch_iterations) == 6


def test_setup_rejects_unknown_family_and_hyperparameters():
    model = small_model()
    with pytest.raises(ValueError, match="preset_family"):
        training.make_training_setup(model, 1, 1, 16)
    with pytest.raises(ValueError, match="preset_family must be one of"):
        training.make_training_setup(model, 1, 1, 16, preset_family="p7")
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        training.make_training_setup(model, 1, 1, 16, preset_family="p5", lr=0.1)


# ----------------------------------------------------------------------------------------------
# EMA


class Recorder(keras.callbacks.Callback):
    """Placed before ModelEMA: the weights and step count the EMA sees at each batch end."""

    def __init__(self, variables):
        super().__init__()
        self.variables = variables
        self.weights, self.counts = [], []

    def on_train_begin(self, logs=None):
        self.initial = numpy_weights(self.variables)

    def on_train_batch_end(self, batch, logs=None):
        sync(self.model)
        self.weights.append(numpy_weights(self.variables))
        self.counts.append(int(ops.convert_to_numpy(self.model.optimizer.iterations)))


def test_ema_equals_numpy_recomputation_with_accumulation():
    model = small_model()
    nb, epochs, batch_size = 4, 3, 32  # accumulate ramps 1 -> 2 over nw = 4 batches
    optimizer = training.YOLOv7SGD(
        nb, epochs, batch_size, warmup_epochs=1.0, min_warmup_iterations=0
    )
    optimizer.set_parameter_groups(training.parameter_groups(model))
    model.compile(optimizer=optimizer, loss="mse", jit_compile=FAST_JIT)
    ema = training.ModelEMA(decay=0.9, ramp_updates=3.0)
    floats = [v for v in model.weights if keras.backend.is_float_dtype(v.dtype)]
    recorder = Recorder(floats)
    x, y = regression_data(nb * batch_size)
    model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[recorder, ema],
    )

    updates = np.cumsum(
        [training.is_update_iteration(ni, batch_size, 4) for ni in range(nb * epochs)]
    )
    assert recorder.counts == list(updates) and updates[-1] == 7
    assert [v.path for v in ema.tracked_variables] == [v.path for v in floats]
    assert any(v.path.endswith("moving_mean") for v in ema.tracked_variables)

    expected = [w.astype(np.float64) for w in recorder.initial]
    previous = 0
    for weights, count in zip(recorder.weights, recorder.counts):
        if count != previous:
            d = 0.9 * (1 - math.exp(-count / 3.0))
            expected = [d * e + (1 - d) * w for e, w in zip(expected, weights)]
        previous = count
    for variable, got, want, last in zip(floats, ema.ema_weights(), expected, recorder.weights[-1]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=variable.path)
    moving_mean = next(i for i, v in enumerate(floats) if v.path.endswith("moving_mean"))
    assert not np.allclose(recorder.initial[moving_mean], recorder.weights[-1][moving_mean])
    assert ema.updates == 7


class Probe(keras.callbacks.Callback):
    """Placed after ModelEMA: what validation and the next epoch see."""

    def __init__(self, ema):
        super().__init__()
        self.ema = ema
        self.last_raw, self.at_test, self.ema_at_test, self.epoch_starts = None, [], [], []

    def on_train_batch_end(self, batch, logs=None):
        sync(self.model)
        self.last_raw = numpy_weights(self.ema.tracked_variables)

    def on_test_begin(self, logs=None):
        self.at_test.append(numpy_weights(self.ema.tracked_variables))
        self.ema_at_test.append(self.ema.ema_weights())
        self.raw_before_test = self.last_raw

    def on_epoch_begin(self, epoch, logs=None):
        if epoch:
            self.epoch_starts.append((numpy_weights(self.ema.tracked_variables), self.last_raw))


def test_validation_sees_ema_weights_and_training_resumes_raw(tmp_path):
    model = small_model()
    optimizer, _ = training.make_training_setup(model, 2, 3, 16, preset_family="p5")
    ema = training.ModelEMA(decay=0.9, ramp_updates=1.0)
    probe = Probe(ema)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=FAST_JIT)
    x, y = regression_data(48)
    checkpoint = keras.callbacks.ModelCheckpoint(
        tmp_path / "epoch{epoch}.weights.h5", save_weights_only=True
    )
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        verbose=0,
        validation_data=(x[:16], y[:16]),
        callbacks=[ema, probe, checkpoint],
    )
    for seen, averaged in zip(probe.at_test, probe.ema_at_test):
        for a, b in zip(seen, averaged):
            np.testing.assert_array_equal(a, b)
    assert not all(np.allclose(a, b) for a, b in zip(probe.at_test[-1], probe.raw_before_test))
    ((start, raw),) = probe.epoch_starts
    for a, b in zip(start, raw):
        np.testing.assert_array_equal(a, b)
    # after fit the model holds the EMA weights: evaluating it repeats the last validation
    for a, b in zip(numpy_weights(ema.tracked_variables), ema.ema_weights()):
        np.testing.assert_array_equal(a, b)
    # and the checkpoint callback after ModelEMA saved them
    saved = small_model()
    saved.load_weights(tmp_path / "epoch2.weights.h5")
    saved_floats = [v for v in saved.weights if keras.backend.is_float_dtype(v.dtype)]
    for a, b in zip(numpy_weights(saved_floats), ema.ema_weights()):
        np.testing.assert_array_equal(a, b)
    val_loss = history.history["val_loss"][-1]
    np.testing.assert_allclose(model.evaluate(x[:16], y[:16], verbose=0), val_loss, rtol=1e-5)
    with ema.training_weights_applied():
        for a, b in zip(numpy_weights(ema.tracked_variables), probe.last_raw):
            np.testing.assert_array_equal(a, b)
        assert not np.isclose(model.evaluate(x[:16], y[:16], verbose=0), val_loss, rtol=1e-5)
    # a second fit with the same callback continues from the raw weights and the same average
    updates = ema.updates
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[ema])
    assert ema.updates == updates + 3


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="momentum must be in"):
        training.YOLOv7SGD(10, 10, 16, momentum=0.0)
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive integer, got 0"):
        training.YOLOv7SGD(0, 10, 16)
    with pytest.raises(ValueError, match="does not take"):
        training.YOLOv7SGD(10, 10, 16, clipnorm=1.0)
    with pytest.raises(ValueError, match="decay must be in"):
        training.ModelEMA(decay=1.5)
    with pytest.raises(ValueError, match="policy must be one of"):
        training.use_mixed_precision("float16")


def test_ema_rejects_several_steps_per_execution():
    model = small_model()
    optimizer, callbacks = training.make_training_setup(model, 1, 3, 16, preset_family="p5")
    model.compile(optimizer=optimizer, loss="mse", steps_per_execution=2)
    x, y = regression_data(48)
    with pytest.raises(ValueError, match="steps_per_execution"):
        model.fit(x, y, batch_size=16, verbose=0, callbacks=callbacks)


# ----------------------------------------------------------------------------------------------
# The whole recipe in fit, and mixed precision


def test_fit_three_steps_with_the_recipe():
    model = small_model()
    optimizer, callbacks = training.make_training_setup(
        model, epochs=1, steps_per_epoch=3, batch_size=16, preset_family="tiny"
    )
    model.compile(optimizer=optimizer, loss="mse", jit_compile=JIT)
    before = numpy_weights(model.trainable_variables)
    x, y = regression_data(48)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=callbacks)
    assert np.isfinite(history.history["loss"]).all()
    assert int(optimizer.batch_iterations) == 3 and int(optimizer.iterations) == 3
    assert callbacks[0].updates == 3
    assert any(
        not np.allclose(a, b) for a, b in zip(before, numpy_weights(model.trainable_variables))
    )


@pytest.fixture
def restore_dtype_policy():
    yield
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_with_the_recipe(policy, restore_dtype_policy):
    assert training.use_mixed_precision(policy) == policy
    model = small_model()
    assert model.get_layer("head_conv").compute_dtype == policy.split("_")[1]
    assert model.get_layer("head_conv").kernel.dtype == "float32"
    optimizer, callbacks = training.make_training_setup(model, 1, 2, 16, preset_family="p5")
    model.compile(optimizer=optimizer, loss="mse", jit_compile=FAST_JIT)
    x, y = regression_data(32)
    try:
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=callbacks)
    except Exception as error:
        if "not implemented" in str(error).lower() or "unsupported" in str(error).lower():
            pytest.skip(f"{BACKEND} on this device has no {policy} kernels: {error}")
        raise
    wrapped = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert wrapped == (policy == "mixed_float16")
    assert np.isfinite(history.history["loss"]).all()
    assert int(optimizer.batch_iterations) == 2
    assert callbacks[0].updates == int(optimizer.iterations) > 0
