"""Where the time of a `fit` epoch goes, on the TensorFlow or JAX backend, printed as a table.

One model (random weights), compiled with the official recipe (`make_training_setup`: YOLOv7SGD
accumulating to 64, the `ModelEMA` callback), trained on the augmented tf.data pipeline
(`make_train_dataset`, the preset's default augmentations) of a COCO-JSON (or any) dataset whose
records are repeated up to `--images` per epoch. Measured, in this order:

- the pipeline alone: one pass (after a warm-up pass), wall time and process CPU time;
- the isolated train step (`train_on_batch` on one batch of the pipeline) and its parts, each
  compiled for the backend: forward (training mode), forward + loss (OTA assignment included),
  forward + loss + gradients; the optimizer is the full step minus the gradients;
- the EMA update (`ModelEMA.on_train_batch_end`, waited for);
- `fit` on the same number of batches held in memory (no input pipeline; the third epoch is
  timed), then `fit` on the pipeline (the second epoch is timed: the first fills caches). The
  difference is what producing the data costs the step (waiting for it and sharing the cores);
- the validation `evaluate_model` (COCO mAP) of `--val-split`, the second of two calls.

Shares are of the `fit`-on-the-pipeline epoch. CPU seconds are the whole process's (all threads):
their sum over the parts against 2 x wall time shows how busy two cores were. The load average
at the start is printed: figures from a shared machine are noisy.

    KERAS_BACKEND=tensorflow python benchmarks/fit_profile.py
    KERAS_BACKEND=jax python benchmarks/fit_profile.py --images 320 --image-size 320 --batch 16
"""

import argparse
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import side_by_side  # noqa: E402

import keras_yolov7 as kyv7  # noqa: E402
from keras_yolov7.data import make_train_dataset  # noqa: E402
from keras_yolov7.data import make_val_dataset  # noqa: E402
from keras_yolov7.data import read_dataset  # noqa: E402
from keras_yolov7.evaluation import evaluate_model  # noqa: E402
from keras_yolov7.training import make_training_setup  # noqa: E402

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco_tiny"


class Clock:
    """Wall and process CPU seconds since `start()`."""

    def start(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def read(self):
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


class EpochClock(keras.callbacks.Callback):
    """Wall and CPU seconds of each epoch of a `fit`."""

    def __init__(self):
        super().__init__()
        self.epochs = []
        self.clock = Clock()

    def on_epoch_begin(self, epoch, logs=None):
        self.clock.start()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(self.clock.read())


def block(value):
    keras.tree.map_structure(lambda x: np.asarray(keras.ops.convert_to_numpy(x)), value)


def timed(function, warmup, repeats):
    """Median `(wall, cpu)` seconds of `function()` (its result waited for)."""
    for _ in range(warmup):
        block(function())
    samples = []
    for _ in range(repeats):
        clock = Clock().start()
        block(function())
        samples.append(clock.read())
    return tuple(float(v) for v in np.median(np.array(samples), axis=0))


def step_parts(model, images, targets):
    """`{name: function()}` for forward, forward + loss, forward + loss + gradients, compiled."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def forward():
            return model(images, training=True)

        @tf.function
        def loss():
            return model.compute_loss(images, targets, model(images, training=True))

        @tf.function
        def gradients():
            with tf.GradientTape() as tape:
                value = model.compute_loss(images, targets, model(images, training=True))
            return tape.gradient(value, model.trainable_variables)

        return {"forward": forward, "loss": loss, "gradients": gradients}
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        metrics = [v.value for v in model.metrics_variables]
        optimizer = [v.value for v in model.optimizer.variables]

        # Weights and batch are arguments, not constants folded into the compiled function.
        def forward(trainable, non_trainable, images):
            return model.stateless_call(trainable, non_trainable, images, training=True)[0]

        def loss(trainable, non_trainable, metrics, optimizer, images, targets):
            value, _ = model.compute_loss_and_updates(
                trainable, non_trainable, metrics, images, targets, None, True, optimizer
            )
            return value

        forward, gradients, loss = jax.jit(forward), jax.jit(jax.grad(loss)), jax.jit(loss)
        state = (trainable, non_trainable, metrics, optimizer, images, targets)
        return {
            "forward": lambda: forward(trainable, non_trainable, images),
            "loss": lambda: loss(*state),
            "gradients": lambda: gradients(*state),
        }
    raise SystemExit(f"fit_profile runs on the tensorflow and jax backends, not {backend}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="dataset path (read_dataset)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--val-split", default="val", help="'none' skips the evaluation")
    parser.add_argument("--images", type=int, default=320, help="images per epoch (records repeated)")
    parser.add_argument("--preset", default="yolov7_tiny")
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per step part")
    args = parser.parse_args()

    backend = keras.backend.backend()
    dataset = read_dataset(args.data, split=args.split)
    original = len(dataset)
    dataset.records = (dataset.records * -(-args.images // original))[: args.images]
    steps = -(-len(dataset) // args.batch)
    print(f"# {side_by_side.machine_line()}")
    print(
        f"# keras {keras.__version__}, backend {backend}; {args.preset} at {args.image_size} px, "
        f"batch {args.batch}, {len(dataset)} images per epoch ({original} from {args.data} "
        f"[{args.split}], repeated), {steps} steps"
    )

    def pipeline():
        return make_train_dataset(
            dataset, image_size=args.image_size, batch_size=args.batch, augmentation=args.preset
        )

    rows = []
    clock = Clock()
    for _ in pipeline():
        pass
    clock.start()
    for _ in pipeline():
        pass
    data_wall, data_cpu = clock.read()

    model = kyv7.YOLOv7ObjectDetector.from_preset(
        args.preset, num_classes=len(dataset.class_names), class_names=dataset.class_names
    )
    optimizer, (ema,) = make_training_setup(
        model, epochs=4, steps_per_epoch=steps, batch_size=args.batch
    )
    model.compile(optimizer=optimizer)
    images, targets = next(pipeline().as_numpy_iterator())
    step_wall, step_cpu = timed(lambda: model.train_on_batch(images, targets), 2, args.repeats)
    parts = {
        name: timed(function, 1, args.repeats)
        for name, function in step_parts(model, images, targets).items()
    }

    fit_clock = EpochClock()
    cached = pipeline().take(steps).cache()
    # Three epochs: on JAX the second still compiles again (seen on this machine), the third not.
    model.fit(cached, epochs=3, callbacks=[ema, fit_clock], verbose=0)
    cached_wall, cached_cpu = fit_clock.epochs[-1]
    # The averages themselves are waited for (JAX dispatches asynchronously).
    ema_wall, ema_cpu = timed(lambda: ema.on_train_batch_end(0) or ema._shadows, 2, args.repeats)
    model.fit(pipeline(), epochs=2, callbacks=[ema, fit_clock], verbose=0)
    fit_wall, fit_cpu = fit_clock.epochs[-1]

    def row(name, wall, cpu, per_step=True):
        epoch_wall = wall * steps if per_step else wall
        epoch_cpu = cpu * steps if per_step else cpu
        rows.append((name, epoch_wall, 100 * epoch_wall / fit_wall, epoch_cpu))

    forward, loss, gradients = parts["forward"], parts["loss"], parts["gradients"]
    row("train step: forward (convolutions)", *forward)
    row("train step: loss + OTA assignment", loss[0] - forward[0], loss[1] - forward[1])
    row("train step: backward", gradients[0] - loss[0], gradients[1] - loss[1])
    row("train step: optimizer + accumulation", step_wall - gradients[0], step_cpu - gradients[1])
    row("EMA update (callback)", ema_wall, ema_cpu)
    loop = (cached_wall / steps - step_wall - ema_wall, cached_cpu / steps - step_cpu - ema_cpu)
    row("fit loop (Keras, callbacks, logs)", *loop)
    row(
        "waiting for / sharing cores with tf.data",
        fit_wall - cached_wall,
        fit_cpu - cached_cpu,
        per_step=False,
    )
    rows.append(("fit epoch on the pipeline", fit_wall, 100.0, fit_cpu))
    rows.append(("(tf.data pipeline alone)", data_wall, 100 * data_wall / fit_wall, data_cpu))
    if args.val_split != "none":
        val_set = read_dataset(args.data, split=args.val_split)
        val_data = make_val_dataset(val_set, image_size=args.image_size, batch_size=args.batch)
        for _ in range(2):  # the first call traces the prediction function
            clock.start()
            evaluate_model(model, val_data, val_set, verbose=0)
            times = clock.read()
        rows.append((f"(evaluation, {len(val_set)} val images)", times[0], 100 * times[0] / fit_wall, times[1]))

    print("| part | s per epoch | share of fit epoch | CPU s per epoch |")
    print("| --- | ---: | ---: | ---: |")
    for name, wall, share, cpu in rows:
        print(f"| {name} | {wall:.1f} | {share:.0f}% | {cpu:.1f} |")
    images_per_epoch = len(dataset)
    print()
    print("| rate | images/s |")
    print("| --- | ---: |")
    print(f"| isolated train step (train_on_batch) | {args.batch / step_wall:.2f} |")
    print(f"| fit on batches held in memory | {images_per_epoch / cached_wall:.2f} |")
    print(f"| fit on the pipeline (end to end) | {images_per_epoch / fit_wall:.2f} |")
    print(f"| tf.data pipeline alone | {images_per_epoch / data_wall:.2f} |")
    print(f"\nfit end to end / isolated step: {step_wall * images_per_epoch / args.batch / fit_wall:.0%}")


if __name__ == "__main__":
    main()
