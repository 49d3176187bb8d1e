"""Export as a workflow: weights in, a verified SavedModel / TFLite / ONNX file out, calibrated and
checked on a dataset's images when one is given."""

import os

from keras_yolov7.export.layout import DEFAULT_MAX_MAP_DROP
from keras_yolov7.export.layout import FORMAT_QUANTIZATIONS


def default_output(weights, format, precision, nms):
    """Beside the weights: `<stem>_<precision>[_<nms>].tflite`, `<stem>[_int8].onnx`,
    `<stem>_saved_model`."""
    stem = os.path.splitext(os.fspath(weights))[0]
    if format == "tflite":
        return f"{stem}_{precision}{'' if nms in (None, 'none') else '_' + nms}.tflite"
    if format == "onnx":
        return f"{stem}{'' if precision == 'fp32' else '_' + precision}.onnx"
    return f"{stem}_saved_model"


def export(
    weights,
    format="tflite",
    precision="fp32",
    nms=None,
    image_size=None,
    output=None,
    data=None,
    split="val",
    image_dir=None,
    allow_outside_root=False,
    num_calibration=200,
    metadata=True,
    max_map_drop=DEFAULT_MAX_MAP_DROP,
    conf=0.25,
    iou=0.45,
    max_det=100,
    verbose=1,
):
    """Exports weights with `keras_yolov7.export.export` (fused model, static square input,
    verified against the Keras model before it is moved into place).

    Args:
        weights: a `.keras` / official `.pt` path or a `YOLOv7ObjectDetector`.
        format: "saved_model", "tflite" or "onnx".
        precision: "fp32"; TFLite also "fp16" and "int8"; ONNX also "int8" (QDQ); int8 needs
            `data`.
        nms: in-graph NMS "none", "v4", "v5", "android"; None: v5 for SavedModel, none otherwise.
        image_size: network size (default: the model's training size).
        output: the file (or SavedModel folder); default beside the weights (`default_output`).
        data: a dataset (path or `DetectionDataset`) whose `split` images calibrate int8 (the
            first `num_calibration`, through the validation pipeline; its mAP is compared with
            the float model's) and check the export; default synthetic check images.
        split, image_dir, allow_outside_root: see `engine.evaluate`.
        num_calibration: int8 calibration images.
        metadata: nms "android": write the ObjectDetector metadata (needs mediapipe).
        max_map_drop: int8: fail when mAP@0.5 on `data` is more than this many points below
            the float model's; None reports it without a limit.
        conf, iou, max_det: the in-graph NMS settings.
        verbose: 1 prints the dataset read, the progress and the report, 0 nothing.

    Returns:
        The `keras_yolov7.export.ExportResult`.
    """
    from keras_yolov7.data import DetectionDataset
    from keras_yolov7.engine import datasets as dataset_sources
    from keras_yolov7.engine.weights import check_num_classes
    from keras_yolov7.models.yolov7_image_converter import square_input_size
    from keras_yolov7.engine.weights import load_model
    from keras_yolov7.export import export as export_model

    if format in FORMAT_QUANTIZATIONS and precision not in FORMAT_QUANTIZATIONS[format]:
        raise ValueError(
            f"precision {precision} is not offered for {format}; expected one of "
            f"{', '.join(FORMAT_QUANTIZATIONS[format])}"
        )
    if precision == "int8" and data is None:
        raise ValueError("int8 precision needs data: calibration images from your dataset")
    is_path = isinstance(weights, (str, os.PathLike))
    model = load_model(weights) if is_path else weights
    shown = os.fspath(weights) if is_path else model.name
    size = square_input_size(model, image_size)
    if output is None:
        if not is_path:
            raise ValueError("give output (the export's path) when weights is a model")
        output = default_output(weights, format, precision, nms)
    options = {}
    if data is not None:
        from keras_yolov7.data import make_val_dataset

        if isinstance(data, DetectionDataset):
            dataset, shown_data = data, "the given dataset"
        else:
            dataset = dataset_sources.read_split(data, split, image_dir, allow_outside_root)
            shown_data = os.fspath(data)
        if verbose:
            print(dataset_sources.describe_dataset(dataset, f"{split} ({shown_data})"))
        check_num_classes(model, dataset, shown, shown_data)
        batches = make_val_dataset(
            dataset, image_size=size, batch_size=16, stride=max(model.strides)
        )
        options["sample_images"] = batches.take(1)
        if precision == "int8":
            options.update(representative_data=batches, validation_data=(dataset, batches))
    return export_model(
        model,
        os.fspath(output),
        format=format,
        image_size=size,
        quantization=precision,
        nms=nms,
        num_calibration_images=num_calibration,
        class_names=model.class_names,
        metadata=metadata,
        max_map_drop=max_map_drop,
        max_detections=max_det,
        score_threshold=conf,
        iou_threshold=iou,
        verbose=bool(verbose),
        **options,
    )
