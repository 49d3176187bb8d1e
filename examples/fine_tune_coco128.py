"""
Title: Fine-tune a pretrained YOLOv7-tiny on a small dataset
Author: keras_yolov7 authors
Date created: 2026/12/07
Last modified: 2026/12/07
Description: From the official COCO weights to a detector fine-tuned on 96 images, on a CPU in minutes.
Accelerator: None

A pretrained preset is the official YOLOv7 release checkpoint, converted exactly into Keras.
This example loads `yolov7_tiny_coco`, measures it on a small held-out split, fine-tunes it with
`model.fit` and the official recipe (lead-guided OTA loss, SGD with three parameter groups,
warmup, cosine schedule, EMA), measures it again, and draws its detections on a photo.

The data is coco128 (the first 128 COCO train2017 images in YOLO txt layout), a stand-in for
your own small dataset; the same code takes any YOLO txt, COCO JSON or Pascal VOC dataset.

    KERAS_BACKEND=tensorflow python examples/fine_tune_coco128.py \\
        --data ../shared/data/coco128 --output runs/fine_tune

The first run downloads `yolov7-tiny.pt` (12 MB) from the official release and converts it once
(`~/.keras/keras_yolov7/`). Offline, put the file in a folder and set
`KERAS_YOLOV7_WEIGHTS_DIR` to it.
"""

import argparse
import pathlib

import keras

import keras_yolov7 as kyv7
from keras_yolov7.data import AugmentationConfig
from keras_yolov7.data import make_train_dataset
from keras_yolov7.data import make_val_dataset
from keras_yolov7.data import read_yolo
from keras_yolov7.evaluation import evaluate_model
from keras_yolov7.training import make_training_setup

"""
## The data

A YOLO txt dataset is described by a small YAML: the class names and, per split, a folder of
images or a text file listing them (labels sit beside them in `labels/`). coco128 has a single
folder, so the YAML lists its first 96 images for training and the last 32 for validation.
The images live outside the folder of the YAML, which the reader refuses unless told
(`allow_outside_root`), so that a downloaded YAML cannot make it read arbitrary files.
"""


def write_data_yaml(root, output, num_val):
    images = sorted((root / "images" / "train2017").glob("*.jpg"))
    if len(images) <= num_val:
        raise SystemExit(
            f"{root}: expected more than {num_val} images in images/train2017, found {len(images)}"
        )
    output.mkdir(parents=True, exist_ok=True)
    (output / "train.txt").write_text("".join(f"{p.resolve()}\n" for p in images[:-num_val]))
    (output / "val.txt").write_text("".join(f"{p.resolve()}\n" for p in images[-num_val:]))
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(kyv7.models.COCO_CLASS_NAMES))
    yaml = output / "coco128.yaml"
    yaml.write_text(f"path: .\ntrain: train.txt\nval: val.txt\nnames:\n{names}\n")
    return yaml


"""
## The pretrained detector

`from_preset` returns a `YOLOv7ObjectDetector`: the backbone and heads with the official weights,
and a preprocessor holding the network size (640, the size the weights were trained at) and the
80 COCO class names. For a dataset with other classes, pass `num_classes` and `class_names`:
every weight is kept but the class outputs of the heads.
"""


def evaluate(model, val_set, size, title):
    val_data = make_val_dataset(val_set, image_size=size, batch_size=8)
    result = evaluate_model(model, val_data, val_set, verbose=0)
    print(f"{title}: mAP@0.5 {result['mAP50']:.3f}, mAP@0.5:0.95 {result['mAP']:.3f}")
    return result


"""
## Fine-tuning

The official recipe is tuned for 300 epochs over 118k images; a few epochs over 96 images get a
short warmup and an optimizer step after every batch instead of accumulating to 64 images.
The callbacks of `make_training_setup` (the EMA first) go first in the list, so that what is
evaluated and saved is the EMA of the weights.
"""


def fine_tune(model, train_set, args):
    train_data = make_train_dataset(
        train_set,
        image_size=args.image_size,
        batch_size=args.batch,
        augmentation=AugmentationConfig.for_preset("yolov7_tiny"),
        seed=0,
        drop_remainder=True,
    )
    steps = len(train_set) // args.batch
    optimizer, callbacks = make_training_setup(
        model,
        epochs=args.epochs,
        steps_per_epoch=steps,
        batch_size=args.batch,
        nominal_batch_size=args.batch,
        warmup_epochs=1.0,
        min_warmup_iterations=steps,
    )
    model.compile(optimizer=optimizer)
    model.fit(train_data, epochs=args.epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=2)
    return model


def main(args):
    output = pathlib.Path(args.output)
    yaml = write_data_yaml(pathlib.Path(args.data), output, args.val_images)
    train_set = read_yolo(yaml, "train", allow_outside_root=True)
    val_set = read_yolo(yaml, "val", allow_outside_root=True)
    print(f"{len(train_set)} training and {len(val_set)} validation images")

    keras.utils.set_random_seed(0)
    model = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny_coco")
    before = evaluate(model, val_set, args.image_size, "pretrained")
    model = fine_tune(model, train_set, args)
    after = evaluate(model, val_set, args.image_size, f"fine-tuned for {args.epochs} epochs")

    """
    ## Predicting and saving

    `predict` takes file paths, PIL images or arrays of any size and returns boxes in each
    image's own pixels; `draw_detections` draws them. `save_to_preset` writes a KerasHub preset
    that `keras_hub.models.ObjectDetector.from_preset` loads, the network size and class names
    included.
    """
    photo = val_set.records[0].image_path
    detections = model.predict([photo], verbose=0)
    picture = kyv7.visualization.draw_detections(photo, detections, model.class_names)
    picture.save(output / "prediction.jpg")
    model.save_to_preset(output / "preset")
    print(f"written to {output}: prediction.jpg, preset/")
    return before, after


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/coco128", help="the coco128 folder")
    parser.add_argument("--output", default="runs/fine_tune")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--val-images", type=int, default=32, help="the last N images validate")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=320)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
