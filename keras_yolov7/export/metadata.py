"""TFLite Model Metadata for MediaPipe's (and the TFLite Task Library's) ObjectDetector.

MediaPipe's ObjectDetector refuses a model without metadata ("Object detection models require
TFLite Model Metadata but none was found"). The metadata is a flatbuffer (schema
`metadata_schema.fbs`) stored in the model's "TFLITE_METADATA" buffer, and the label file it names
is appended to the model as an uncompressed zip archive, where the runtimes read it.

mediapipe's own writer (`metadata_writers.object_detector`) imports a compiled module that the
1.x wheels do not ship, so the metadata is built here from the schema's pure-Python flatbuffer
classes, which the wheel does ship (`mediapipe.tasks.metadata.metadata_schema_py_generated`), and
put in the model with TensorFlow's TFLite schema classes. The fields are those mediapipe's
`create_for_models_with_nms` writes.
"""

import io
import zipfile

import numpy as np

METADATA_BUFFER_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MODEL_IDENTIFIER = b"TFL3"
LABEL_FILE = "labels.txt"
# The ObjectDetector finds its four outputs by these names (any order in the model).
OUTPUT_NAMES = ("location", "category", "score", "number of detections")
# Output tensor groups are the newest schema member used here (metadata_version.cc: 1.2.0).
MIN_PARSER_VERSION = "1.2.0"
DETECTION_GROUP = "detection_result"


def metadata_schema():
    """The metadata schema's flatbuffer classes (raises ImportError naming the fix)."""
    try:
        from mediapipe.tasks.metadata import metadata_schema_py_generated
    except ImportError as error:
        raise ImportError(
            f"writing ObjectDetector metadata needs mediapipe ({error}); install the export "
            "extra (`pip install keras-yolov7[export]`), or export with metadata=False "
            "(--no-metadata) for a file MediaPipe's ObjectDetector will not load"
        ) from None
    return metadata_schema_py_generated


def add_object_detector_metadata(model, class_names, box_order=(1, 0, 3, 2)):
    """Model bytes with ObjectDetector metadata and the label file.

    Args:
        model: TFLite model bytes whose four outputs are, in order, boxes `(1, K, 4)` normalised,
            classes `(1, K)`, scores `(1, K)` and count `(1,)` (float32).
        class_names: one label per class index.
        box_order: the positions of xmin, ymin, xmax, ymax in a box (the layout's ymin, xmin,
            ymax, xmax is (1, 0, 3, 2)).

    Returns:
        The model bytes with the metadata buffer and `labels.txt` appended.

    The input is declared as RGB with normalisation mean 0, std 1: a float32 input then receives
    pixel values 0..255 unchanged (the model rescales inside); a uint8 input (int8 models)
    receives the raw bytes, which runtimes feed without normalising.
    """
    fb = metadata_schema()
    names = [str(name) for name in class_names]
    bad = [name for name in names if not name or "\n" in name or "\r" in name]
    if bad:
        raise ValueError(f"class names must be non-empty single lines, got {bad[:3]}")

    image = _tensor(fb, "image", "Input image, RGB, pixel values 0..255.")
    image.content = _content(fb, fb.ContentProperties.ImageProperties, fb.ImagePropertiesT())
    image.content.contentProperties.colorSpace = fb.ColorSpaceType.RGB
    normalisation = fb.NormalizationOptionsT()
    normalisation.mean, normalisation.std = [0.0], [1.0]
    unit = fb.ProcessUnitT()
    unit.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    unit.options = normalisation
    image.processUnits = [unit]
    stats = fb.StatsT()
    stats.min, stats.max = [0.0], [255.0]
    image.stats = stats

    location = _tensor(fb, OUTPUT_NAMES[0], "Boxes normalised to [0, 1] of the input.")
    box = fb.BoundingBoxPropertiesT()
    box.index = [int(i) for i in box_order]
    box.type = fb.BoundingBoxType.BOUNDARIES
    box.coordinateType = fb.CoordinateType.RATIO
    location.content = _content(fb, fb.ContentProperties.BoundingBoxProperties, box, ranged=True)
    category = _tensor(fb, OUTPUT_NAMES[1], "Class index of each box.")
    category.content = _content(
        fb, fb.ContentProperties.FeatureProperties, fb.FeaturePropertiesT(), ranged=True
    )
    labels = fb.AssociatedFileT()
    labels.name = LABEL_FILE
    labels.description = "Class names, one per line, in class-index order."
    labels.type = fb.AssociatedFileType.TENSOR_VALUE_LABELS
    category.associatedFiles = [labels]
    score = _tensor(fb, OUTPUT_NAMES[2], "Objectness times class probability of each box.")
    score.content = _content(
        fb, fb.ContentProperties.FeatureProperties, fb.FeaturePropertiesT(), ranged=True
    )
    count = _tensor(fb, OUTPUT_NAMES[3], "Number of valid boxes.")
    count.content = _content(fb, fb.ContentProperties.FeatureProperties, fb.FeaturePropertiesT())

    group = fb.TensorGroupT()
    group.name = DETECTION_GROUP
    group.tensorNames = list(OUTPUT_NAMES[:3])
    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = [location, category, score, count]
    subgraph.outputTensorGroups = [group]
    metadata = fb.ModelMetadataT()
    metadata.name = "YOLOv7 object detector"
    metadata.description = (
        f"YOLOv7 (keras-yolov7), {len(names)} classes, class-aware NMS in the model. Input: RGB "
        "pixel values 0..255 of the image letterboxed to a square (pad 114, centred)."
    )
    metadata.subgraphMetadata = [subgraph]
    metadata.minParserVersion = MIN_PARSER_VERSION
    return _with_label_file(
        _with_metadata_buffer(model, _finish(metadata, METADATA_IDENTIFIER)), names
    )


def read_object_detector_metadata(model):
    """What an ObjectDetector reads from the model: output names, box order, labels.

    Returns:
        dict: "min_parser_version", "outputs" (tensor names in output order), "box_order",
        "normalisation" `(mean, std)` and "labels" (from the packed label file); raises
        ValueError when the model has no metadata.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    fb = metadata_schema()
    root = schema.Model.GetRootAsModel(model, 0)
    buffer = None
    for i in range(root.MetadataLength()):
        if root.Metadata(i).Name().decode() == METADATA_BUFFER_NAME:
            buffer = root.Buffers(root.Metadata(i).Buffer()).DataAsNumpy().tobytes()
    if buffer is None:
        raise ValueError(f"the model has no {METADATA_BUFFER_NAME} metadata")
    metadata = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(buffer, 0))
    subgraph = metadata.subgraphMetadata[0]
    units = subgraph.inputTensorMetadata[0].processUnits or []
    with zipfile.ZipFile(io.BytesIO(model)) as archive:
        labels = archive.read(LABEL_FILE).decode().splitlines()
    outputs = subgraph.outputTensorMetadata
    return {
        "min_parser_version": metadata.minParserVersion.decode(),
        "outputs": [t.name.decode() for t in outputs],
        "box_order": [int(i) for i in outputs[0].content.contentProperties.index],
        "normalisation": (
            [float(v) for v in units[0].options.mean],
            [float(v) for v in units[0].options.std],
        )
        if units
        else None,
        "labels": labels,
    }


def _tensor(fb, name, description):
    tensor = fb.TensorMetadataT()
    tensor.name, tensor.description = name, description
    return tensor


def _content(fb, kind, properties, ranged=False):
    content = fb.ContentT()
    content.contentPropertiesType = kind
    content.contentProperties = properties
    if ranged:
        # The detection dimension of (1, K, ...) tensors, as mediapipe's writer declares it.
        value_range = fb.ValueRangeT()
        value_range.min = value_range.max = 2
        content.range = value_range
    return content


def _finish(table, identifier):
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(table.Pack(builder), identifier)
    return bytes(builder.Output())


def _with_metadata_buffer(model, metadata):
    from tensorflow.lite.python import schema_py_generated as schema

    model_object = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, np.uint8)
    entries = [
        m for m in (model_object.metadata or []) if m.name.decode() != METADATA_BUFFER_NAME
    ]
    model_object.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_BUFFER_NAME
    entry.buffer = len(model_object.buffers) - 1
    model_object.metadata = entries + [entry]
    return _finish(model_object, MODEL_IDENTIFIER)


def _with_label_file(model, names):
    # Zip members are stored uncompressed after the flatbuffer; the runtimes locate the archive
    # from its end record, as mediapipe's MetadataPopulator writes it.
    stream = io.BytesIO(model)
    stream.seek(0, io.SEEK_END)
    with zipfile.ZipFile(stream, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABEL_FILE, "".join(f"{name}\n" for name in names))
    return stream.getvalue()
