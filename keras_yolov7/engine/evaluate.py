"""Evaluation as a workflow: COCO mAP of weights on a dataset split, with plots, into a run
directory."""

import dataclasses
import os
import pathlib

from keras_yolov7.engine import datasets as dataset_sources
from keras_yolov7.engine.runs import new_run_directory
from keras_yolov7.engine.runs import write_args


@dataclasses.dataclass
class EvaluationResult:
    """What `evaluate` returns.

    Attributes:
        run_dir: the run directory (`pathlib.Path`).
        metrics: `keras_yolov7.evaluation.evaluate_detections`' dict (`mAP`, `mAP50`, ...,
            `per_class`).
        class_names: the dataset's class names.
        image_size: the network size evaluated at.
        predictions: the COCO results JSON written (save_json), or None.
    """

    run_dir: pathlib.Path
    metrics: dict
    class_names: list
    image_size: int
    predictions: pathlib.Path


def evaluate(
    weights,
    data,
    split="val",
    image_dir=None,
    allow_outside_root=False,
    image_size=None,
    batch_size=32,
    conf=0.001,
    iou=0.65,
    max_det=300,
    precision="auto",
    plots=True,
    save_json=False,
    project="runs/val",
    name="exp",
    exist_ok=False,
    verbose=1,
):
    """COCO metrics of a model on one split of a dataset, the way the official test.py
    measures them: letterboxed images, the fused model, class-aware multi-label NMS, COCO box
    metrics in original-image pixels.

    Args:
        weights: a `.keras` / official `.pt` path or a `YOLOv7ObjectDetector`.
        data: a dataset path (data YAML, COCO JSON, VOC folder, COCO folder) or a
            `DetectionDataset`.
        split, image_dir, allow_outside_root: which split, a COCO JSON's images folder, and
            whether files outside the dataset root are read (see `keras_yolov7.data`).
        image_size: network size (default: the model's training size).
        batch_size: images per batch.
        precision: compute precision, "float32", "bfloat16" or "auto" (bfloat16 on the
            TensorFlow backend on a CPU with AMX or AVX512-BF16 and no GPU, else float32;
            `keras_yolov7.training.with_inference_precision`).
        conf, iou, max_det: NMS settings (official evaluation: 0.001, 0.65, 300).
        plots: write PR_curve.png, F1_curve.png, confusion_matrix.png, val_batch0-2.png.
        save_json: write the detections as COCO results JSON (predictions.json).
        project, name, exist_ok: the run directory (see `engine.train`).
        verbose: 1 prints what is evaluated, 0 nothing.

    Returns:
        An `EvaluationResult`.
    """
    from keras_yolov7.data import DetectionDataset
    from keras_yolov7.data import make_val_dataset
    from keras_yolov7.engine.weights import check_num_classes
    from keras_yolov7.engine.weights import inference_model_in
    from keras_yolov7.models.yolov7_image_converter import square_input_size
    from keras_yolov7.engine.weights import load_model
    from keras_yolov7.evaluation import evaluate_model

    # The dataset first: bad data is refused without the cost of loading (or converting) weights.
    if isinstance(data, DetectionDataset):
        dataset, shown_data = data, "the given dataset"
    else:
        dataset = dataset_sources.read_split(data, split, image_dir, allow_outside_root)
        shown_data = os.fspath(data)
    if verbose:
        print(dataset_sources.describe_dataset(dataset, f"{split} ({shown_data})"))
    model = load_model(weights) if isinstance(weights, (str, os.PathLike)) else weights
    shown_weights = os.fspath(weights) if isinstance(weights, (str, os.PathLike)) else model.name
    size = square_input_size(model, image_size)
    check_num_classes(model, dataset, shown_weights, shown_data)
    run_dir = new_run_directory(project, name, exist_ok)
    write_args(
        run_dir / "args.yaml",
        {
            "weights": shown_weights,
            "data": shown_data,
            "split": split,
            "image_dir": None if image_dir is None else os.fspath(image_dir),
            "allow_outside_root": allow_outside_root,
            "image_size": size,
            "batch_size": batch_size,
            "conf": conf,
            "iou": iou,
            "max_det": max_det,
            "precision": precision,
            "plots": plots,
            "save_json": save_json,
            "project": os.fspath(project),
            "name": name,
            "exist_ok": exist_ok,
        },
    )
    model, precision_line = inference_model_in(model, precision)
    if verbose:
        print(precision_line)
    batches = make_val_dataset(
        dataset, image_size=size, batch_size=batch_size, stride=max(model.strides)
    )
    results_file = run_dir / "predictions.json" if save_json else None
    if verbose:
        import keras

        print(
            f"evaluating {shown_weights} at {size} px on {len(dataset)} images "
            f"(backend {keras.backend.backend()})",
            flush=True,
        )
    metrics = evaluate_model(
        model,
        batches,
        dataset,
        verbose=0,
        plot_dir=str(run_dir) if plots else None,
        results_file=None if results_file is None else str(results_file),
        confidence_threshold=conf,
        iou_threshold=iou,
        max_detections=max_det,
    )
    return EvaluationResult(run_dir, metrics, list(dataset.class_names), size, results_file)
