"""Run directories: runs/<command>/<name>, numbered like the official ones (exp, exp2, ...)."""

import os
import pathlib


def new_run_directory(project, name, exist_ok=False):
    """Creates and returns the run directory `project/name`.

    A taken name gets the next free number (`exp`, `exp2`, `exp3`, ...); with `exist_ok` an
    existing `project/name` is reused as is.
    """
    project = pathlib.Path(project)
    if exist_ok:
        path = project / name
        path.mkdir(parents=True, exist_ok=True)
        return path
    project.mkdir(parents=True, exist_ok=True)
    number = 1
    while True:
        path = project / (name if number == 1 else f"{name}{number}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


def write_args(path, args, **resolved):
    """Writes the command's arguments (and the values resolved from them) as YAML.

    Args:
        path: the YAML file.
        args: the parsed `argparse.Namespace`.
        **resolved: further entries, e.g. the image size a default resolved to.
    """
    import keras
    import yaml

    import keras_yolov7

    entries = {k: v for k, v in vars(args).items() if not callable(v)}
    entries.update(resolved)
    entries.update(backend=keras.backend.backend(), keras=keras.__version__)
    entries["keras_yolov7"] = keras_yolov7.__version__
    with open(path, "w") as file:
        yaml.safe_dump(_plain(entries), file, sort_keys=False)


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
