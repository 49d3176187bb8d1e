"""YOLOv7SGD: the official optimizer (PyTorch SGD, three parameter groups, warmup, accumulation)."""

import keras
from keras import ops

from keras_yolov7.training.groups import GROUP_NAMES
from keras_yolov7.training.replicas import sum_over_replicas
from keras_yolov7.training.schedule import MIN_WARMUP_ITERATIONS
from keras_yolov7.training.schedule import NOMINAL_BATCH_SIZE
from keras_yolov7.training.schedule import YOLOv7Schedule
from keras_yolov7.training.schedule import accumulation_steps
from keras_yolov7.training.schedule import update_iteration_table


@keras.saving.register_keras_serializable(package="keras_yolov7")
class YOLOv7SGD(keras.optimizers.SGD):
    """SGD exactly as the official YOLOv7 training loop drives it, as one Keras optimizer.

    What Keras' own SGD cannot do, and this class does:
    - PyTorch SGD semantics (nesterov, dampening 0, coupled weight decay): `d = g + wd * p`,
      `buf = m * buf + d`, `p -= lr * (d + m * buf)`. Keras' SGD keeps `lr` inside the velocity and
      its `weight_decay` is decoupled (`p -= lr * wd * p`), which differ as soon as the learning rate
      or the momentum changes, i.e. during the whole warmup.
    - Three parameter groups (`keras_yolov7.training.parameter_groups`): `decay` gets the weight
      decay `weight_decay * batch_size * accumulate / 64`; `bias` warms up from `warmup_bias_lr`;
      `no_decay` and `decay` warm up from 0. Keras has one learning rate per optimizer.
    - A momentum that changes during warmup (0.8 -> 0.937); Keras' momentum is a constant.
    - The official accumulation: gradients are SUMMED (Keras' `gradient_accumulation_steps`
      averages) over `accumulate = max(round(64 / batch_size), 1)` batches, ramped from 1 during
      warmup, the step taken at the batches where `ni % accumulate == 0` (the first batch included),
      and the partial sum dropped at each epoch start (the official `zero_grad()` there).

    Everything is computed from the batch counter: in the graph with masked updates instead of
    branches on TensorFlow and JAX (one jit-compiled train step), with multi-tensor kernels on
    PyTorch (eager, where per-variable ops would dominate the step).

    Counters: `batch_iterations` is the number of batches applied so far (the official `ni`, the
    input of the schedule); `iterations` counts the optimizer steps actually taken (as Keras does
    with `gradient_accumulation_steps`), which is what `ModelEMA` follows.

    Effective update: with the official loss, `(lbox + lobj + lcls) * batch_size`, gradients equal
    the official ones and `gradient_scale` stays 1. With a per-image mean loss (no `* batch_size`),
    pass `gradient_scale=batch_size` to take the official step. Under float16 loss scaling a batch
    whose gradients are not finite is skipped by Keras' LossScaleOptimizer and does not count in
    `batch_iterations` (the official GradScaler skips the whole accumulated step instead).

    Several devices: under tf.distribute (`MirroredStrategy`) the replicas' gradients are summed
    (`keras_yolov7.training.sum_over_replicas`; the detector's loss is normalised for the global
    batch) and every replica applies the same update to its copy of the weights; under JAX's
    `keras.distribution.DataParallel` the step is one global computation. `batch_size` is the
    global batch either way.

    Resuming keeps the schedule when the optimizer state (its batch counter) is restored, as the
    official resume restores `start_epoch`.

    The parameter groups must be given before the first update, with
    `set_parameter_groups(parameter_groups(model))` (`make_training_setup` does it); they are stored
    in the config, so a saved and reloaded compiled model keeps them.

    Args:
        steps_per_epoch: batches per epoch (`nb`); sets the epoch of each batch and the warmup length.
        epochs: total epochs of the run (the cosine period).
        batch_size: global batch size of one step (all replicas together).
        lr0, lrf, momentum, warmup_epochs, warmup_momentum, warmup_bias_lr: official hyperparameters
            (`keras_yolov7.training.HYPERPARAMETERS`; lrf 0.1 P5, 0.2 P6, 0.01 tiny).
        weight_decay: nominal weight decay (5e-4), scaled by `batch_size * accumulate / 64`.
        min_warmup_iterations: lower bound of the warmup length in batches (official 1000).
        nominal_batch_size: batch size the recipe is tuned for (64).
        gradient_scale: factor on the summed gradient before the update (see above).
        variable_groups: the group name of each trainable variable in build order; written by
            `get_config`, not meant to be passed by hand.
        name: optimizer name.

    Example:

        optimizer = YOLOv7SGD(steps_per_epoch=len(train), epochs=300, batch_size=16)
        optimizer.set_parameter_groups(parameter_groups(model))
        model.compile(optimizer=optimizer)
    """

    def __init__(
        self,
        steps_per_epoch,
        epochs,
        batch_size,
        lr0=0.01,
        lrf=0.1,
        momentum=0.937,
        weight_decay=5e-4,
        warmup_epochs=3.0,
        warmup_momentum=0.8,
        warmup_bias_lr=0.1,
        min_warmup_iterations=MIN_WARMUP_ITERATIONS,
        nominal_batch_size=NOMINAL_BATCH_SIZE,
        gradient_scale=1.0,
        variable_groups=None,
        name="yolov7_sgd",
        **kwargs,
    ):
        schedule = YOLOv7Schedule(
            steps_per_epoch,
            epochs,
            lr0=lr0,
            lrf=lrf,
            momentum=momentum,
            warmup_epochs=warmup_epochs,
            warmup_momentum=warmup_momentum,
            warmup_bias_lr=warmup_bias_lr,
            min_warmup_iterations=min_warmup_iterations,
        )
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1] (official 0.937), got {momentum}")
        super().__init__(learning_rate=schedule, momentum=float(momentum), nesterov=True, name=name)
        if kwargs:
            raise ValueError(
                f"YOLOv7SGD does not take {sorted(kwargs)}: weight decay, accumulation and the "
                "schedule are the official ones (see the class docstring)"
            )
        self.batch_size = int(batch_size)
        self.nominal_batch_size = int(nominal_batch_size)
        self.accumulate = accumulation_steps(self.batch_size, self.nominal_batch_size)
        self.nominal_weight_decay = float(weight_decay)
        self.scaled_weight_decay = (
            self.nominal_weight_decay * self.batch_size * self.accumulate / self.nominal_batch_size
        )
        self.gradient_scale = float(gradient_scale)
        self._update_table = update_iteration_table(
            self.batch_size, schedule.warmup_iterations, self.nominal_batch_size
        )
        self._group_of_variable = None
        self._config_variable_groups = None if variable_groups is None else list(variable_groups)
        self.variable_groups = None
        with keras.name_scope(self.name, caller=self):
            updates = keras.Variable(
                0, name="updates", dtype="int", trainable=False, aggregation="only_first_replica"
            )
        self._track_variable(updates)
        self._updates = updates

    @property
    def schedule(self):
        """The `YOLOv7Schedule` of the batch iteration (`learning_rate` is its weight-group value)."""
        return self._learning_rate

    @property
    def iterations(self):
        """Optimizer steps taken (batches whose gradients were applied, after accumulation)."""
        return self._updates

    @property
    def batch_iterations(self):
        """Batches seen (the official `ni`), the variable the schedule reads."""
        return self._iterations

    def set_parameter_groups(self, groups):
        """Give the `ParameterGroups` of the model (`parameter_groups(model)`); before training."""
        if self.built:
            raise ValueError("set_parameter_groups() must be called before the optimizer is built")
        self._group_of_variable = groups.group_of()

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.variable_groups = self._resolve_groups(variables)
        self.gradient_sums = self.add_optimizer_variables(variables, "gradient_sum")

    def _resolve_groups(self, variables):
        if self._group_of_variable is not None:
            unknown = [v.path for v in variables if id(v) not in self._group_of_variable]
            if unknown:
                raise ValueError(
                    f"variables {unknown} are not in the parameter groups given to "
                    "set_parameter_groups(); pass parameter_groups(model) of the model being trained"
                )
            return [self._group_of_variable[id(v)] for v in variables]
        if self._config_variable_groups is not None:
            groups = self._config_variable_groups
            if len(groups) != len(variables) or not set(groups) <= set(GROUP_NAMES):
                raise ValueError(
                    f"variable_groups from the config names {len(groups)} variables in groups "
                    f"{sorted(set(groups))}, but the optimizer is built on {len(variables)} variables "
                    f"(groups must be among {GROUP_NAMES})"
                )
            return list(groups)
        raise ValueError(
            "YOLOv7SGD needs the parameter groups before training: call "
            "optimizer.set_parameter_groups(keras_yolov7.training.parameter_groups(model)) "
            "(keras_yolov7.training.make_training_setup does it)"
        )

    def _backend_apply_gradients(self, grads, trainable_variables):
        # tf.distribute: each replica holds the gradient of its share of the global batch.
        grads = sum_over_replicas(list(grads))
        if keras.backend.backend() == "torch":
            self._apply_torch(grads, trainable_variables)
        else:
            self._apply_masked(grads, trainable_variables)

    def _apply_masked(self, grads, trainable_variables):
        """Graph form (TensorFlow, JAX), one traced train step.

        TensorFlow branches with `cond`: batches without a step only store the gradient sums.
        JAX computes the step on every batch and `where` keeps it or not (XLA fuses the masks
        into the update's loops; a branch would have to thread Keras' variable state through
        `lax.cond`).
        """
        ni = self._iterations.value
        values = self.schedule.group_values(ni)
        warmup = self.schedule.warmup_iterations
        in_warmup_step = ops.take(
            ops.convert_to_tensor(self._update_table), ops.minimum(ni, warmup)
        )
        is_update = ops.where(
            ops.less_equal(ni, warmup), in_warmup_step, ops.equal(ni % self.accumulate, 0)
        )
        keep_sum = ops.not_equal(ni % self.schedule.steps_per_epoch, 0)
        totals = []
        for gradient, variable in zip(grads, trainable_variables):
            gradient_sum = self.gradient_sums[self._get_variable_index(variable)]
            totals.append(
                ops.cast(gradient, variable.dtype)
                + ops.where(keep_sum, gradient_sum.value, 0.0)
            )
        if keras.backend.backend() == "tensorflow":
            # A real branch: batches without a step only store the sums (at batch 4, yolov7
            # takes a step every 16 batches; the masked form cost ~5% of its CPU step).
            ops.cond(
                is_update,
                lambda: self._step(totals, trainable_variables, values, None),
                lambda: self._store_sums(totals, trainable_variables),
            )
        else:
            self._step(totals, trainable_variables, values, is_update)
        self.assign_add(self._updates, ops.cast(is_update, self._updates.dtype))

    def _store_sums(self, totals, trainable_variables):
        for total, variable in zip(totals, trainable_variables):
            self.assign(self.gradient_sums[self._get_variable_index(variable)], total)

    def _step(self, totals, trainable_variables, values, is_update):
        """The SGD step from the summed gradients; `is_update` masks it (None: always taken)."""

        def keep(new, old):
            return new if is_update is None else ops.where(is_update, new, old)

        for total, variable in zip(totals, trainable_variables):
            index = self._get_variable_index(variable)
            group = self.variable_groups[index]
            dtype = variable.dtype
            gradient_sum = self.gradient_sums[index]
            buffer = self.momentums[index]
            weights = variable.value
            direction = total * self.gradient_scale if self.gradient_scale != 1.0 else total
            if group == "decay":
                direction = direction + self.scaled_weight_decay * weights
            momentum = ops.cast(values["momentum"], dtype)
            new_buffer = momentum * buffer.value + direction
            new_weights = weights - ops.cast(values[group], dtype) * (
                direction + momentum * new_buffer
            )
            self.assign(variable, keep(new_weights, weights))
            self.assign(buffer, keep(new_buffer, buffer.value))
            self.assign(gradient_sum, keep(ops.zeros_like(total), total))

    def _apply_torch(self, grads, trainable_variables):
        """Eager form (PyTorch): the same arithmetic with multi-tensor kernels, as torch.optim.SGD.

        Per-variable keras.ops cost ~10 eager kernels per variable and batch (an order of magnitude
        slower than Keras' own torch SGD on yolov7-tiny, CPU); here the step decision is read on the
        host (one scalar per batch) and batches without a step only add their gradients.
        """
        import torch

        ni = int(ops.convert_to_numpy(self._iterations.value))
        warmup = self.schedule.warmup_iterations
        if ni <= warmup:
            is_update = bool(self._update_table[ni])
        else:
            is_update = ni % self.accumulate == 0
        indices = [self._get_variable_index(v) for v in trainable_variables]
        with torch.no_grad():
            sums = [self.gradient_sums[i].value for i in indices]
            if ni % self.schedule.steps_per_epoch == 0:
                torch._foreach_zero_(sums)
            torch._foreach_add_(
                sums,
                [ops.convert_to_tensor(g, v.dtype) for g, v in zip(grads, trainable_variables)],
            )
            if not is_update:
                return
            values = {k: float(v) for k, v in self.schedule.group_values(ni).items()}
            momentum = values["momentum"]
            params = [v.value for v in trainable_variables]
            buffers = [self.momentums[i].value for i in indices]
            directions = torch._foreach_mul(sums, self.gradient_scale)
            for group in GROUP_NAMES:
                members = [k for k, i in enumerate(indices) if self.variable_groups[i] == group]
                if not members:
                    continue
                group_directions = [directions[k] for k in members]
                group_buffers = [buffers[k] for k in members]
                group_params = [params[k] for k in members]
                if group == "decay":
                    torch._foreach_add_(
                        group_directions, group_params, alpha=self.scaled_weight_decay
                    )
                torch._foreach_mul_(group_buffers, momentum)
                torch._foreach_add_(group_buffers, group_directions)
                torch._foreach_add_(group_directions, group_buffers, alpha=momentum)
                torch._foreach_add_(group_params, group_directions, alpha=-values[group])
            torch._foreach_zero_(sums)
        self._updates.assign_add(1)

    def get_config(self):
        schedule = self.schedule.get_config()
        return {
            "name": self.name,
            "steps_per_epoch": schedule["steps_per_epoch"],
            "epochs": schedule["epochs"],
            "batch_size": self.batch_size,
            "lr0": schedule["lr0"],
            "lrf": schedule["lrf"],
            "momentum": schedule["momentum"],
            "weight_decay": self.nominal_weight_decay,
            "warmup_epochs": schedule["warmup_epochs"],
            "warmup_momentum": schedule["warmup_momentum"],
            "warmup_bias_lr": schedule["warmup_bias_lr"],
            "min_warmup_iterations": schedule["min_warmup_iterations"],
            "nominal_batch_size": self.nominal_batch_size,
            "gradient_scale": self.gradient_scale,
            "variable_groups": self.variable_groups or self._config_variable_groups,
        }
