"""load_torch_checkpoint: an official YOLOv7 .pt file -> a YOLOv7ObjectDetector, exactly."""

from keras_yolov7.convert.state_dict import identify_preset
from keras_yolov7.convert.state_dict import load_torch_state_dict
from keras_yolov7.convert.state_dict import num_classes_of
from keras_yolov7.convert.torch_checkpoint import TorchCheckpointError
from keras_yolov7.convert.torch_checkpoint import read_torch_checkpoint
from keras_yolov7.models.configs import ARCHITECTURES


def load_torch_checkpoint(path, **model_kwargs):
    """Builds the matching `YOLOv7ObjectDetector` and loads an official checkpoint into it.

    The preset is recognised from the state_dict's key names, the class count from the head's
    shape, the anchors from the checkpoint's buffers and the class names from the pickled model
    (when present). The file is read by `read_torch_checkpoint`: no torch, no official code and no
    pickled code is run; the EMA weights are preferred over the raw ones, fp16 becomes fp32.

    Args:
        path: an official training checkpoint (`yolov7.pt`, `yolov7-tiny.pt`, ...; a whole pickled
            model or a plain state_dict also work), training configuration key names.
        **model_kwargs: other `YOLOv7ObjectDetector` arguments (e.g. `bounding_box_format`).

    Returns:
        a `YOLOv7ObjectDetector` in training form; call `get_fused()` for inference.
    """
    from keras_yolov7.models import YOLOv7ObjectDetector

    state_dict, info = read_torch_checkpoint(path, return_metadata=True)
    preset = identify_preset(state_dict)
    if preset is None:
        raise TorchCheckpointError(
            f"{path}: its {len(state_dict)} tensors do not match the training-configuration key names "
            f"of any preset {list(ARCHITECTURES)} (deploy-configuration or re-parameterised "
            "checkpoints are not supported; convert the training checkpoint)"
        )
    num_classes = num_classes_of(state_dict, preset)
    names = info.class_names if info.class_names and len(info.class_names) == num_classes else None
    model_kwargs.setdefault("class_names", names)
    model = YOLOv7ObjectDetector.from_preset(preset, num_classes=num_classes, **model_kwargs)
    return load_torch_state_dict(model, state_dict)
