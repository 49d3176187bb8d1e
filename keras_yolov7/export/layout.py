"""The exports' conventions, shared by the TensorFlow graph code and the NumPy checks.

Kept free of TensorFlow so `keras_yolov7.export` imports under any Keras backend.
"""

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("fp32", "fp16", "int8")
NMS_CHOICES = ("none", "v4", "v5", "android")
NMS_OPS = ("v4", "v5")
POSTPROCESS_OP = "TFLite_Detection_PostProcess"

# Output names, in the order of the model's outputs.
DECODED_OUTPUTS = ("boxes", "scores")
DETECTION_OUTPUTS = ("boxes", "classes", "scores", "count")

# Class-aware NMS runs on integer boxes: each coordinate rounded to 1 / BOX_UNITS of the image,
# then shifted by class * CLASS_SHIFT so boxes of different classes never overlap. Integers keep
# the shift exact in an int8 graph, where a float offset would share one int8 scale with the
# coordinates and crush them; float32 holds them exactly while num_classes * CLASS_SHIFT < 2**24.
BOX_UNITS = 4096
CLASS_SHIFT = 2 * BOX_UNITS
MAX_CLASSES = 2**24 // CLASS_SHIFT - 1
# Scores leave the in-graph NMS as integers of 1 / SCORE_UNITS (see graph._class_aware_nms).
SCORE_UNITS = 2**14  # 1 / 2**14 is still a normal float16 (fp16 models store it)
