"""ModelEMA: the official ramped exponential moving average of all model weights, as a callback."""

import contextlib

import keras
from keras import ops


class ModelEMA(keras.callbacks.Callback):
    """Exponential moving average of every model weight, evaluated and saved instead of the raw ones.

    After each optimizer step (not each batch: under gradient accumulation several batches make one
    step) every floating-point weight of the model, trainable or not (BatchNormalization moving
    statistics included), is averaged as the official `ModelEMA` does:

        d = decay * (1 - exp(-updates / ramp_updates))
        ema = d * ema + (1 - d) * weight

    where `updates` is the optimizer's step count `optimizer.iterations`, which only moves when
    weights are updated (not on the accumulating batches of `YOLOv7SGD` or of Keras'
    `gradient_accumulation_steps`, nor on a step that a float16 LossScaleOptimizer skips). The ramp
    makes the average follow the weights closely early in training. The average starts from the
    weights at the beginning of the first `fit`.

    Where the model holds which weights:
    - during validation inside `fit` (and in `evaluate` given this callback): the EMA weights;
    - from each epoch's end until the next epoch begins: the EMA weights, so callbacks placed
      AFTER this one in the list (`ModelCheckpoint`, COCO evaluation, early stopping) see and save
      them, as the official loop evaluates and saves `ema.ema`;
    - after `fit` returns: the EMA weights (the result of training). The raw training weights stay in
      this callback: passing it to the next `fit` resumes training from them
      (`restore_training_weights()` brings them back by hand).

    The update runs on the device with no host round trip (a compiled function per backend, the step
    count compared on the device, so batches without an optimizer step leave the average unchanged);
    it needs `steps_per_execution=1`, so that the callback sees every step.

    Args:
        decay: the asymptotic decay (official 0.9999).
        ramp_updates: time constant of the ramp, in optimizer steps (official 2000).

    Example:

        ema = ModelEMA()
        model.fit(train, validation_data=val, epochs=300, callbacks=[ema, checkpoint])
        model.save("yolov7_ema.keras")  # the EMA weights
        with ema.training_weights_applied():  # the raw weights, e.g. to continue elsewhere
            model.save_weights("raw.weights.h5")
    """

    def __init__(self, decay=0.9999, ramp_updates=2000):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if not ramp_updates > 0:
            raise ValueError(f"ramp_updates must be > 0, got {ramp_updates}")
        self.decay = float(decay)
        self.ramp_updates = float(ramp_updates)
        self._update = _compile(_make_update(self.decay, self.ramp_updates))
        self._owner = None
        self._variables = None
        self._shadows = None
        self._last_count = None
        self._training_weights = None
        self._swapped_for_test = False

    @property
    def tracked_variables(self):
        """The model variables averaged: every floating-point weight, in `model.weights` order."""
        return list(self._variables or [])

    @property
    def updates(self):
        """The optimizer step count at the last average, the official `ema.updates` (host int)."""
        return 0 if self._last_count is None else int(ops.convert_to_numpy(self._last_count))

    def ema_weights(self):
        """The averaged weights as NumPy arrays, aligned with `tracked_variables`."""
        self._check_started()
        return [ops.convert_to_numpy(shadow) for shadow in self._shadows]

    def set_state(self, model, ema_weights, updates):
        """Continue an average saved earlier (a resumed run) instead of starting one at the
        next `fit`.

        Args:
            model: the model being trained (with its training weights in place).
            ema_weights: arrays aligned with the model's floating-point weights in
                `model.weights` order (what `ema_weights()` returned).
            updates: the optimizer step count of the average (`updates`).
        """
        variables = [v for v in model.weights if keras.backend.is_float_dtype(v.dtype)]
        if len(ema_weights) != len(variables):
            raise ValueError(
                f"the saved average holds {len(ema_weights)} weights but the model has "
                f"{len(variables)} floating-point weights"
            )
        for variable, value in zip(variables, ema_weights):
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"the saved average of {variable.path} has shape {tuple(value.shape)}, the "
                    f"model's weight {tuple(variable.shape)}"
                )
        self._sync_jax_state()
        self._owner = model
        self._variables = variables
        self._shadows = [ops.convert_to_tensor(w, v.dtype) for w, v in zip(ema_weights, variables)]
        self._training_weights = None
        self._last_count = ops.convert_to_tensor(int(updates))

    def apply_ema_weights(self):
        """Put the EMA weights into the model, keeping the training weights aside (no-op if done)."""
        self._check_started()
        if self._training_weights is None:
            self._sync_jax_state()
            self._training_weights = [ops.copy(v.value) for v in self._variables]
            _assign_copies(self._variables, self._shadows)

    def restore_training_weights(self):
        """Put the training weights back into the model (no-op if the model already holds them)."""
        if self._training_weights is not None:
            _assign_copies(self._variables, self._training_weights)
            self._training_weights = None

    @contextlib.contextmanager
    def training_weights_applied(self):
        """Context in which the model holds the raw training weights; the previous state returns after."""
        held_ema = self._training_weights is not None
        self.restore_training_weights()
        try:
            yield
        finally:
            if held_ema:
                self.apply_ema_weights()

    def on_train_begin(self, logs=None):
        model = self.model
        if getattr(model, "optimizer", None) is None:
            raise ValueError("ModelEMA needs a compiled model (model.optimizer is None)")
        steps = getattr(model, "steps_per_execution", 1)
        if steps != 1:
            raise ValueError(
                f"ModelEMA averages after every optimizer step and needs steps_per_execution=1, got "
                f"{steps}: compile the model without steps_per_execution"
            )
        if self._owner is not model:
            self._start(model)
        self.restore_training_weights()
        self._last_count = ops.copy(ops.convert_to_tensor(model.optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        self.restore_training_weights()

    def on_train_batch_end(self, batch, logs=None):
        self._sync_jax_state()
        count = ops.convert_to_tensor(self.model.optimizer.iterations)
        weights = [v.value for v in self._variables]
        self._shadows = self._update(self._shadows, weights, count, self._last_count)
        self._last_count = ops.copy(count)

    def on_test_begin(self, logs=None):
        self._swapped_for_test = self._shadows is not None and self._training_weights is None
        if self._swapped_for_test:
            self.apply_ema_weights()

    def on_test_end(self, logs=None):
        if self._swapped_for_test:
            self.restore_training_weights()
            self._swapped_for_test = False

    def on_epoch_end(self, epoch, logs=None):
        self.apply_ema_weights()

    def _start(self, model):
        self._sync_jax_state()
        self._owner = model
        self._variables = [v for v in model.weights if keras.backend.is_float_dtype(v.dtype)]
        self._shadows = [ops.copy(v.value) for v in self._variables]
        self._training_weights = None

    def _check_started(self):
        if self._shadows is None:
            raise ValueError("ModelEMA has no average yet: it starts when fit() begins")

    def _sync_jax_state(self):
        # On JAX, fit keeps the weights outside the variables during an epoch; this public Keras
        # hook writes them back (pointer assignments, no copy).
        model = self._owner or self.model
        if model is not None and hasattr(model, "jax_state_sync"):
            model.jax_state_sync()


def _make_update(decay, ramp_updates):
    def current_decay(count, last_count):
        ramped = decay * (1.0 - ops.exp(-ops.cast(count, "float32") / ramp_updates))
        # 1 (keep the average) when the optimizer took no step since the last batch.
        return ops.where(ops.not_equal(count, last_count), ramped, 1.0)

    def update(shadows, weights, count, last_count):
        d = current_decay(count, last_count)
        return [
            ops.cast(d, s.dtype) * s + ops.cast(1.0 - d, s.dtype) * ops.cast(w, s.dtype)
            for s, w in zip(shadows, weights)
        ]

    update.current_decay = current_decay
    return update


def _compile(update):
    """One compiled call per update instead of hundreds of eager ops (backend-specific, isolated)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(update)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(update, reduce_retracing=True)
    if backend == "torch":
        import torch

        def torch_update(shadows, weights, count, last_count):
            # Fused multi-tensor kernels, in place on the callback's own tensors and outside
            # autograd (the weights are Parameters).
            with torch.no_grad():
                d = update.current_decay(count, last_count)
                torch._foreach_mul_(shadows, d)
                torch._foreach_add_(
                    shadows, torch._foreach_mul([w.detach() for w in weights], 1.0 - d)
                )
            return shadows

        return torch_update
    return update


def _assign_copies(variables, values):
    # Copies, because JAX donates the model's buffers to the next train step and torch updates them
    # in place: the callback's arrays must never be the model's.
    for variable, value in zip(variables, values):
        variable.assign(ops.copy(value))
