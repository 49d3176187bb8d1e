"""`python -m keras_yolov7.export.worker JOB_DIR`: runs an export on the TensorFlow backend.

Started by `keras_yolov7.export.export` when the caller's Keras backend is JAX or PyTorch. JOB_DIR
holds job.pkl (the export job, including the model config) and model.weights.h5; the worker
writes outcome.pkl: {"result": ExportResult} or {"error": (exception class name, message)}.
"""

import os
import pathlib
import pickle
import sys


def main(folder):
    folder = pathlib.Path(folder)
    os.environ["KERAS_BACKEND"] = "tensorflow"
    # job.pkl was written by the parent export() into its private temporary folder (mode 0700),
    # not supplied by a user: unpickling it runs nothing the parent did not put there.
    with open(folder / "job.pkl", "rb") as file:
        job = pickle.load(file)
    try:
        import keras

        from keras_yolov7.export.export import export_tensorflow
        from keras_yolov7.models import YOLOv7ObjectDetector

        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                f"the export worker runs on the {keras.backend.backend()} backend; expected "
                "tensorflow (KERAS_BACKEND was set before keras was imported)"
            )
        model = YOLOv7ObjectDetector.from_config(job.pop("config"))
        model.load_weights(folder / "model.weights.h5")
        outcome = {"result": export_tensorflow(model, job)}
    except Exception as error:  # reported to the parent, which re-raises it
        outcome = {"error": (type(error).__name__, str(error))}
    with open(folder / "outcome.pkl", "wb") as file:
        pickle.dump(outcome, file)
    return 0 if "result" in outcome else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
