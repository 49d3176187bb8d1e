"""Where a TensorFlow train step's time goes, op type by op type.

Traces a few train steps (forward, OTA loss, backward, YOLOv7SGD) of a preset on synthetic
batches with the TensorFlow profiler and prints the op types by their summed duration on the
executor's threads (`tf_Compute`), the executor's own "Process" spans left out. Ops run
concurrently on a multi-core CPU, so the sum exceeds the step's wall time: read the shares.

    KERAS_BACKEND=tensorflow python benchmarks/op_profile.py --preset yolov7 --size 640 --batch 4
    KERAS_BACKEND=tensorflow python benchmarks/op_profile.py --mixed-precision mixed_bfloat16
    KERAS_BACKEND=tensorflow python benchmarks/op_profile.py --by-name SelectV2   # op names
"""

import argparse
import collections
import os
import pathlib
import re
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import side_by_side  # noqa: E402

import keras_yolov7 as kyv7  # noqa: E402
from keras_yolov7.datasets import make_synthetic_arrays  # noqa: E402
from keras_yolov7.training import make_training_setup  # noqa: E402
from keras_yolov7.training import use_mixed_precision  # noqa: E402

CONVOLUTIONS = re.compile(r"Conv2D")


def trace_events(folder):
    """`(op name, op type, seconds)` of every op on the executor threads of a trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    files = sorted(pathlib.Path(folder).rglob("*.xplane.pb"))
    if not files:
        raise RuntimeError(f"the profiler wrote no trace under {folder}")
    space = xplane_pb2.XSpace()
    space.ParseFromString(files[-1].read_bytes())
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {key: value.name for key, value in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "?")
                op_name, _, op_type = name.rpartition(":")
                if op_type == "Process" or not op_name:
                    continue
                yield op_name, op_type, event.duration_ps / 1e12


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="yolov7_tiny")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="traced steps (after 2 warm-up steps)")
    parser.add_argument("--mixed-precision", default="float32", choices=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--top", type=int, default=25, help="rows printed")
    parser.add_argument("--by-name", metavar="OP_TYPE", help="break this op type down by op name (numbers as N)")
    args = parser.parse_args()
    if keras.backend.backend() != "tensorflow":
        parser.error("the op profile reads TensorFlow's profiler: run with KERAS_BACKEND=tensorflow")
    import tensorflow as tf

    use_mixed_precision(args.mixed_precision)
    images, targets, _ = make_synthetic_arrays(args.batch, image_size=args.size, seed=0)
    model = kyv7.YOLOv7ObjectDetector.from_preset(args.preset, num_classes=80)
    optimizer, _ = make_training_setup(model, epochs=300, steps_per_epoch=1000, batch_size=args.batch)
    model.compile(optimizer=optimizer)
    for _ in range(2):
        model.train_on_batch(images, targets)
    with tempfile.TemporaryDirectory() as folder:
        tf.profiler.experimental.start(folder)
        start = time.perf_counter()
        for _ in range(args.steps):
            model.train_on_batch(images, targets)
        wall = (time.perf_counter() - start) / args.steps
        tf.profiler.experimental.stop()
        events = list(trace_events(folder))

    totals, counts = collections.Counter(), collections.Counter()
    for op_name, op_type, seconds in events:
        if args.by_name:
            if op_type != args.by_name:
                continue
            key = re.sub(r"_\d+", "_N", op_name)
        else:
            key = op_type
        totals[key] += seconds / args.steps
        counts[key] += 1
    everything = sum(seconds for _, _, seconds in events) / args.steps
    convolutions = sum(s for _, t, s in events if CONVOLUTIONS.search(t)) / args.steps
    print(f"# {side_by_side.machine_line()}")
    print(
        f"# keras {keras.__version__}, tensorflow {tf.__version__}, {args.mixed_precision}; {args.preset} "
        f"{args.size} px, batch {args.batch}: {wall:.3f} s per step (traced), op time {everything:.3f} s "
        f"per step, convolutions {100 * convolutions / everything:.0f}% of it"
    )
    print(f"| {'op name' if args.by_name else 'op type'} | s per step | share of op time | calls per step |")
    print("| --- | ---: | ---: | ---: |")
    for key, seconds in totals.most_common(args.top):
        print(f"| {key} | {seconds:.3f} | {100 * seconds / everything:.1f}% | {counts[key] / args.steps:.0f} |")


if __name__ == "__main__":
    main()
