"""SavedModels: the user-facing serving model and the single-signature models TFLite converts."""

import keras
import numpy as np
import tensorflow as tf

from keras_yolov7.export.layout import NMS_OPS


def serving_functions(export_graph, nms, max_detections, iou_threshold, score_threshold):
    """Python functions of images for each signature of an export.

    Args:
        export_graph: a `graph.ExportGraph`.
        nms: "none" (decoded candidates), "v4" / "v5" (class-aware NMS in the graph with the
            builtin NMS op) or "android" (the same NMS in the ObjectDetector layout, TFLite only).

    Returns:
        dict `{signature name: fn}`: "serving_default" (the export's outputs) and, when NMS runs
        in the graph, "decoded" (the pre-NMS candidates, for checks and custom NMS).
    """
    graph = export_graph

    def decoded(images):
        boxes, scores = graph.decoded(images)
        return {"boxes": boxes, "scores": scores}

    if nms == "none":
        return {"serving_default": decoded}
    if nms in NMS_OPS:

        def detections(images):
            return graph.nms(images, nms, max_detections, iou_threshold, score_threshold)

        return {"serving_default": detections, "decoded": decoded}
    if nms == "android":

        def android(images):
            return graph.android(images, max_detections, iou_threshold, score_threshold)

        return {"serving_default": android}
    raise ValueError(f"unknown nms {nms!r}")


def write(path, export_graph, functions, input_dtype, batch_size):
    """Write a SavedModel with one signature per entry of `functions`.

    Args:
        path: output directory.
        export_graph: the `graph.ExportGraph` whose model's variables are saved.
        functions: `{signature name: fn(images) -> dict of tensors}`.
        input_dtype: tf.uint8 (serving) or tf.float32 (TFLite conversion input).
        batch_size: None for a dynamic batch, or a static batch size.
    """
    size = export_graph.image_size
    spec = tf.TensorSpec((batch_size, size, size, 3), input_dtype, name="images")
    # Not `archive.track(model)`: that also saves the model's Keras variables beside the
    # TensorFlow variables the endpoints capture, storing every weight twice. The endpoints'
    # variables are all a SavedModel needs.
    archive = keras.export.ExportArchive()
    for name, fn in functions.items():
        archive.add_endpoint(name, fn, input_signature=[spec])
    archive.write_out(str(path), verbose=False)


def run(path, images, signature="serving_default"):
    """Outputs `{name: np.ndarray}` of one signature of a SavedModel on uint8 `images`."""
    loaded = tf.saved_model.load(str(path))
    outputs = loaded.signatures[signature](images=tf.constant(images))
    return {name: np.asarray(value) for name, value in outputs.items()}
