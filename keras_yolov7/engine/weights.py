"""Weights files for the workflows: loading `.keras` / `.pt` models, the inference form, the
network size a model runs at, and saving a training model's weights as a plain float32 model."""

import contextlib
import os
import warnings
import zipfile

from keras_yolov7.files import atomic_path


def load_model(path):
    """A `YOLOv7ObjectDetector` from a `.keras` file saved by keras-yolov7 or an official `.pt`
    checkpoint, by extension.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a folder, another extension, a file that cannot be read as a model, or
            another kind of model.
    """
    import keras

    import keras_yolov7 as kyv7

    # Imported before reading the file: it registers the classes the file names (the command
    # line loads the package's modules on first use).
    from keras_yolov7.models import YOLOv7ObjectDetector

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"weights {path!r} is a folder; expected a .keras or .pt file")
    extension = os.path.splitext(path)[1].lower()
    if extension in (".pt", ".pth"):
        return kyv7.convert.load_torch_checkpoint(path)
    if extension != ".keras":
        raise ValueError(
            f"weights must be a .keras model or an official .pt checkpoint, got {path!r}"
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a .keras model (a .keras file is a zip archive)")
    try:
        with warnings.catch_warnings():
            # Saved by `train` without an optimizer: nothing to compile, nothing to warn about.
            warnings.simplefilter("ignore", UserWarning)
            model = keras.models.load_model(path, compile=False)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as error:
        if _saved_class_name(path) == "YOLOv7Detector":
            raise ValueError(
                f"{path} was saved by keras_yolov7 0.1 (class YOLOv7Detector), whose format this "
                "version does not read: retrain, or convert the official .pt checkpoint again"
            ) from None
        message = " ".join(str(error).split())[:300]
        raise ValueError(
            f"cannot load {path} as a Keras model ({type(error).__name__}: {message})"
        ) from None
    if not isinstance(model, YOLOv7ObjectDetector):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a YOLOv7ObjectDetector")
    return model


def _saved_class_name(path):
    """The class name in a .keras file's config.json, or None."""
    import json

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        return config.get("class_name")
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None


def check_num_classes(model, dataset, weights, data):
    """Refuses a model whose head predicts another number of classes than the dataset has."""
    if model.num_classes != dataset.num_classes:
        raise ValueError(
            f"{weights} predicts {model.num_classes} classes but {data} has "
            f"{dataset.num_classes} ({', '.join(map(str, dataset.class_names[:8]))}"
            f"{', ...' if dataset.num_classes > 8 else ''}); use weights trained on this dataset"
        )


def inference_model(model):
    """The fused form of `model` returning xyxy boxes (what `predict` and `val` run)."""
    fused = model if model.fused else model.get_fused()
    if fused.bounding_box_format == "xyxy":
        return fused
    config = fused.get_config()
    config.update(bounding_box_format="xyxy", compile=False)
    flexible = type(fused).from_config(config)
    flexible.set_weights(fused.get_weights())
    return flexible


def inference_model_in(model, precision):
    """`inference_model(model)` computing in `precision` (--precision), and a line saying which
    precision that is and why."""
    from keras_yolov7.training.devices import cpu_bfloat16_features
    from keras_yolov7.training.precision import resolve_inference_precision
    from keras_yolov7.training.precision import with_inference_precision

    resolved = resolve_inference_precision(precision)
    line = f"inference precision: {resolved}"
    if precision == "auto":
        features = ", ".join(cpu_bfloat16_features()) or "none"
        line += f" (auto; CPU bfloat16 features: {features})"
    return with_inference_precision(inference_model(model), resolved), line


@contextlib.contextmanager
def float32_policy():
    """Builds models in float32 whatever the global dtype policy (mixed precision training)."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class ModelSaver:
    """Saves a training model's current weights as a `.keras` model without optimizer state
    (a third of the size), in float32, through one copy of the model built once; each file is
    written atomically (an interrupt leaves the previous file)."""

    def __init__(self, model):
        config = model.get_config()
        config["backbone"]["config"]["dtype"] = "float32"
        config["compile"] = False
        with float32_policy():
            self.copy = type(model).from_config(config)
        self.model = model

    def save(self, path, weights=None):
        """Writes the model with `weights` (arrays in `model.get_weights()` order; default the
        model's current weights) to `path`."""
        self.copy.set_weights(self.model.get_weights() if weights is None else weights)
        if self.model.preprocessor is not None:
            # The network size is recorded when training starts (fit), after this copy was made.
            self.copy.preprocessor.image_size = self.model.preprocessor.image_size
        with atomic_path(path) as temporary:
            self.copy.save(temporary)
