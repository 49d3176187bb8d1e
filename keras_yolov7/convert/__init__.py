"""Official YOLOv7 PyTorch checkpoints -> Keras: key mapping and a safe .pt reader."""

from keras_yolov7.convert.state_dict import identify_preset
from keras_yolov7.convert.state_dict import load_torch_state_dict
from keras_yolov7.convert.state_dict import official_layout
from keras_yolov7.convert.state_dict import to_torch_state_dict

__all__ = ["identify_preset", "load_torch_state_dict", "official_layout", "to_torch_state_dict"]
