"""CPU latency and file size of exported yolov7_tiny: TFLite fp32 / fp16 / int8 (XNNPACK), ONNX
Runtime and the Keras TensorFlow model, at 320 and 640.

    KERAS_BACKEND=tensorflow python benchmarks/export.py                   # the full table
    KERAS_BACKEND=tensorflow python benchmarks/export.py --sizes 320 --runs 3   # smoke run

Figures are medians over `--runs` timed calls after `--warmup` calls, single image, `--threads`
CPU threads for every runtime (XNNPACK for TFLite). The issue's target: int8 yolov7_tiny at 640 at
most 0.25x the official PyTorch fused model on the same machine. The model is freshly initialised
(latency does not depend on the weights); int8 is calibrated on COCO images letterboxed like the
validation pipeline (../shared/data/coco128 when present, else synthetic images).
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
    """uint8 `(count, size, size, 3)`: COCO images resized to fit and padded with 114, centred."""
    from PIL import Image

    from keras_yolov7.export.verify import synthetic_images

    files = sorted(p for p in COCO128.rglob("*.jpg"))[:count] if COCO128.is_dir() else []
    if not files:
        return synthetic_images(count, size)
    images = np.full((len(files), size, size, 3), 114, np.uint8)
    for image, file in zip(images, files):
        picture = Image.open(file).convert("RGB")
        scale = size / max(picture.size)
        width, height = (max(1, round(d * scale)) for d in picture.size)
        left, top = (size - width) // 2, (size - height) // 2
        image[top : top + height, left : left + width] = np.asarray(
            picture.resize((width, height), Image.BILINEAR)
        )
    return images


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
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: image[None]}
    return median_ms(lambda: session.run(None, feed), runs, warmup)


def keras_latency(model, size, image, runs, warmup):
    import tensorflow as tf

    import keras_yolov7 as kyv7

    fixed = kyv7.export.fixed_size_model(model, size)
    forward = tf.function(lambda x: fixed(x, training=False))
    batch = tf.constant(image[None])
    return median_ms(lambda: [t.numpy() for t in forward(batch)], runs, warmup)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="yolov7_tiny")
    parser.add_argument("--num-classes", type=int, default=80)
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--nms", default="none", help="TFLite layout: none, v4, v5 or android")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras_yolov7 as kyv7

    model = kyv7.YOLOv7ObjectDetector.from_preset(args.preset, num_classes=args.num_classes)
    rows = []
    print(
        "| model | size | runtime | median ms | file MB |\n| --- | --- | --- | --- | --- |",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        for size in args.sizes:
            images = letterboxed_images(size, args.calibration_images)
            image = images[0]
            rows.append(
                {
                    "size": size,
                    "runtime": "Keras (TensorFlow, fused)",
                    "ms": keras_latency(model, size, image, args.runs, args.warmup),
                    "MB": None,
                }
            )
            for quantization in ("fp32", "fp16", "int8"):
                path = folder / f"{size}_{quantization}.tflite"
                result = kyv7.export.export(
                    model,
                    path,
                    image_size=size,
                    quantization=quantization,
                    nms=args.nms,
                    representative_data=images,
                    verbose=False,
                )
                rows.append(
                    {
                        "size": size,
                        "runtime": f"TFLite {quantization} (XNNPACK)",
                        "ms": tflite_latency(path, image, args.threads, args.runs, args.warmup),
                        "MB": result.file_size / 1e6,
                        "verification": result.verification["decoded"],
                    }
                )
            path = folder / f"{size}.onnx"
            result = kyv7.export.export(model, path, image_size=size, verbose=False)
            rows.append(
                {
                    "size": size,
                    "runtime": "ONNX Runtime fp32",
                    "ms": onnx_latency(path, image, args.threads, args.runs, args.warmup),
                    "MB": result.file_size / 1e6,
                    "verification": result.verification["decoded"],
                }
            )
            for row in rows[-5:]:
                size_mb = "" if row["MB"] is None else f"{row['MB']:.1f}"
                cells = [args.preset, row["size"], row["runtime"], f"{row['ms']:.1f}", size_mb]
                print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    print(f"({args.threads} threads, median of {args.runs} runs, nms {args.nms})")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
