"""Files written so that an interrupt never leaves a half-written one.

Every run file (checkpoints, args.yaml, results.csv, plots, predictions) is written to a
temporary file in the same folder and renamed over the target (`os.replace`, atomic on POSIX and
Windows): a Ctrl-C, a kill or a full disk at any moment leaves either the previous file or the new
one, never a truncated file.
"""

import contextlib
import os
import pathlib
import signal
import threading

# Temporary files start with this, so that a run directory's leftovers (a process killed with
# SIGKILL mid-write) can be recognised and removed.
TEMPORARY_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(path):
    """Context giving a temporary path to write `path` through; on a clean exit the temporary
    file replaces `path`, on an exception (KeyboardInterrupt included) it is removed and `path`
    is left as it was.

    Ctrl-C and SIGTERM arriving while the file is written are held until it is renamed into
    place, then delivered: some writers swallow an exception raised inside them (h5py's Python
    file callbacks, which `keras.Model.save` writes through), and would leave a broken file to
    rename.

    The temporary name keeps `path`'s suffix (`.keras`, `.png`, ...), which writers such as
    `keras.Model.save`, matplotlib and Pillow read the format from.

    Example:

        with atomic_path("weights/last.keras") as temporary:
            model.save(temporary)
    """
    path = pathlib.Path(path)
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{path.name}")
    try:
        with _interrupts_held():
            yield temporary
            os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


@contextlib.contextmanager
def _interrupts_held():
    """Holds SIGINT and SIGTERM (main thread only: elsewhere Python runs no handlers) and
    delivers them, to the handlers they had, on leaving."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda s, _: received.append(s)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for signum in received[:1]:
        signal.raise_signal(signum)


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def remove_temporary_files(folder):
    """Removes the temporary files an interrupted writer left in `folder` (not recursive);
    returns their names."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.iterdir() if p.name.startswith(TEMPORARY_PREFIX))
    for path in found:
        path.unlink()
    return [path.name for path in found]
