"""TFLite metadata (labels, input normalisation) for MediaPipe / Task Library ObjectDetector.

Written with mediapipe's metadata writer, an optional dependency (tflite-support is unmaintained
and conflicts with TensorFlow). mediapipe >= 0.10.30 ships its metadata writer without the
compiled module it imports, so on those releases this step is skipped with a message.
"""


def metadata_writer_error():
    """None when mediapipe's object-detector metadata writer imports, else why it does not."""
    try:
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer  # noqa: F401
        from mediapipe.tasks.python.metadata.metadata_writers import object_detector  # noqa: F401
    except ImportError as error:
        return f"{type(error).__name__}: {error}"
    return None


def add_object_detector_metadata(model, class_names):
    """Model bytes with ObjectDetector metadata, and a message saying what was done.

    Args:
        model: TFLite model bytes whose outputs are TFLite_Detection_PostProcess's
            (boxes, classes, scores, count), in that order.
        class_names: one label per class index.

    Returns:
        `(model bytes, message)`; the bytes are unchanged when mediapipe is unusable.

    The input normalisation is mean 0, std 1: a float model takes pixel values 0..255 as they
    are (it rescales inside), a uint8 model takes raw RGB bytes.
    """
    error = metadata_writer_error()
    if error is not None:
        return model, (
            "skipped: mediapipe's metadata writer is not importable "
            f"({error}); install a mediapipe release whose metadata writer imports "
            "(e.g. `pip install mediapipe==0.10.21` in an environment where its numpy/protobuf "
            "pins fit) and export again to embed labels and normalisation"
        )
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer
    from mediapipe.tasks.python.metadata.metadata_writers import object_detector

    labels = metadata_writer.Labels().add([str(name) for name in class_names])
    writer = object_detector.MetadataWriter.create_for_models_with_nms(
        bytearray(model), input_norm_mean=[0.0], input_norm_std=[1.0], labels=labels
    )
    model_with_metadata, _ = writer.populate()
    return bytes(model_with_metadata), f"written: {len(class_names)} labels, mean 0, std 1"
