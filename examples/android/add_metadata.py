"""Add ObjectDetector metadata to an "android" TFLite export, and check it with MediaPipe.

`keras_yolov7.export.export(..., nms="android", class_names=...)` writes this metadata itself when
mediapipe's metadata writer imports. mediapipe >= 0.10.30 ships that writer without the compiled
module it needs, and 0.10.21 pins numpy < 2 / protobuf 4, so keep it in its own environment:

    python3.11 -m venv mp && mp/bin/pip install mediapipe==0.10.21
    mp/bin/python examples/android/add_metadata.py model.tflite labels.txt model_metadata.tflite \
        --check image.jpg

labels.txt holds one class name per line, in class-index order. The script needs only mediapipe
(not keras_yolov7). With --check it runs MediaPipe's ObjectDetector on the image and
prints the detections, which should equal the model's raw outputs.
"""

import argparse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="TFLite export with nms='android'")
    parser.add_argument("labels", help="text file, one class name per line")
    parser.add_argument("output", help="where to write the model with metadata")
    parser.add_argument("--check", metavar="IMAGE", help="run MediaPipe ObjectDetector on IMAGE")
    args = parser.parse_args()

    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer
    from mediapipe.tasks.python.metadata.metadata_writers import object_detector

    with open(args.labels) as file:
        names = [line.strip() for line in file if line.strip()]
    with open(args.model, "rb") as file:
        model = bytearray(file.read())
    # Pixels go in as they are (0..255): the model rescales inside.
    writer = object_detector.MetadataWriter.create_for_models_with_nms(
        model,
        input_norm_mean=[0.0],
        input_norm_std=[1.0],
        labels=metadata_writer.Labels().add(names),
    )
    with_metadata, _ = writer.populate()
    with open(args.output, "wb") as file:
        file.write(with_metadata)
    print(f"wrote {args.output} with {len(names)} labels")

    if args.check:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python import vision

        options = vision.ObjectDetectorOptions(
            base_options=BaseOptions(model_asset_path=args.output),
            max_results=10,
            score_threshold=0.25,
        )
        detector = vision.ObjectDetector.create_from_options(options)
        image = mp.Image.create_from_file(args.check)
        for detection in detector.detect(image).detections:
            box, category = detection.bounding_box, detection.categories[0]
            print(
                f"{category.category_name:>12} {category.score:.3f} "
                f"x={box.origin_x} y={box.origin_y} w={box.width} h={box.height}"
            )


if __name__ == "__main__":
    main()
