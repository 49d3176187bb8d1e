"""The exported files run as apps run them: the LiteRT interpreter at a chosen thread count, and
MediaPipe Tasks' ObjectDetector (the C++ core of its Android and iOS libraries)."""

import numpy as np


def interpreter_outputs(model, images, num_threads):
    """A TFLite model's outputs on each image, from a fresh LiteRT interpreter.

    Args:
        model: TFLite model bytes or a path.
        images: `(N, size, size, 3)` RGB pixels 0..255 at the model's input size.
        num_threads: the interpreter's CPU threads (XNNPACK included).

    Returns:
        list of `{output name: np.ndarray}` (the signature's names), one per image.
    """
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, bytes):
        source = {"model_content": model}
    else:
        source = {"model_path": str(model)}
    runner = Interpreter(num_threads=int(num_threads), **source)
    runner.allocate_tensors()
    dtype = runner.get_input_details()[0]["dtype"]
    signature = runner.get_signature_runner()
    outputs = (signature(images=image[None].astype(dtype)) for image in np.asarray(images))
    return [{name: np.array(value) for name, value in found.items()} for found in outputs]


def mediapipe_error():
    """None when MediaPipe Tasks' vision API imports, else why it does not."""
    try:
        from mediapipe.tasks.python import vision  # noqa: F401
    except ImportError as error:
        return f"{type(error).__name__}: {error}"
    return None


def mediapipe_detections(path, images, max_results=-1):
    """MediaPipe Tasks' ObjectDetector on each image, as an app gets them.

    MediaPipe resizes each image to the model's input size (stretching it when the aspect ratios
    differ: it does not letterbox), runs the model and maps the boxes back to the image's pixels,
    truncated to integers.

    Args:
        path: a TFLite file with ObjectDetector metadata.
        images: list of `(height, width, 3)` uint8 RGB images (any sizes).
        max_results: the detector's `max_results` (-1: every detection the model returns).

    Returns:
        list of dicts per image: "boxes" `(K, 4)` xyxy pixels (float64 of MediaPipe's integers),
        "scores" `(K,)`, "names" (the label of each detection) and "classes" `(K,)` int64: the
        label's line in the model's label file (MediaPipe reports the label, not the index,
        when the model has labels).
    """
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python import vision

    from keras_yolov7.export.metadata import read_object_detector_metadata

    with open(path, "rb") as file:
        labels = read_object_detector_metadata(file.read())["labels"]

    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(path)), max_results=int(max_results)
    )
    results = []
    with vision.ObjectDetector.create_from_options(options) as detector:
        for image in images:
            frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
            detections = detector.detect(frame).detections
            boxes = [
                [b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height]
                for b in (d.bounding_box for d in detections)
            ]
            results.append(
                {
                    "boxes": np.asarray(boxes, np.float64).reshape(-1, 4),
                    "scores": np.asarray([d.categories[0].score for d in detections], np.float64),
                    "names": [d.categories[0].category_name for d in detections],
                    "classes": np.asarray(
                        [labels.index(d.categories[0].category_name) for d in detections],
                        np.int64,
                    ),
                }
            )
    return results
