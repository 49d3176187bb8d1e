"""YOLOv7ObjectDetector: the YOLOv7 detection task (heads, loss, decoding and NMS) on KerasHub."""

import math
import warnings

import keras
import keras_hub
import numpy as np
from keras_hub.src.utils.python_utils import classproperty

from keras_yolov7.layers.block import copy_fused_weights
from keras_yolov7.layers.head import AuxiliaryHead
from keras_yolov7.layers.head import YOLOv7Head
from keras_yolov7.models import presets as preset_table
from keras_yolov7.models.configs import ARCHITECTURES
from keras_yolov7.models.yolov7_backbone import YOLOv7Backbone
from keras_yolov7.models.yolov7_image_converter import YOLOv7ImageConverter
from keras_yolov7.models.yolov7_object_detector_preprocessor import (
    YOLOv7ObjectDetectorPreprocessor,
)

PREDICTION_SETTINGS = ("confidence_threshold", "iou_threshold", "max_detections", "multi_label")
LETTERBOX_KEYS = ("scale", "pad", "original_size")


@keras.saving.register_keras_serializable(package="keras_yolov7")
class YOLOv7ObjectDetector(keras_hub.models.ObjectDetector):
    """YOLOv7 object detector (arXiv 2207.02696): a `YOLOv7Backbone`, the lead head with implicit
    knowledge (IDetect) and, for the P6 models, the auxiliary head.

    Calling the model returns raw logits, one tensor per output level: the lead levels first, then
    the auxiliary levels of the P6 models (training form only), each
    `(batch, height / stride, width / stride, num_anchors, 5 + num_classes)` with channels
    `x, y, w, h, objectness, classes...`. `predict()` takes images of any size (paths, PIL images,
    arrays, datasets), letterboxes them with the preprocessor and returns boxes in each image's own
    pixels. `fit()` trains with the official lead-guided OTA loss; `compile()`'s defaults are the
    official recipe.

    Args:
        backbone: a `YOLOv7Backbone`.
        num_classes: number of classes.
        bounding_box_format: format of boxes given to and returned by the model (any Keras bounding
            box format: "xyxy", "xywh", "center_xywh", "yxyx", "rel_xyxy", ...), in pixels.
        anchors: `(num_levels, num_anchors, 2)` anchor sizes in pixels, overriding the
            architecture's (official checkpoints may carry anchors re-fitted by autoanchor).
        preprocessor: a `YOLOv7ObjectDetectorPreprocessor` (network size, letterbox, class names),
            or None (a 640 x 640 one without names... is created by `from_preset`).
        confidence_threshold, iou_threshold, max_detections, multi_label: `predict()` settings:
            detections need objectness * class probability above `confidence_threshold`, greedy
            class-aware NMS suppresses at IoU above `iou_threshold`, at most `max_detections` per
            image; `multi_label` lets a box be detected as several classes. Defaults: the official
            detection setting (0.25, 0.45, 300, False); `keras_yolov7.ops.EVALUATION_SETTINGS`
            holds the official evaluation one (0.001, 0.65, 300, True).
        dtype: dtype policy of the heads (default: the backbone's).

    Example:
    >>> detector = YOLOv7ObjectDetector.from_preset("yolov7_tiny", num_classes=3)
    >>> raw = detector(np.zeros((1, 256, 256, 3), "uint8"))
    >>> [tuple(r.shape) for r in raw]
    [(1, 32, 32, 3, 8), (1, 16, 16, 3, 8), (1, 8, 8, 3, 8)]
    >>> detections = detector.predict(np.zeros((480, 640, 3), "uint8"))
    """

    backbone_cls = YOLOv7Backbone
    preprocessor_cls = YOLOv7ObjectDetectorPreprocessor

    def __init__(
        self,
        backbone,
        num_classes=80,
        bounding_box_format="xyxy",
        anchors=None,
        preprocessor=None,
        confidence_threshold=0.25,
        iou_threshold=0.45,
        max_detections=300,
        multi_label=False,
        dtype=None,
        **kwargs,
    ):
        compile_now = kwargs.pop("compile", True)
        _check_kwargs(kwargs, type(self).__name__)
        if not isinstance(backbone, YOLOv7Backbone):
            raise ValueError(
                f"backbone must be a YOLOv7Backbone, got {type(backbone).__name__} (for an "
                "architecture name or dict use YOLOv7Backbone(architecture), or from_preset)"
            )
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        num_classes = int(num_classes)
        anchors = _checked_anchors(anchors, backbone)
        _check_preprocessor(preprocessor, num_classes, max(backbone.strides))

        images = keras.Input(backbone.image_shape, name="images")
        features = backbone(images)
        lead_head = YOLOv7Head(
            num_classes,
            backbone.num_anchors,
            backbone.strides,
            fused=backbone.fused,
            name="lead_head",
            dtype=dtype,
        )
        raw = list(lead_head([features[name] for name in backbone.lead_levels]))
        if backbone.auxiliary_levels:
            aux_head = AuxiliaryHead(
                num_classes, backbone.num_anchors, backbone.strides, name="aux_head", dtype=dtype
            )
            raw += list(aux_head([features[name] for name in backbone.auxiliary_levels]))
        super().__init__(inputs=images, outputs=raw, dtype=dtype, compile=False, **kwargs)

        self.backbone = backbone
        self.preprocessor = preprocessor
        self.num_classes = num_classes
        self.bounding_box_format = bounding_box_format
        self.anchors = anchors
        self.set_prediction_settings(
            confidence_threshold=confidence_threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
            multi_label=multi_label,
        )
        if compile_now:
            self.compile()

    # The network's description, from the backbone and the preprocessor ------------------------

    @property
    def architecture(self):
        return self.backbone.architecture

    @property
    def fused(self):
        return self.backbone.fused

    @property
    def strides(self):
        return self.backbone.strides

    @property
    def num_levels(self):
        return len(self.backbone.strides)

    @property
    def family(self):
        return self.backbone.family

    @property
    def elan_chain_block(self):
        return self.backbone.elan_chain_block

    @property
    def has_auxiliary_head(self):
        return bool(self.backbone.auxiliary_levels)

    @property
    def class_names(self):
        """The class names of the preprocessor, or None."""
        return None if self.preprocessor is None else self.preprocessor.class_names

    @property
    def image_size(self):
        """`(height, width)` the model runs at: the preprocessor's network size, else the
        backbone's static input size, else None."""
        if self.preprocessor is not None:
            return tuple(self.preprocessor.image_size)
        height, width = self.backbone.image_shape[:2]
        return None if height is None or width is None else (height, width)

    # Presets ------------------------------------------------------------------------------------

    @classproperty
    def presets(cls):
        """The preset names: architectures (random weights) and official COCO weights."""
        return preset_table.describe_presets()

    @classmethod
    def from_preset(cls, preset, load_weights=True, weights_path=None, **kwargs):
        """A detector from a preset name, a KerasHub handle or a preset directory.

        Args:
            preset: an architecture name ("yolov7_tiny", "yolov7", "yolov7x", "yolov7_w6",
                "yolov7_e6", "yolov7_d6", "yolov7_e6e": random weights); a pretrained name
                ("yolov7_tiny_coco", ..., "yolov7_e6e_coco": the official COCO weights, downloaded
                once from the official release and converted; offline, put the release file, e.g.
                `yolov7-tiny.pt`, in a folder named by `KERAS_YOLOV7_WEIGHTS_DIR` or pass
                `weights_path`); a directory written by `save_to_preset`; or a KerasHub handle
                ("hf://user/model", "kaggle://...").
            load_weights: load the preset's weights (else random initialisation).
            weights_path: a pretrained name's official `.pt` file, to use instead of downloading.
            **kwargs: `num_classes` (another class count than the preset's keeps every weight but
                the class outputs of the heads: fine-tuning), `class_names`, `image_size` (the
                network size: an int or (height, width)), and other constructor arguments
                (`bounding_box_format`, `confidence_threshold`, `name`, ...). For an architecture
                name also the backbone's `image_shape` (a static input shape), `fused`,
                `elan_chain_block` and `dtype`.

        Example:
        >>> detector = YOLOv7ObjectDetector.from_preset("yolov7_tiny_coco")
        >>> detector.predict("photo.jpg")["boxes"]          # pixels of photo.jpg
        >>> fine_tune = YOLOv7ObjectDetector.from_preset(
        ...     "yolov7_tiny_coco", num_classes=2, class_names=["cat", "dog"])
        """
        image_size = kwargs.pop("image_size", None)
        class_names = kwargs.pop("class_names", None)
        if preset in ARCHITECTURES:
            if weights_path is not None:
                raise ValueError(
                    f"{preset!r} is an architecture (random weights); weights_path is for the "
                    f"pretrained presets {list(preset_table.COCO_PRESETS)}"
                )
            backbone_kwargs = {
                key: kwargs.pop(key)
                for key in ("image_shape", "fused", "elan_chain_block", "dtype")
                if key in kwargs
            }
            backbone = YOLOv7Backbone(
                architecture=preset, name=f"{preset}_backbone", **backbone_kwargs
            )
            size = image_size if image_size is not None else backbone.training_size
            preprocessor = YOLOv7ObjectDetectorPreprocessor(
                YOLOv7ImageConverter(image_size=size), class_names=class_names
            )
            kwargs.setdefault("name", preset)
            return cls(backbone=backbone, preprocessor=preprocessor, **kwargs)

        directory = preset_table.resolve(preset, weights_path)
        num_classes = kwargs.pop("num_classes", None)
        with warnings.catch_warnings():
            # A preset saved after fit() holds the optimizer's variables; a fresh detector has no
            # optimizer to load them into, which is what a preset is for.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            detector = super().from_preset(directory, load_weights=load_weights, **kwargs)
        if num_classes is not None and int(num_classes) != detector.num_classes:
            detector = detector.with_classes(num_classes, class_names)
        elif class_names is not None:
            detector.preprocessor.class_names = _names(class_names, detector.num_classes)
        if image_size is not None:
            detector.preprocessor.image_size = image_size
            _check_preprocessor(detector.preprocessor, detector.num_classes, max(detector.strides))
        return detector

    def with_classes(self, num_classes, class_names=None):
        """A new detector for another class count that keeps every weight of this one but the
        class outputs of the heads (which start fresh): the start of fine-tuning.

        Args:
            num_classes: the new number of classes.
            class_names: their names, or None.

        Returns:
            A `YOLOv7ObjectDetector` with this one's backbone weights, box and objectness outputs,
            implicit vectors, anchors, settings and network size.
        """
        from keras_yolov7.models.transfer import transfer_weights

        class_names = _names(class_names, num_classes)
        config = self.get_config()
        if config["preprocessor"] is not None:
            config["preprocessor"]["config"]["class_names"] = class_names
        config.update(num_classes=int(num_classes), compile=False)
        target = self.__class__.from_config(config)
        transfer_weights(self, target)
        target.compile()
        return target

    def save_to_preset(self, preset_dir, max_shard_size=10):
        """Writes a KerasHub preset directory: config, weights, preprocessor (network size,
        letterbox, class names). `keras_hub.models.ObjectDetector.from_preset(preset_dir)` and
        `YOLOv7ObjectDetector.from_preset(preset_dir)` load it."""
        if self.preprocessor is None:
            raise ValueError(
                "this detector has no preprocessor (network size, class names); set one, e.g. "
                "YOLOv7ObjectDetectorPreprocessor(YOLOv7ImageConverter(image_size=640)), before "
                "saving a preset"
            )
        super().save_to_preset(preset_dir, max_shard_size=max_shard_size)

    # Fusing and configuration -------------------------------------------------------------------

    def get_fused(self):
        """The inference form of this model, with equal lead outputs (to float precision).

        BatchNormalization is folded into every conv, RepConv / RepConvN branches are merged into
        one 3x3 conv, the implicit vectors are folded into the head convs and the auxiliary head is
        dropped. Returns a new `YOLOv7ObjectDetector` whose backbone has `fused=True`, with the
        same preprocessor settings, anchors and prediction settings.
        """
        config = self.get_config()
        config.update(
            backbone=self.backbone.get_fused(), name=f"{self.name}_fused", compile=False
        )
        fused = self.__class__.from_config(config)
        copy_fused_weights(self.get_layer("lead_head"), fused.get_layer("lead_head"))
        fused.compile()
        return fused

    def get_compile_config(self):
        # A detector compiles itself with the official recipe when it is built (KerasHub's
        # convention), so a loaded one is ready to train: nothing to restore.
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            bounding_box_format=self.bounding_box_format,
            anchors=np.asarray(self.anchors).tolist(),
            **self.prediction_settings,
        )
        return config

    # Prediction -----------------------------------------------------------------------------

    def set_prediction_settings(self, **settings):
        """Changes what `predict()` returns: `confidence_threshold`, `iou_threshold`,
        `max_detections`, `multi_label` (see the class docstring)."""
        current = dict(getattr(self, "prediction_settings", {}))
        unknown = set(settings) - set(PREDICTION_SETTINGS)
        if unknown:
            raise ValueError(
                f"unknown prediction settings {sorted(unknown)}; expected some of "
                f"{list(PREDICTION_SETTINGS)}"
            )
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

    def __call__(self, *args, **kwargs):
        images = args[0] if args else kwargs.get("inputs")
        shape = getattr(images, "shape", None)
        if shape is not None and (len(shape) != 4 or shape[-1] not in (3, None)):
            raise ValueError(
                f"images must have shape (batch, height, width, 3) (RGB), got {tuple(shape)}"
            )
        if isinstance(images, np.ndarray) and images.dtype != np.uint8 and images.size:
            # Concrete pixels are checked here; traced tensors cannot be without a cost per call.
            from keras_yolov7.models.image_inputs import check_image

            for index, image in enumerate(images.reshape((-1,) + images.shape[-3:])):
                check_image(image, f"image {index}")
        return super().__call__(*args, **kwargs)

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

    def predict(self, x, batch_size=None, verbose="auto", callbacks=None):
        """Detections on images of any size, with boxes in each image's own pixels.

        Every image is letterboxed to the network size by the preprocessor (the size the model was
        trained at), run, decoded with the prediction settings (`set_prediction_settings`), and
        its boxes are mapped back to the original image and clipped to it.

        Args:
            x: what you have: an image file path, a PIL image, an array or tensor
                `(height, width, 3)` or `(batch, height, width, 3)` (RGB, uint8 or float 0..255), a
                list of any of these (mixed sizes welcome), or a tf.data dataset of images (or of
                `{"images": ...}` dicts). Images already at the network size with their letterbox
                metadata (a dict `{"images", "scale", "pad"[, "original_size"]}`, or the
                validation pipeline's dataset of `(images, targets)`) are run as given.
            batch_size: images per forward pass (default 8).
            verbose, callbacks: as `keras.Model.predict`.

        Returns:
            A dict of numpy arrays, one row per image: `"boxes"` `(N, max_detections, 4)` in
            `bounding_box_format` and each image's pixels, `"confidence"` `(N, max_detections)`,
            `"labels"` `(N, max_detections)` int32 and `"num_detections"` `(N,)` int32; rows are
            sorted by confidence and padded with -1.

        Raises:
            ValueError: naming the image: wrong rank or channels, empty, non-finite or
                out-of-range pixels, an unreadable file; or no images at all.
        """
        if _is_letterboxed(x):
            if isinstance(x, dict):
                # (images, metadata) rather than one dict: Keras calls the model on `x` while
                # building, and the model takes images.
                x = (x["images"], {key: x[key] for key in LETTERBOX_KEYS if key in x})
            return keras.Model.predict(
                self, x, batch_size=batch_size, verbose=verbose, callbacks=callbacks
            )
        from keras_yolov7.models.image_inputs import ImageInputError
        from keras_yolov7.models.image_inputs import iterate_images

        if self.preprocessor is None:
            if _is_network_batch(x, max(self.strides)):
                # Nothing to letterbox with: a batch the network takes as it is runs as it is,
                # boxes in its pixels (clipped to them).
                count, height, width = x.shape[:3]
                meta = {
                    "scale": np.ones((count,), np.float32),
                    "pad": np.zeros((count, 2), np.float32),
                    "original_size": np.tile(np.int32([[height, width]]), (count, 1)),
                }
                return keras.Model.predict(
                    self, (x, meta), batch_size=batch_size, verbose=verbose, callbacks=callbacks
                )
            raise ValueError(
                "predict() needs the preprocessor (network size) to letterbox images; this "
                "detector has none: set detector.preprocessor, or pass a (batch, height, width, 3) "
                f"array with height and width multiples of {max(self.strides)}"
            )
        batches = _LetterboxedBatches(iterate_images(x), self.preprocessor, batch_size or 8)
        if not batches.peek():
            raise ImageInputError("no images to predict (the input is empty)")
        outputs = [
            keras.Model.predict(
                self, batch, batch_size=len(batch[0]), verbose=0, callbacks=callbacks
            )
            for batch in batches.progress(verbose)
        ]
        return {key: np.concatenate([o[key] for o in outputs]) for key in outputs[0]}

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
            letterbox = {key: meta.get(key) for key in LETTERBOX_KEYS}
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

        A fused (inference-only) detector is compiled for prediction only: `fit` refuses it.
        """
        from keras_yolov7.losses import YOLOv7Loss
        from keras_yolov7.training.devices import default_jit_compile

        if isinstance(jit_compile, str) and jit_compile == "auto":
            jit_compile = default_jit_compile()
        if self.fused:
            self.detection_loss = None
            self._auto_optimizer = False
            keras.Model.compile(self, jit_compile=jit_compile, **kwargs)
            return
        if isinstance(loss, str) and loss == "auto":
            loss = YOLOv7Loss.from_detector(self)
        if not isinstance(loss, YOLOv7Loss):
            raise ValueError(
                f"loss must be 'auto' or a keras_yolov7.losses.YOLOv7Loss, got {type(loss).__name__}"
            )
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
        keras.Model.compile(self, optimizer=optimizer, loss=None, **self._compile_kwargs)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, steps_per_epoch=None, callbacks=None,
            validation_data=None, **kwargs):
        """`keras.Model.fit` with the detector's checks and, after `compile()` with the defaults,
        the official optimizer and EMA built for this run.

        The batches must be at one size, the size the model trains at (the training pipeline,
        `keras_yolov7.data.make_train_dataset`, letterboxes and augments to it); the preprocessor
        records that size, so that `predict`, evaluation and export use it afterwards.

        Targets are checked before training (numpy arrays) or while batches are read (tf.data):
        a label `>= num_classes` or `< -1` or a NaN coordinate of a real box raises an error naming
        it. A loss that becomes NaN or infinite stops training with a `NonFiniteLossError`.

        Args: as `keras.Model.fit`. x: images `(batch, height, width, 3)` 0..255 with y =
            {"boxes": (batch, max_boxes, 4) in `bounding_box_format`, pixels, "labels":
            (batch, max_boxes)} padded with -1 ("classes" is accepted for "labels"); or a
            tf.data.Dataset / generator of such `(images, y)` batches or of
            `{"images", "bounding_boxes"}` dicts.
        """
        from keras_yolov7.training import make_training_setup
        from keras_yolov7.training.distribution import model_scope
        from keras_yolov7.training.guard import StopOnNonFiniteLoss

        if self.fused:
            raise ValueError(
                "this detector is fused (inference only); train the unfused model and call "
                "get_fused() afterwards"
            )
        x, y = self._checked_inputs(x, y)
        if validation_data is not None and not isinstance(validation_data, tuple):
            validation_data, _ = self._checked_inputs(validation_data, None)
        self._record_training_size(x)
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
        if hasattr(x, "element_spec"):
            # A tf.data pipeline shuffles itself; Keras' default shuffle=True would only warn.
            kwargs.setdefault("shuffle", False)
        # keras.Model.fit, not the KerasHub PipelineModel's: the batches are already at the network
        # size (see docs/models.md), and train_step reads the target formats itself.
        return keras.Model.fit(
            self,
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            validation_data=validation_data,
            **kwargs,
        )

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        """`keras.Model.evaluate`: the loss on batches at the network size (for COCO mAP use
        `keras_yolov7.evaluation.evaluate_model`)."""
        return keras.Model.evaluate(self, x, y, batch_size=batch_size, **kwargs)

    # The batch methods are keras.Model's too, for the same reason as fit and evaluate.
    train_on_batch = keras.Model.train_on_batch
    test_on_batch = keras.Model.test_on_batch
    predict_on_batch = keras.Model.predict_on_batch

    def _record_training_size(self, x):
        """Sets the preprocessor's network size to the size of the training batches."""
        shape = _image_shape_of(x)
        if self.preprocessor is None or shape is None:
            return
        stride = max(self.strides)
        if shape[0] % stride or shape[1] % stride:
            raise ValueError(
                f"training images are {shape[0]} x {shape[1]}, not multiples of the model's "
                f"largest stride {stride}"
            )
        self.preprocessor.image_size = shape

    def _checked_inputs(self, x, y):
        """Validates numpy targets now, tf.data targets as they are read; returns (x, y)."""
        from keras_yolov7.losses.target_checks import check_targets

        if type(x).__module__.startswith("tensorflow") and hasattr(x, "element_spec"):
            from keras_yolov7.data.pipeline_target_checks import validate_targets

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

    def _shapes_may_vary(self):
        """Whether the train step may have data-dependent shapes: a TensorFlow graph without XLA
        or eager PyTorch (the loss then cuts the target padding, `compact_targets`); not under
        XLA or JAX's jit."""
        backend = keras.backend.backend()
        if backend == "torch":
            return True
        if backend == "tensorflow":
            return not getattr(self, "jit_compile", False)
        return False

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
            compact_targets=self._shapes_may_vary(),
        )
        for name, tracker in self.loss_trackers.items():
            # A tracker's state is summed over the replicas when read; each replica holds its share
            # of the global value, so it counts that share times the replica count (as Keras does
            # for its own loss tracker) for the mean to be the global value.
            tracker.update_state(parts[name] * replicas if replicas > 1 else parts[name])
        return parts["loss"]


class _LetterboxedBatches:
    """Groups a stream of `(description, image)` into letterboxed prediction batches."""

    def __init__(self, images, preprocessor, batch_size):
        self.images = iter(images)
        self.preprocessor = preprocessor
        self.batch_size = int(batch_size)
        self._first = None

    def peek(self):
        """Whether there is at least one image (reads it)."""
        if self._first is None:
            self._first = next(self.images, None)
        return self._first is not None

    def _all(self):
        if self.peek():
            yield self._first
        yield from self.images

    def __iter__(self):
        batch = []
        for description, image in self._all():
            padded, scale, pad = self.preprocessor.letterbox(image)
            batch.append((padded, scale, pad, image.shape[:2]))
            if len(batch) == self.batch_size:
                yield _stack(batch)
                batch = []
        if batch:
            yield _stack(batch)

    def progress(self, verbose):
        """Iterates the batches, with one progress bar over images when verbose."""
        show = verbose == 1 or (verbose == "auto" and keras.utils.is_interactive_logging_enabled())
        bar = keras.utils.Progbar(None, unit_name="image") if show else None
        done = 0
        for batch in self:
            yield batch
            done += len(batch[0])
            if bar is not None:
                bar.update(done)
        if bar is not None:
            bar.update(done, finalize=True)


def _stack(batch):
    """`(images, letterbox metadata)` of a list of `(letterboxed, scale, pad, original size)`."""
    images = np.stack([b[0] for b in batch]).astype(np.float32)
    return images, {
        "scale": np.asarray([b[1] for b in batch], np.float32),
        "pad": np.stack([b[2] for b in batch]).astype(np.float32),
        "original_size": np.asarray([b[3] for b in batch], np.int32),
    }


def _is_letterboxed(x):
    """A batch or dataset already letterboxed, with its metadata: a dict with "images", "scale"
    and "pad", or a tf.data dataset of `(images, {"scale", "pad", ...})` (the validation
    pipeline's)."""
    if isinstance(x, dict):
        return {"images", "scale", "pad"} <= set(x)
    spec = getattr(x, "element_spec", None)
    return (
        isinstance(spec, tuple)
        and len(spec) >= 2
        and isinstance(spec[1], dict)
        and {"scale", "pad"} <= set(spec[1])
    )


def _is_network_batch(x, stride):
    """A `(B, H, W, 3)` numpy batch of finite pixels with H and W multiples of `stride`."""
    return (
        isinstance(x, np.ndarray)
        and x.ndim == 4
        and x.shape[0] > 0
        and x.shape[-1] == 3
        and x.shape[1] % stride == 0
        and x.shape[2] % stride == 0
        and x.shape[1] > 0
        and x.shape[2] > 0
        and (x.dtype == np.uint8 or bool(np.isfinite(x).all()))
    )


def _image_shape_of(x):
    """Static `(height, width)` of the training images of a fit() input, when known."""
    if isinstance(x, dict):
        x = x.get("images")
    if isinstance(x, np.ndarray) and x.ndim == 4:
        return tuple(int(s) for s in x.shape[1:3])
    spec = getattr(x, "element_spec", None)
    if spec is None:
        return None
    if isinstance(spec, dict):
        spec = spec.get("images")
    elif isinstance(spec, tuple):
        spec = spec[0]
    shape = getattr(spec, "shape", None)
    if shape is None or shape.rank != 4 or shape[1] is None or shape[2] is None:
        return None
    return int(shape[1]), int(shape[2])


def _checked_anchors(anchors, backbone):
    expected = backbone.default_anchors
    if anchors is None:
        return expected.copy()
    anchors = np.asarray(anchors, np.float32)
    if anchors.size == expected.size and anchors.shape != expected.shape:
        anchors = anchors.reshape(expected.shape)
    if anchors.shape != expected.shape:
        raise ValueError(
            f"anchors must have shape {expected.shape} (levels, anchors, 2) for this "
            f"architecture, got {anchors.shape}"
        )
    return anchors


def _check_preprocessor(preprocessor, num_classes, stride):
    if preprocessor is None:
        return
    if not isinstance(preprocessor, YOLOv7ObjectDetectorPreprocessor):
        raise ValueError(
            f"preprocessor must be a YOLOv7ObjectDetectorPreprocessor, got "
            f"{type(preprocessor).__name__}"
        )
    names = preprocessor.class_names
    if names is not None and len(names) != num_classes:
        raise ValueError(
            f"the preprocessor has {len(names)} class names but num_classes is {num_classes}"
        )
    height, width = preprocessor.image_size
    if height % stride or width % stride:
        suggestion = tuple(max(1, round(s / stride)) * stride for s in (height, width))
        raise ValueError(
            f"image_size {(height, width)} is not a multiple of the model's largest stride "
            f"{stride}; use e.g. {suggestion}"
        )


def _check_kwargs(kwargs, owner):
    # Keras' functional models accept (and ignore) any keyword; a misspelt option must not vanish.
    unknown = sorted(set(kwargs) - {"name", "trainable"})
    if unknown:
        raise TypeError(f"{owner} got unexpected arguments {unknown}")


def _names(class_names, num_classes):
    if class_names is None:
        return None
    names = [str(name) for name in class_names]
    if len(names) != int(num_classes):
        raise ValueError(f"class_names has {len(names)} names but num_classes is {num_classes}")
    return names
