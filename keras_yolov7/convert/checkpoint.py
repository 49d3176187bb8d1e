"""load_torch_checkpoint: an official YOLOv7 .pt file (any official form) -> a YOLOv7ObjectDetector."""

import dataclasses

from keras_yolov7.convert.state_dict import load_torch_state_dict
from keras_yolov7.convert.state_dict import names_match
from keras_yolov7.convert.state_dict import num_classes_of
from keras_yolov7.convert.state_dict import official_form
from keras_yolov7.convert.state_dict import official_layout
from keras_yolov7.convert.state_dict import preset_candidates
from keras_yolov7.convert.torch_checkpoint import TorchCheckpointError
from keras_yolov7.convert.torch_checkpoint import read_torch_checkpoint


def load_torch_checkpoint(path, return_info=False, **model_kwargs):
    """Builds the matching `YOLOv7ObjectDetector` and loads an official checkpoint into it.

    The form (training, deploy or deploy_fused, see `keras_yolov7.convert.load_torch_state_dict`)
    and the preset are recognised from the state_dict's key names, the class count from the head's
    shape, the anchors from the checkpoint's buffers and the class names from the pickled model
    (when present). The file is read by `read_torch_checkpoint`: no torch, no official code and no
    pickled code is run; the EMA weights are preferred over the raw ones, fp16 becomes fp32.

    Args:
        path: an official checkpoint (`yolov7.pt`, `yolov7_training.pt`, `yolov7-tiny.pt`, ...;
            a whole pickled model or a plain state_dict also work).
        return_info: also return the `TorchCheckpointInfo`, with `preset` and `form` filled in.
        **model_kwargs: other `YOLOv7ObjectDetector` arguments (e.g. `bounding_box_format`).

    Returns:
        a `YOLOv7ObjectDetector`: in training form (`fused=False`) for a training or deploy file (a
        deploy file's implicit vectors are neutral, and a P6 model's auxiliary head, absent from
        deploy files, keeps its fresh initialisation), fused for a deploy_fused file. With
        `return_info=True`, a tuple `(model, info)`.

    Raises:
        TorchCheckpointError: the file is unreadable or holds no YOLOv7 model of a known preset.
    """
    from keras_yolov7.models.configs import ARCHITECTURES
    from keras_yolov7.models import YOLOv7ObjectDetector

    state_dict, info = read_torch_checkpoint(path, return_metadata=True)
    try:
        form = official_form(state_dict)
    except ValueError as error:
        raise TorchCheckpointError(f"{path}: {error}") from None
    candidates = preset_candidates(state_dict)
    model = None
    for preset in candidates:
        arch = ARCHITECTURES[preset]
        num_classes = num_classes_of(state_dict, len(arch["anchors"][0]) // 2)
        names = info.class_names if info.class_names and len(info.class_names) == num_classes else None
        model = YOLOv7ObjectDetector.from_preset(
            preset,
            num_classes=num_classes,
            fused=form == "deploy_fused",
            **{"class_names": names, **model_kwargs},
        )
        # Presets with equally wide heads (yolov7_e6, yolov7_e6e) differ in their key names; a
        # single candidate is loaded even on a near miss, for the strict load to name the keys.
        if len(candidates) == 1 or names_match(state_dict, official_layout(model, form=form)):
            break
        model = None
    if model is None:
        raise TorchCheckpointError(
            f"{path}: its {len(state_dict)} tensors do not match the training-configuration key "
            f"names of any preset {list(ARCHITECTURES)}, nor their deploy or "
            "deploy_fused forms"
        )
    try:
        load_torch_state_dict(model, state_dict)
    except ValueError as error:
        raise TorchCheckpointError(f"{path}: {error}") from None
    if return_info:
        return model, dataclasses.replace(info, preset=model.architecture, form=form)
    return model
