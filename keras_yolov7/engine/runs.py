"""Run directories: PROJECT/NAME, numbered like the official ones (exp, exp2, ...), and the
args.yaml every run writes."""

import logging
import os
import pathlib

from keras_yolov7.files import write_text

logger = logging.getLogger("keras_yolov7.engine")


def new_run_directory(project, name, exist_ok=False):
    """Creates and returns the run directory `project/name`.

    A taken name gets the next free number (`exp`, `exp2`, `exp3`, ...). With `exist_ok` the
    name `project/name` itself is used; if it already holds files (another run's), they are
    moved aside to the next free numbered directory, with a warning saying where, so that two
    runs' files never mix.
    """
    project = pathlib.Path(project)
    project.mkdir(parents=True, exist_ok=True)
    if exist_ok:
        path = project / name
        if path.is_dir() and any(path.iterdir()):
            aside = _numbered(project, name, start=2, exists=lambda p: p.exists())
            path.rename(aside)
            logger.warning("%s held another run's files: moved them to %s", path, aside)
        path.mkdir(exist_ok=True)
        return path
    return _numbered(project, name, start=1, exists=_taken)


def _taken(path):
    """Creates `path` unless it exists; True when it existed (another process may race us)."""
    try:
        path.mkdir()
        return False
    except FileExistsError:
        return True


def _numbered(project, name, start, exists):
    """The first `project/name{n}` (`name` for n = 1), n >= start, for which `exists` is false."""
    number = start
    while True:
        path = project / (name if number == 1 else f"{name}{number}")
        if not exists(path):
            return path
        number += 1


def latest_run(project):
    """The run directory under `project` (searched recursively) whose training state was
    written last, or None."""
    from keras_yolov7.engine.training_state import STATE_FILE

    states = sorted(
        pathlib.Path(project).glob(f"**/weights/{STATE_FILE}"), key=lambda p: p.stat().st_mtime
    )
    return states[-1].parent.parent if states else None


def write_args(path, entries):
    """Writes a run's arguments (and what they resolved to) as YAML, atomically, with the
    backend and the versions of Keras and keras_yolov7 added.

    Args:
        path: the YAML file.
        entries: a dict, written in its order; paths, tuples and NumPy scalars become plain YAML.
    """
    import keras
    import yaml

    import keras_yolov7

    entries = dict(entries)
    entries.update(backend=keras.backend.backend(), keras=keras.__version__)
    entries["keras_yolov7"] = keras_yolov7.__version__
    write_text(path, yaml.safe_dump(plain(entries), sort_keys=False))


def read_args(path):
    """The entries of an args.yaml file (a dict)."""
    import yaml

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (not a keras-yolov7 run directory?)")
    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(entries, dict):
        raise ValueError(f"{path} does not hold a run's arguments (expected a mapping)")
    return entries


def plain(value):
    """`value` with paths, tuples and NumPy scalars turned into plain YAML / JSON values."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
