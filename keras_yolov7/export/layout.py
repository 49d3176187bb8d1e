"""The exports' conventions, shared by the TensorFlow graph code and the NumPy checks.

Kept free of TensorFlow so `keras_yolov7.export` imports under any Keras backend.
"""

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("fp32", "fp16", "int8")
# The quantizations each format offers (TFLite's and ONNX Runtime's int8 are both full-integer,
# calibrated on representative images).
FORMAT_QUANTIZATIONS = {
    "saved_model": ("fp32",),
    "tflite": ("fp32", "fp16", "int8"),
    "onnx": ("fp32", "int8"),
}
# The int8 gate's default: the export fails when mAP@0.5 drops by more than this many points.
DEFAULT_MAX_MAP_DROP = 1.0
NMS_CHOICES = ("none", "v4", "v5", "android")
NMS_OPS = ("v4", "v5")
# The builtin op each in-graph NMS layout runs ("android" is v5 in the ObjectDetector layout).
NMS_OP_NAMES = {
    "v4": "NON_MAX_SUPPRESSION_V4",
    "v5": "NON_MAX_SUPPRESSION_V5",
    "android": "NON_MAX_SUPPRESSION_V5",
}
# Interpreter thread counts every TFLite export is run at by its verification: a kernel whose
# result depends on the thread count (TFLite_Detection_PostProcess did) fails the export.
VERIFIED_THREADS = (1, 2, 4)

# Name scope of the decode tail (the ops after the network) in every exported graph.
DECODE_SCOPE = "decode"

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
# The NMS compares boxes before clipping them to the image, as `predict()` does, clamped to this
# range (normalised) so the classes' regions, CLASS_SHIFT apart, never overlap. Only a box reaching
# more than half an image side beyond the border is clamped.
NMS_BOX_RANGE = (-0.5, 1.5)
# Scores leave the in-graph NMS as integers of 1 / SCORE_UNITS (see graph._class_aware_nms).
SCORE_UNITS = 2**14  # 1 / 2**14 is still a normal float16 (fp16 models store it)
