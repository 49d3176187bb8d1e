"""The preset names: the seven architectures (random weights) and the official COCO weights.

A pretrained preset (`"yolov7_tiny_coco"`, ...) is the official v0.1 release checkpoint of that model
(`https://github.com/WongKinYiu/yolov7/releases/download/v0.1/yolov7-tiny.pt`, ...), fetched once by
`keras_yolov7.models.official_weights` (the one module that downloads), read by the safe `.pt`
reader, converted, and kept as a KerasHub preset directory in the cache (`$KERAS_HOME/keras_yolov7/
presets/<name>`, `~/.keras` by default), which later calls load directly.
"""

import json
import os
import shutil
import tempfile

from keras_yolov7.models.configs import ARCHITECTURES

COCO_CLASS_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
"""The 80 COCO class names in the order of the official models' outputs."""

# Pretrained preset -> (architecture, release file name, COCO AP on test-dev from the paper).
COCO_PRESETS = {
    "yolov7_tiny_coco": ("yolov7_tiny", "yolov7-tiny.pt", 38.7),
    "yolov7_coco": ("yolov7", "yolov7.pt", 51.4),
    "yolov7x_coco": ("yolov7x", "yolov7x.pt", 53.1),
    "yolov7_w6_coco": ("yolov7_w6", "yolov7-w6.pt", 54.9),
    "yolov7_e6_coco": ("yolov7_e6", "yolov7-e6.pt", 56.0),
    "yolov7_d6_coco": ("yolov7_d6", "yolov7-d6.pt", 56.6),
    "yolov7_e6e_coco": ("yolov7_e6e", "yolov7-e6e.pt", 56.8),
}

# Written into every preset directory this package converts; a folder without it (or with another
# format) is rebuilt rather than trusted.
MARKER_FILE = "keras_yolov7.json"
PRESET_FORMAT = 1


def describe_presets():
    """`{name: metadata}` of every preset name, the architectures first."""
    presets = {}
    for name, architecture in ARCHITECTURES.items():
        presets[name] = {
            "description": f"{name} architecture ({architecture['input_size']} px), random weights",
            "pretrained": False,
            "architecture": name,
        }
    for name, (architecture, filename, ap) in COCO_PRESETS.items():
        presets[name] = {
            "description": (
                f"{architecture} trained on COCO by the YOLOv7 authors (official release "
                f"{filename}, {ap} AP on test-dev)"
            ),
            "pretrained": True,
            "architecture": architecture,
            "file": filename,
        }
    return presets


def known_names():
    return list(ARCHITECTURES) + list(COCO_PRESETS)


def is_handle(preset):
    """A KerasHub preset handle or a directory (anything that is not one of our names)."""
    return "://" in preset or os.path.isdir(preset) or os.sep in preset


def cache_dir():
    """The folder that holds converted presets: `$KERAS_HOME/keras_yolov7/presets`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "keras_yolov7", "presets")


def resolve(preset, weights_path=None):
    """A preset name, handle or directory -> what KerasHub's loader takes (a directory or handle).

    Pretrained names are converted on first use and cached; handles and directories pass through.

    Args:
        preset: a name of `describe_presets()`, a KerasHub handle or a preset directory.
        weights_path: for a pretrained name, the official `.pt` file to convert instead of looking
            in `$KERAS_YOLOV7_WEIGHTS_DIR`, the cache and the release URL.

    Raises:
        ValueError: an unknown name (the known ones are listed), a directory that is not a preset.
    """
    if not isinstance(preset, (str, os.PathLike)):
        raise ValueError(f"preset must be a name, handle or directory, got {type(preset).__name__}")
    preset = os.fspath(preset)
    if preset in COCO_PRESETS:
        return _converted(preset, weights_path)
    if weights_path is not None:
        raise ValueError(
            f"weights_path is for the pretrained presets {list(COCO_PRESETS)}, not {preset!r}"
        )
    if preset in ARCHITECTURES:
        return preset
    if os.path.isdir(preset):
        check_preset_directory(preset)
        return preset
    if "://" in preset:
        return preset
    if os.path.exists(preset):
        raise ValueError(
            f"preset {preset!r} is a file; a preset is a directory written by save_to_preset "
            "(for an official .pt file use keras_yolov7.convert.load_torch_checkpoint)"
        )
    raise ValueError(f"unknown preset {preset!r}; expected one of {known_names()}, a preset "
                     "directory or a KerasHub handle (hf://..., kaggle://...)")


def check_preset_directory(directory):
    """Refuses a directory that is not a KerasHub preset of this package, naming what it holds."""
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(
            f"{directory} is not a preset directory: it has no config.json (write one with "
            "save_to_preset)"
        )
    try:
        with open(config_path, encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_path} is not readable JSON ({type(error).__name__})") from None
    name = config.get("registered_name") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name.startswith("keras_yolov7>"):
        raise ValueError(
            f"{directory} holds a {name or 'non-KerasHub'} preset, not a keras_yolov7 one "
            "(expected registered_name 'keras_yolov7>YOLOv7Backbone' in config.json)"
        )
    if name != "keras_yolov7>YOLOv7Backbone":
        raise ValueError(
            f"{directory} holds a {name} preset, which this version of keras_yolov7 does not "
            "know (expected 'keras_yolov7>YOLOv7Backbone'); it was saved by another version"
        )


def _converted(name, weights_path):
    """The cached preset directory of a pretrained name, converting the official file once."""
    directory = os.path.join(cache_dir(), name)
    if weights_path is None and _is_complete(directory):
        return directory
    from keras_yolov7.models.official_weights import official_checkpoint_path

    architecture, filename, _ = COCO_PRESETS[name]
    path = official_checkpoint_path(filename, path=weights_path)
    detector = _detector_from_checkpoint(path, architecture)
    os.makedirs(cache_dir(), exist_ok=True)
    # Written beside the cache entry and renamed into place: an interrupted conversion never
    # leaves a half-written preset that a later call would trust.
    staging = tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir())
    try:
        detector.save_to_preset(staging)
        with open(os.path.join(staging, MARKER_FILE), "w", encoding="utf-8") as file:
            json.dump({"format": PRESET_FORMAT, "preset": name, "source": filename}, file)
        if os.path.isdir(directory):
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def _is_complete(directory):
    try:
        with open(os.path.join(directory, MARKER_FILE), encoding="utf-8") as file:
            marker = json.load(file)
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == PRESET_FORMAT


def _detector_from_checkpoint(path, architecture):
    from keras_yolov7.convert import load_torch_checkpoint

    detector = load_torch_checkpoint(path, class_names=list(COCO_CLASS_NAMES))
    if detector.architecture != architecture:
        raise ValueError(
            f"{path} holds a {detector.architecture} model, not {architecture} (is it the right "
            "release file?)"
        )
    if detector.num_classes != len(COCO_CLASS_NAMES):
        raise ValueError(f"{path} predicts {detector.num_classes} classes, not COCO's 80")
    return detector
