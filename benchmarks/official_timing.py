"""Times the official YOLOv7 PyTorch code on the same inputs as this project's benchmarks.

Not part of keras_yolov7: `benchmarks/train_step.py` and `benchmarks/inference.py` run this file
in a subprocess with the interpreter given as `--official-python` (one with torch and what the
official modules import) and the working directory set to a checkout of the official repository
(github.com/WongKinYiu/yolov7, `--official-dir`), which is put first on `sys.path`. It imports
the official `Model` and OTA loss from there and prints one JSON line of timings. The official
code is GPL-3.0: it is run, nothing of it is copied here.

    python official_timing.py inference yolov7-tiny 640 WARMUP REPEATS
    python official_timing.py train yolov7-tiny INPUTS.npz WARMUP REPEATS

`inference`: the fused model in eval mode, batch 1, under torch.no_grad(): median / p10 / p90 ms.
`train`: the training step of the official train.py on the batch of INPUTS.npz (images
(B, S, S, 3) uint8, boxes (B, M, 4) xyxy pixels, labels (B, M), padding -1): forward, the OTA loss
(ComputeLossAuxOTA for the P6 models, as train_aux.py), backward, and SGD with the gradients
accumulated to the nominal batch 64 (the step and zero_grad every round(64 / B) batches); median
seconds per batch.
"""

import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.getcwd())

from models.yolo import IAuxDetect  # noqa: E402
from models.yolo import Model  # noqa: E402
from utils.loss import ComputeLossAuxOTA  # noqa: E402
from utils.loss import ComputeLossOTA  # noqa: E402

NOMINAL_BATCH = 64


def hyperparameters(cfg, num_levels, image_size, num_classes=80):
    """The hyp file train.py uses for this model, with train.py's per-level scaling."""
    import yaml

    if "tiny" in cfg:
        name = "hyp.scratch.tiny.yaml"
    elif cfg.endswith(("w6", "e6", "d6", "e6e")):
        name = "hyp.scratch.p6.yaml"
    else:
        name = "hyp.scratch.p5.yaml"
    with open(os.path.join("data", name)) as file:
        hyp = yaml.safe_load(file)
    hyp["box"] *= 3.0 / num_levels
    hyp["cls"] *= num_classes / 80.0 * 3.0 / num_levels
    hyp["obj"] *= (image_size / 640) ** 2 * 3.0 / num_levels
    hyp["label_smoothing"] = 0.0
    return hyp


def percentiles(times):
    return [float(v) for v in np.percentile(times, [50, 10, 90])]


def time_inference(cfg, size, warmup, repeats):
    model = Model(f"cfg/training/{cfg}.yaml", ch=3, nc=80).eval()
    with torch.no_grad():
        model.fuse()
        images = torch.rand(1, 3, size, size)
        for _ in range(warmup):
            model(images)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(images)
            times.append((time.perf_counter() - start) * 1000)
    return {"ms": percentiles(times)}


def official_targets(boxes, labels, size):
    """Padded xyxy pixel targets -> the official rows (image, class, x, y, w, h) normalised."""
    rows = []
    for index in range(boxes.shape[0]):
        for box, label in zip(boxes[index], labels[index]):
            if label < 0:
                continue
            x1, y1, x2, y2 = box / size
            rows.append([index, label, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
    return torch.tensor(rows, dtype=torch.float32)


def time_train_step(cfg, inputs, warmup, repeats):
    data = np.load(inputs)
    batch, size = data["images"].shape[0], data["images"].shape[1]
    images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).float() / 255.0
    targets = official_targets(data["boxes"], data["labels"], size)
    model = Model(f"cfg/training/{cfg}.yaml", ch=3, nc=80).train()
    head = model.model[-1]
    model.hyp = hyperparameters(cfg, head.nl, size)
    model.gr = 1.0
    loss_class = ComputeLossAuxOTA if isinstance(head, IAuxDetect) else ComputeLossOTA
    compute_loss = loss_class(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937, nesterov=True)
    accumulate = max(round(NOMINAL_BATCH / batch), 1)
    times = []
    for step in range(warmup + repeats):
        start = time.perf_counter()
        loss, _ = compute_loss(model(images), targets, images)
        loss.backward()
        if (step + 1) % accumulate == 0:
            optimizer.step()
            optimizer.zero_grad()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return {"step_s": percentiles(times)}


def main():
    mode, cfg = sys.argv[1], sys.argv[2]
    warmup, repeats = int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    if mode == "inference":
        result = time_inference(cfg, int(sys.argv[3]), warmup, repeats)
    elif mode == "train":
        result = time_train_step(cfg, sys.argv[3], warmup, repeats)
    else:
        raise SystemExit(f"mode must be 'inference' or 'train', got {mode!r}")
    result["torch"] = torch.__version__
    result["threads"] = torch.get_num_threads()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
