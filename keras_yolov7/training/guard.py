"""StopOnNonFiniteLoss: training that produces a NaN or infinite loss stops, loudly."""

import math

import keras


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops `fit` with a `NonFiniteLossError` naming the epoch, batch and loss components as soon as
    the training loss is not finite (Keras' TerminateOnNaN only prints a line and returns).

    `YOLOv7ObjectDetector.fit` adds it unless the callbacks already hold one.
    """

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        self.model.stop_training = True
        parts = ", ".join(f"{k}={float(v):.4g}" for k, v in logs.items() if k != "loss")
        raise NonFiniteLossError(
            f"training stopped: the loss became {float(loss)} at epoch {self._epoch + 1}, batch "
            f"{batch + 1} ({parts}). Typical causes: a learning rate too high for this batch size, "
            "mixed precision overflow, or corrupt targets."
        )
