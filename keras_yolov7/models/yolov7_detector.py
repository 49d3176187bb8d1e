"""YOLOv7Detector: the YOLOv7 family as one Keras model class."""

import math

import keras
import numpy as np

from keras_yolov7.layers.block import copy_fused_weights
from keras_yolov7.models.builder import build_network
from keras_yolov7.models.builder import resolve_architecture
from keras_yolov7.models.configs import ARCHITECTURES
from keras_yolov7.models.configs import family_of


@keras.saving.register_keras_serializable(package="keras_yolov7")
class YOLOv7Detector(keras.Model):
    """YOLOv7 object detector (arXiv 2207.02696) built from the paper's blocks.

    Calling the model returns raw logits, one tensor per output level: the lead levels first, then
    the auxiliary levels of the P6 models (training form only), each
    `(batch, height / stride, width / stride, num_anchors, 5 + num_classes)` with channels
    `x, y, w, h, objectness, classes...`. `keras_yolov7.ops.decode_predictions` turns them into boxes.

    Args:
        architecture: a preset name (`YOLOv7Detector.presets`) or an architecture dict in the format
            of `keras_yolov7.models.configs`.
        num_classes: number of classes.
        bounding_box_format: format of boxes given to and returned by the model (any Keras
            bounding box format: "xyxy", "xywh", "center_xywh", "yxyx", "rel_xyxy", ...).
        class_names: optional name of each class (used by plots, the CLI and export metadata).
        image_size: fixed input size `(height, width)` or an int for square images; `None` accepts
            any size that is a multiple of the largest stride.
        anchors: `(num_levels, num_anchors, 2)` anchor sizes in pixels, overriding the
            architecture's (official checkpoints may carry anchors re-fitted by autoanchor).
        confidence_threshold, iou_threshold, max_detections, multi_label: `predict()` settings:
            detections need objectness * class probability above `confidence_threshold`, greedy
            class-aware NMS suppresses at IoU above `iou_threshold`, at most `max_detections` per
            image; `multi_label` lets a box be detected as several classes. Defaults: the official
            detection setting (0.25, 0.45, 300, False); `keras_yolov7.ops.EVALUATION_SETTINGS`
            holds the official evaluation one (0.001, 0.65, 300, True).
        fused: inference form: BatchNormalization folded into convs, RepConv branches merged,
            implicit vectors folded into the head, no auxiliary head. Use `get_fused()` to turn a
            trained model into this form.
        elan_chain_block: "conv" (official) or "repconvn": the 3x3 convs of every ELAN become the
            paper's planned re-parameterised RepConvN (trained as branches, fused to one conv).

    Input shape: `(batch, height, width, 3)` RGB images, pixel values 0..255 (uint8 or float).

    Example:
    >>> model = YOLOv7Detector.from_preset("yolov7_tiny", num_classes=3)
    >>> raw = model(np.zeros((1, 256, 256, 3), "uint8"))
    >>> [tuple(r.shape) for r in raw]
    [(1, 32, 32, 3, 8), (1, 16, 16, 3, 8), (1, 8, 8, 3, 8)]
    """

    presets = tuple(ARCHITECTURES)

    def __init__(
        self,
        architecture="yolov7",
        num_classes=80,
        bounding_box_format="xyxy",
        class_names=None,
        image_size=None,
        anchors=None,
        confidence_threshold=0.25,
        iou_threshold=0.45,
        max_detections=300,
        multi_label=False,
        fused=False,
        elan_chain_block="conv",
        **kwargs,
    ):
        arch = resolve_architecture(architecture)
        if class_names is not None:
            class_names = [str(name) for name in class_names]
            if len(class_names) != int(num_classes):
                raise ValueError(
                    f"class_names has {len(class_names)} names but num_classes is {num_classes}"
                )
        if anchors is not None:
            anchors = np.asarray(anchors, np.float32)
            expected = np.asarray(arch["anchors"], np.float32).reshape(len(arch["strides"]), -1, 2)
            if anchors.shape != expected.shape:
                raise ValueError(
                    f"anchors must have shape {expected.shape} (levels, anchors, 2) for this "
                    f"architecture, got {anchors.shape}"
                )
            arch["anchors"] = anchors.reshape(len(arch["strides"]), -1).tolist()
        if image_size is None:
            height = width = None
        elif isinstance(image_size, int):
            height = width = image_size
        else:
            height, width = (int(s) for s in image_size)
        images = keras.Input((height, width, 3), name="images")
        raw = build_network(images, arch, num_classes, fused=fused, chain_block=elan_chain_block)
        super().__init__(inputs=images, outputs=raw, **kwargs)

        self.architecture = architecture
        self.num_classes = int(num_classes)
        self.bounding_box_format = bounding_box_format
        self.class_names = class_names
        self.image_size = image_size if image_size is None else (height, width)
        self.fused = bool(fused)
        self.elan_chain_block = elan_chain_block
        self.strides = tuple(int(s) for s in arch["strides"])
        self.anchors = np.asarray(arch["anchors"], np.float32).reshape(len(self.strides), -1, 2)
        self.num_levels = len(self.strides)
        self.family = family_of(arch)
        self.has_auxiliary_head = not self.fused and bool(arch.get("aux"))
        self.set_prediction_settings(
            confidence_threshold=confidence_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            multi_label=multi_label,
        )

    @classmethod
    def from_preset(cls, preset, num_classes=80, **kwargs):
        """A freshly initialised model of one of the seven official architectures.

        Args:
            preset: one of "yolov7_tiny", "yolov7", "yolov7x", "yolov7_w6", "yolov7_e6",
                "yolov7_d6", "yolov7_e6e".
            num_classes: number of classes.
            **kwargs: other constructor arguments (`bounding_box_format`, `image_size`, ...).

        Official weights are not downloaded; load a converted checkpoint with
        `keras_yolov7.convert.load_torch_checkpoint`.
        """
        if preset not in ARCHITECTURES:
            raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(ARCHITECTURES)}")
        return cls(architecture=preset, num_classes=num_classes, **kwargs)

    def get_fused(self):
        """The inference form of this model, with equal lead outputs (to float precision).

        BatchNormalization is folded into every conv, RepConv / RepConvN branches are merged into
        one 3x3 conv, the implicit vectors are folded into the head convs and the auxiliary head is
        dropped. Returns a new `YOLOv7Detector` with `fused=True`.
        """
        config = self.get_config()
        config.update(fused=True, name=f"{self.name}_fused")
        fused = self.__class__.from_config(config)
        for layer in fused.layers:
            if layer.weights:
                copy_fused_weights(self.get_layer(layer.name), layer)
        return fused

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "bounding_box_format": self.bounding_box_format,
            "class_names": self.class_names,
            "image_size": self.image_size,
            "anchors": self.anchors.tolist(),
            **self.prediction_settings,
            "fused": self.fused,
            "elan_chain_block": self.elan_chain_block,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # Prediction -----------------------------------------------------------------------------

    def set_prediction_settings(self, **settings):
        """Changes what `predict()` returns: `confidence_threshold`, `iou_threshold`,
        `max_detections`, `multi_label` (see the class docstring)."""
        current = dict(getattr(self, "prediction_settings", {}))
        unknown = set(settings) - {"confidence_threshold", "iou_threshold", "max_detections", "multi_label"}
        if unknown:
            raise ValueError(f"unknown prediction settings {sorted(unknown)}")
        current.update(settings)
        for name in ("confidence_threshold", "iou_threshold"):
            value = float(current[name])
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {current[name]}")
            current[name] = value
        if int(current["max_detections"]) < 1:
            raise ValueError(f"max_detections must be >= 1, got {current['max_detections']}")
        current["max_detections"] = int(current["max_detections"])
        current["multi_label"] = bool(current["multi_label"])
        self.prediction_settings = current
        self.predict_function = None

    def decode_detections(self, raw_outputs, scale=None, pad=None, original_size=None):
        """Raw outputs -> detections with the model's prediction settings (keras.ops; compiled by
        `predict`).

        Returns:
            {"boxes": (batch, max_detections, 4) in `bounding_box_format`, "confidence":
            (batch, max_detections), "labels": (batch, max_detections) int32, "num_detections":
            (batch,) int32}, sorted by confidence and padded with -1. Boxes are in pixels of the
            network input, or of the original images when the letterbox `scale` (batch,) and
            `pad` (batch, 2) (x, y) are given (clipped to `original_size` (batch, 2) (height,
            width) when given).
        """
        from keras_yolov7.ops.postprocess import postprocess

        return postprocess(
            list(raw_outputs)[: self.num_levels],
            self.anchors,
            self.strides,
            self.num_classes,
            bounding_box_format=self.bounding_box_format,
            scale=scale,
            pad=pad,
            original_size=original_size,
            **self.prediction_settings,
        )

    def predict_step(self, *args):
        """Forward pass + decoding + NMS. Accepts images, `(images, targets)` or a dict with
        "images"; letterbox "scale" and "pad" (and "original_size") in the dict or the targets
        (as the validation pipeline yields them) map the boxes back to original image pixels."""
        *state, data = args
        if isinstance(data, tuple) and len(data) == 1:
            data = data[0]
        if isinstance(data, dict):
            images, meta = data["images"], data
        else:
            images, meta, _ = keras.utils.unpack_x_y_sample_weight(data)
        letterbox = {}
        if isinstance(meta, dict) and "scale" in meta and "pad" in meta:
            letterbox = {key: meta.get(key) for key in ("scale", "pad", "original_size")}
        outputs = super().predict_step(*state, (images,))
        if keras.backend.backend() == "jax":
            raw, non_trainable = outputs
            return self.decode_detections(raw, **letterbox), non_trainable
        return self.decode_detections(outputs, **letterbox)

    # Training -------------------------------------------------------------------------------

    def compile(
        self, optimizer="auto", loss="auto", metrics=None, ema=True, jit_compile="auto", **kwargs
    ):
        """Configures training. The defaults are the official YOLOv7 recipe.

        Args:
            optimizer: "auto" for the official SGD (nesterov, three parameter groups, warmup and
                cosine schedule, gradient accumulation to a nominal batch of 64), built by `fit`
                once it knows the epochs, steps per epoch and batch size; or any Keras optimizer
                (e.g. from `keras_yolov7.training.make_training_setup`).
            loss: "auto" for `keras_yolov7.losses.YOLOv7Loss.from_detector(self)` (the official
                gains of this preset's family), or a `YOLOv7Loss`.
            metrics: extra Keras metrics (rarely useful: the loss components are always tracked).
            ema: with `optimizer="auto"`, keep the official ramped EMA of the weights (a
                `ModelEMA` callback added by `fit`); the EMA weights are validated and are the
                model's weights after `fit`.
            jit_compile: True / False, or "auto": Keras' choice (XLA on a TensorFlow GPU, jit on
                JAX, eager on torch) except on the TensorFlow backend without a GPU, which runs
                the train step as a TF graph without XLA (its oneDNN convolutions train about
                1.8x faster than XLA's on CPU; see `keras_yolov7.training.devices`).
            **kwargs: other `keras.Model.compile` arguments (`steps_per_execution`, ...).
        """
        from keras_yolov7.losses import YOLOv7Loss
        from keras_yolov7.training.devices import default_jit_compile

        if isinstance(jit_compile, str) and jit_compile == "auto":
            jit_compile = default_jit_compile()

        if isinstance(loss, str) and loss == "auto":
            loss = YOLOv7Loss.from_detector(self)
        if not isinstance(loss, YOLOv7Loss):
            raise ValueError(
                f"loss must be 'auto' or a keras_yolov7.losses.YOLOv7Loss, got {type(loss).__name__}"
            )
        if self.fused:
            raise ValueError("this model is fused (inference only); train the unfused model")
        self.detection_loss = loss
        self._auto_optimizer = isinstance(optimizer, str) and optimizer == "auto"
        self._auto_ema = bool(ema)
        self._compile_kwargs = dict(metrics=metrics, jit_compile=jit_compile, **kwargs)
        if self._auto_optimizer:
            # A stand-in until fit() builds the official optimizer (train_on_batch uses it as is).
            optimizer = keras.optimizers.SGD(0.01, momentum=0.937, nesterov=True)
        if not hasattr(self, "loss_trackers"):
            names = ["box", "obj", "cls"] + (["aux"] if self.has_auxiliary_head else [])
            self.loss_trackers = {name: keras.metrics.Mean(name=f"{name}_loss") for name in names}
        self._compile_with_loss_scaling(optimizer)

    def _compile_with_loss_scaling(self, optimizer):
        """`keras.Model.compile` with, in float16, loss scaling that stays consistent across
        tf.distribute replicas (`ReplicaConsistentLossScaleOptimizer`) instead of Keras' own."""
        from keras_yolov7.training.loss_scaling import with_loss_scaling

        auto_scale_loss = self._compile_kwargs.get("auto_scale_loss", True)
        optimizer = with_loss_scaling(self, optimizer, auto_scale_loss)
        super().compile(optimizer=optimizer, loss=None, **self._compile_kwargs)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, steps_per_epoch=None, callbacks=None,
            validation_data=None, **kwargs):
        """`keras.Model.fit` with the detector's checks and, after `compile()` with the defaults,
        the official optimizer and EMA built for this run.

        Targets are checked before training (numpy arrays) or while batches are read (tf.data):
        a label `>= num_classes` or `< -1` or a NaN coordinate of a real box raises an error naming
        it. A loss that becomes NaN or infinite stops training with a `NonFiniteLossError`.

        Args: as `keras.Model.fit`. x: images `(batch, height, width, 3)` 0..255 with y =
            {"boxes": (batch, max_boxes, 4) in `bounding_box_format`, pixels, "labels":
            (batch, max_boxes)} padded with -1; or a tf.data.Dataset / generator of such `(images, y)`
            batches or of `{"images", "bounding_boxes"}` dicts.
        """
        from keras_yolov7.training import make_training_setup
        from keras_yolov7.training.distribution import model_scope
        from keras_yolov7.training.guard import StopOnNonFiniteLoss

        x, y = self._checked_inputs(x, y)
        if validation_data is not None and not isinstance(validation_data, tuple):
            validation_data, _ = self._checked_inputs(validation_data, None)
        callbacks = list(callbacks or [])
        if getattr(self, "_auto_optimizer", False):
            steps, batch = self._steps_and_batch(x, batch_size, steps_per_epoch)
            # The optimizer's variables must live with the model's (a tf.distribute strategy).
            with model_scope(self):
                optimizer, recipe_callbacks = make_training_setup(
                    self, epochs=epochs, steps_per_epoch=steps, batch_size=batch, ema=self._auto_ema
                )
                self._compile_with_loss_scaling(optimizer)
            self._auto_optimizer = False
            self._recipe_callbacks = recipe_callbacks
        callbacks = [c for c in getattr(self, "_recipe_callbacks", []) if c not in callbacks] + callbacks
        if not any(isinstance(c, StopOnNonFiniteLoss) for c in callbacks):
            callbacks.insert(0, StopOnNonFiniteLoss())
        return super().fit(
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            validation_data=validation_data,
            **kwargs,
        )

    def _checked_inputs(self, x, y):
        """Validates numpy targets now, tf.data targets as they are read; returns (x, y)."""
        from keras_yolov7.losses.targets import check_targets

        if type(x).__module__.startswith("tensorflow") and hasattr(x, "element_spec"):
            from keras_yolov7.data.target_validation import validate_targets

            return validate_targets(x, self.num_classes), y
        images, targets = (x.get("images"), x.get("bounding_boxes")) if isinstance(x, dict) else (x, y)
        if isinstance(targets, dict) and isinstance(images, np.ndarray):
            labels = targets.get("labels", targets.get("classes"))
            if labels is None or "boxes" not in targets:
                raise ValueError(
                    f"targets must be a dict with 'boxes' and 'labels', got keys {sorted(targets)}"
                )
            check_targets(targets["boxes"], labels, self.num_classes)
            if len(images) != len(labels):
                raise ValueError(f"{len(images)} images but targets for {len(labels)} images")
        return x, y

    @staticmethod
    def _steps_and_batch(x, batch_size, steps_per_epoch):
        """Batches per epoch and batch size of a fit() input, for the official schedule."""
        images = x.get("images") if isinstance(x, dict) else x
        if isinstance(images, np.ndarray):
            batch = batch_size or 32
            return steps_per_epoch or math.ceil(len(images) / batch), batch
        if hasattr(x, "element_spec"):
            cardinality = int(x.cardinality())
            steps = steps_per_epoch or (cardinality if cardinality > 0 else None)
            first = next(iter(x))
            first_images = first["images"] if isinstance(first, dict) else first[0]
            if steps is None:
                raise ValueError(
                    "the dataset's length is unknown (or infinite): pass steps_per_epoch to fit()"
                )
            return steps, int(first_images.shape[0])
        if hasattr(x, "__len__") and hasattr(x, "__getitem__"):
            first = x[0]
            first_images = first["images"] if isinstance(first, dict) else first[0]
            return steps_per_epoch or len(x), len(first_images)
        raise ValueError(
            f"cannot tell the batch size and epoch length of a {type(x).__name__} for the official "
            "schedule: pass steps_per_epoch, or compile with an optimizer from "
            "keras_yolov7.training.make_training_setup"
        )

    @staticmethod
    def _unpack(data):
        """`(images, y[, sample_weight])` or `{"images", "bounding_boxes"}` -> `(images, y)` with
        y = {"boxes", "labels"} ("classes", KerasCV's name, is accepted for "labels")."""
        if isinstance(data, dict):
            if "images" not in data:
                raise ValueError(
                    f"a dict batch must have 'images' (and 'bounding_boxes'), got keys {sorted(data)}"
                )
            x, y = data["images"], data.get("bounding_boxes")
        else:
            x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if y is not None:
            if "labels" not in y and "classes" not in y:
                raise ValueError(f"targets must have 'boxes' and 'labels', got keys {sorted(y)}")
            y = {"boxes": y["boxes"], "labels": y["labels"] if "labels" in y else y["classes"]}
        return x, y

    def train_step(self, *args):
        *state, data = args
        return super().train_step(*state, self._unpack(data))

    def test_step(self, *args):
        *state, data = args
        return super().test_step(*state, self._unpack(data))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The YOLOv7 loss `(lbox + lobj + lcls) * batch_size` of a batch; also updates the
        box / obj / cls (and aux) trackers shown in the progress bar.

        Under tf.distribute each replica returns its share of the global batch's loss (every
        normaliser is the global batch's), so that the gradients Keras sums over the replicas are
        the gradient of the global batch; the trackers and Keras' loss show the global values.
        """
        from keras_yolov7.training.replicas import replicas_in_sync
        from keras_yolov7.training.replicas import sum_over_replicas

        replicas = replicas_in_sync()
        boxes = y["boxes"]
        if self.bounding_box_format != "xyxy":
            height, width = keras.ops.shape(x)[1], keras.ops.shape(x)[2]
            boxes = keras.utils.bounding_boxes.convert_format(
                boxes, source=self.bounding_box_format, target="xyxy", height=height, width=width
            )
        parts = self.detection_loss.compute_components(
            {"boxes": boxes, "labels": y["labels"]},
            y_pred,
            replica_sum=sum_over_replicas if replicas > 1 else None,
        )
        for name, tracker in self.loss_trackers.items():
            # A tracker's state is summed over the replicas when read; each replica holds its share
            # of the global value, so it counts that share times the replica count (as Keras does
            # for its own loss tracker) for the mean to be the global value.
            tracker.update_state(parts[name] * replicas if replicas > 1 else parts[name])
        return parts["loss"]
