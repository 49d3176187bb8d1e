"""CPU latency and file size of exported yolov7_tiny, and the accuracy of the reduced precisions.

Latency, at 320 and 640: the Keras TensorFlow model in float32 and bfloat16, TFLite fp32 / fp16 /
int8 (XNNPACK) in the raw layout and in the Android layout (NMS in the graph, as MediaPipe runs
it), ONNX Runtime fp32 and int8 (QDQ).

    KERAS_BACKEND=tensorflow python benchmarks/export.py                   # the full table
    KERAS_BACKEND=tensorflow python benchmarks/export.py --sizes 320 --runs 3   # smoke run

Figures are medians over `--runs` timed calls after `--warmup` calls, single image, `--threads`
CPU threads for every runtime (XNNPACK for TFLite). The issue's target: int8 yolov7_tiny at 640 at
most 0.25x the official PyTorch fused model on the same machine. The model is freshly initialised
(latency does not depend on the weights); int8 is calibrated on COCO images letterboxed like the
validation pipeline (../shared/data/coco128 when present, else synthetic images). The bfloat16
row runs where TensorFlow computes bfloat16 natively (keras_yolov7.training
.resolve_inference_precision).

Accuracy, with `--accuracy MODEL.keras --data DIR` (the model and data folder written by
examples/train_synthetic.py): COCO mAP on DIR's validation split of the model in float32 and
bfloat16 (Keras, TensorFlow backend), TFLite int8 and ONNX Runtime int8, each int8 model
calibrated on that split.

Prints figures; asserts nothing.
"""

import argparse
import json
import os
import pathlib
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
COCO128 = ROOT.parent / "shared" / "data" / "coco128" / "images"


def letterboxed_images(size, count):
    """uint8 `(count, size, size, 3)`: COCO images letterboxed like the validation pipeline."""
    from keras_yolov7.export.verify import synthetic_images
    from keras_yolov7.models import YOLOv7ImageConverter
    from keras_yolov7.models.image_inputs import read_image

    files = sorted(p for p in COCO128.rglob("*.jpg"))[:count] if COCO128.is_dir() else []
    if not files:
        return synthetic_images(count, size)
    converter = YOLOv7ImageConverter(image_size=size)
    padded = np.stack([converter.letterbox(read_image(file))[0] for file in files])
    return np.clip(np.round(padded), 0, 255).astype(np.uint8)


def median_ms(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def tflite_latency(path, image, threads, runs, warmup):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=threads)
    runner.allocate_tensors()
    detail = runner.get_input_details()[0]
    runner.set_tensor(detail["index"], image[None].astype(detail["dtype"]))
    return median_ms(runner.invoke, runs, warmup)


def onnx_latency(path, image, threads, runs, warmup):
    from keras_yolov7.export import onnx as onnx_lib

    session = onnx_lib.session(path, threads=threads)
    feed = {session.get_inputs()[0].name: image[None]}
    return median_ms(lambda: session.run(None, feed), runs, warmup)


def keras_latency(model, image, runs, warmup):
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    batch = tf.constant(image[None])
    return median_ms(lambda: [t.numpy() for t in forward(batch)], runs, warmup)


def print_row(cells):
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def latency_table(args, folder):
    import keras_yolov7 as kyv7
    from keras_yolov7.training import resolve_inference_precision
    from keras_yolov7.training import with_inference_precision

    model = kyv7.YOLOv7ObjectDetector.from_preset(args.preset, num_classes=args.num_classes)
    bfloat16 = resolve_inference_precision("auto") == "bfloat16"
    rows = []
    print_row(["model", "size", "runtime", "median ms", "file MB"])
    print_row(["---"] * 5)
    for size in args.sizes:
        images = letterboxed_images(size, args.calibration_images)
        image = images[0]
        fixed = kyv7.export.fixed_size_model(model, size)
        runs = [("Keras (TensorFlow, fused, float32)", fixed)]
        if bfloat16:
            runs.append(("Keras (TensorFlow, fused, bfloat16)", with_inference_precision(fixed)))
        for name, keras_model in runs:
            ms = keras_latency(keras_model, image, args.runs, args.warmup)
            rows.append({"size": size, "runtime": name, "ms": ms, "MB": None})
        exports = [
            ("tflite", q, nms, f"TFLite {q}{'' if nms == 'none' else ', ' + nms} (XNNPACK)")
            for nms in args.layouts
            for q in ("fp32", "fp16", "int8")
        ]
        exports += [("onnx", "fp32", "none", "ONNX Runtime fp32")]
        exports += [("onnx", "int8", "none", "ONNX Runtime int8 (QDQ)")]
        for format, quantization, nms, name in exports:
            path = folder / f"{size}_{quantization}_{nms}.{format}"
            result = kyv7.export.export(
                model,
                path,
                format=format,
                image_size=size,
                quantization=quantization,
                nms=nms,
                representative_data=images,
                verbose=False,
            )
            latency = tflite_latency if format == "tflite" else onnx_latency
            rows.append(
                {
                    "size": size,
                    "runtime": name,
                    "ms": latency(path, image, args.threads, args.runs, args.warmup),
                    "MB": result.file_size / 1e6,
                    "verification": result.verification["decoded"],
                }
            )
        for row in (row for row in rows if row["size"] == size):
            size_mb = "" if row["MB"] is None else f"{row['MB']:.1f}"
            print_row([args.preset, row["size"], row["runtime"], f"{row['ms']:.1f}", size_mb])
    print(
        f"({args.threads} threads, median of {args.runs} runs; bfloat16 "
        f"{'measured' if bfloat16 else 'not run: this CPU / backend computes it in emulation'})"
    )
    return rows


def accuracy_table(args, folder):
    """COCO mAP of one trained model in float32, bfloat16, TFLite int8 and ONNX Runtime int8."""
    import keras

    import keras_yolov7 as kyv7
    from keras_yolov7.data import make_val_dataset
    from keras_yolov7.data import read_coco
    from keras_yolov7.evaluation import evaluate_model
    from keras_yolov7.training import with_inference_precision

    model = keras.saving.load_model(args.accuracy, compile=False)
    fused = model.get_fused()
    data = pathlib.Path(args.data)
    dataset = read_coco(data / "annotations/instances_val.json", data / "images/val")
    size = args.accuracy_size or int(fused.image_size[0] if fused.image_size else 128)
    batches = make_val_dataset(dataset, image_size=size, batch_size=16)
    rows = []
    for precision in ("float32", "bfloat16"):
        result = evaluate_model(
            with_inference_precision(fused, precision), batches, dataset, verbose=0
        )
        rows.append({"model": f"Keras {precision}", "mAP50": result["mAP50"], "mAP": result["mAP"]})
    for suffix, name in ((".tflite", "TFLite int8"), (".onnx", "ONNX Runtime int8 (QDQ)")):
        result = kyv7.export.export(
            fused,
            folder / f"accuracy{suffix}",
            image_size=size,
            quantization="int8",
            representative_data=batches,
            validation_data=(dataset, batches),
            max_map_drop=None,
            verbose=False,
        )
        figures = result.verification["map"]
        rows.append({"model": name, "mAP50": figures["int8_mAP50"], "mAP": figures["int8_mAP"]})
    print(f"\nCOCO mAP on {len(dataset)} validation images of {data} at {size} px:")
    print_row(["model", "mAP@0.5", "mAP@0.5:0.95", "mAP@0.5 vs float32 (points)"])
    print_row(["---"] * 4)
    for row in rows:
        drop = 100 * (row["mAP50"] - rows[0]["mAP50"])
        print_row([row["model"], f"{row['mAP50']:.4f}", f"{row['mAP']:.4f}", f"{drop:+.2f}"])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="yolov7_tiny")
    parser.add_argument("--num-classes", type=int, default=80)
    parser.add_argument("--sizes", type=int, nargs="*", default=[320, 640])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument(
        "--layouts",
        nargs="+",
        default=["none", "android"],
        help="TFLite layouts: none (raw candidates), v4, v5, android (NMS in the graph)",
    )
    parser.add_argument("--accuracy", metavar="MODEL", help="a trained .keras model")
    parser.add_argument("--data", metavar="DIR", help="--accuracy: the synthetic dataset folder")
    parser.add_argument("--accuracy-size", type=int, help="--accuracy: input size (default 128)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        if args.sizes:
            rows["latency"] = latency_table(args, folder)
        if args.accuracy:
            if not args.data:
                parser.error("--accuracy needs --data, the dataset folder the model was trained on")
            rows["accuracy"] = accuracy_table(args, folder)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
