"""The official YOLOv7 checkpoints: where they are found, and their download.

This is the one module of the package that downloads anything. A checkpoint is looked for, in
order: at the path the caller gives; in the folder named by `KERAS_YOLOV7_WEIGHTS_DIR` (offline
use: put the release files there under their release names); in the cache
(`$KERAS_HOME/keras_yolov7/weights/`, `~/.keras/keras_yolov7/weights/` by default); and only then
downloaded from the official release (`RELEASE_URL`, or `KERAS_YOLOV7_RELEASE_URL` for a mirror)
into the cache. A download is streamed to a temporary file beside the cache entry, checked against
the size the server announced and read as a PyTorch checkpoint (`check_torch_checkpoint`: the safe
reader, no code run) before an atomic rename makes it the cache entry; a download cut short, of
the wrong size or not a checkpoint is deleted and tried once more. Nothing half-written is left.
"""

import http.client
import math
import os
import sys
import tempfile
import urllib.error
import urllib.request

import keras

from keras_yolov7.convert.torch_checkpoint import TorchCheckpointError
from keras_yolov7.convert.torch_checkpoint import check_torch_checkpoint

RELEASE_URL = "https://github.com/WongKinYiu/yolov7/releases/download/v0.1/"
_MODELS = ("yolov7-tiny", "yolov7", "yolov7x", "yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e")
# The release's checkpoints; the `_training` files are the transfer-learning ones.
RELEASE_FILES = tuple(f"{model}{suffix}.pt" for model in _MODELS for suffix in ("", "_training"))
TIMEOUT_S = 30  # for connecting and for each read of the response
_CHUNK = 2**20


class OfficialWeightsError(OSError):
    """An official checkpoint could not be found or downloaded."""


class _FailedAttempt(Exception):
    """A download that may succeed when tried again (cut short, wrong size, not a checkpoint)."""


def release_url():
    """The folder URL the checkpoints are downloaded from: `KERAS_YOLOV7_RELEASE_URL`, else
    `RELEASE_URL`."""
    url = os.environ.get("KERAS_YOLOV7_RELEASE_URL") or RELEASE_URL
    return url if url.endswith("/") else url + "/"


def cache_dir():
    """Where downloaded checkpoints are kept: `keras_yolov7/weights/` in Keras' cache folder
    (`$KERAS_HOME`, else `~/.keras`)."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "keras_yolov7", "weights")


def official_checkpoint_path(filename, path=None):
    """The local path of an official checkpoint, downloaded into the cache if needed.

    Args:
        filename: a release file name, e.g. "yolov7-tiny.pt" or "yolov7_training.pt"
            (`RELEASE_FILES`).
        path: the file itself, when the caller has it (returned as is, after checking it exists).

    Returns:
        `path` when given; else `$KERAS_YOLOV7_WEIGHTS_DIR/<filename>` when that variable is set
        and the file is there; else the cached file; else the cached file once downloaded.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `filename` is not a release file name.
        OfficialWeightsError: the download failed (offline, HTTP error, cut short twice, not a
            checkpoint); the message names the URL and the ways to supply the file instead.
    """
    if path is not None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"official checkpoint {path!r} does not exist")
        return path
    if filename not in RELEASE_FILES:
        raise ValueError(
            f"unknown official checkpoint {filename!r}; expected one of {list(RELEASE_FILES)}"
        )
    folder = os.environ.get("KERAS_YOLOV7_WEIGHTS_DIR")
    if folder and os.path.isfile(os.path.join(folder, filename)):
        return os.path.join(folder, filename)
    cached = os.path.join(cache_dir(), filename)
    if os.path.isfile(cached):
        return cached
    return _download(filename, cached)


def _supply_it_yourself(filename):
    return (
        f"supply the file instead: pass its path (from_preset(..., weights_path=...), "
        f"official_checkpoint_path(..., path=...)), or put it, named {filename!r}, in a folder "
        "named by the environment variable KERAS_YOLOV7_WEIGHTS_DIR"
    )


def _download(filename, destination):
    url = release_url() + filename
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    problems = []
    for _ in range(2):
        try:
            return _fetch(url, destination)
        except _FailedAttempt as problem:
            problems.append(str(problem))
    raise OfficialWeightsError(
        f"downloading {url} failed twice ({'; then '.join(problems)}); "
        + _supply_it_yourself(filename)
    )


def _fetch(url, destination):
    """One download of `url` into a temporary file beside `destination`, renamed onto it once
    complete and checked; the temporary file is removed whatever happens."""
    folder, filename = os.path.split(destination)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as out:
            received, announced = _stream(url, out, filename)
        if announced is not None and received != announced:
            raise _FailedAttempt(f"received {received} bytes of the {announced} announced")
        try:
            check_torch_checkpoint(temporary)
        except TorchCheckpointError as error:
            raise _FailedAttempt(
                f"the {received} bytes received are not a PyTorch checkpoint: {error}"
            ) from None
        os.replace(temporary, destination)
        return destination
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _stream(url, out, filename):
    """Copies the response body to `out`, with a progress bar on a terminal; returns the bytes
    received and the Content-Length announced (None when absent)."""
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise OfficialWeightsError(
                f"{url} does not exist (HTTP 404); check the file name, or the mirror named by "
                "KERAS_YOLOV7_RELEASE_URL"
            ) from None
        raise _FailedAttempt(f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise OfficialWeightsError(
            f"cannot download {url} ({reason}); to work offline, {_supply_it_yourself(filename)}"
        ) from None
    with response:
        length = response.headers.get("Content-Length")
        announced = int(length) if length and length.isdigit() else None
        target = math.ceil(announced / _CHUNK) if announced else None
        verbose = 1 if sys.stdout.isatty() else 0
        progress = keras.utils.Progbar(target, unit_name="MiB", verbose=verbose)
        received = 0
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (OSError, http.client.HTTPException) as error:
                broke = f"the connection broke after {received} bytes ({error})"
                raise _FailedAttempt(broke) from None
            if not chunk:
                return received, announced
            out.write(chunk)
            received += len(chunk)
            progress.update(received // _CHUNK)
