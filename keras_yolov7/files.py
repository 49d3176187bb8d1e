"""Files written so that an interrupt never leaves a half-written one.

Every run file (checkpoints, args.yaml, results.csv, plots, predictions) is written to a
temporary file in the same folder and renamed over the target (`os.replace`, atomic on POSIX and
Windows): a Ctrl-C, a kill or a full disk at any moment leaves either the previous file or the new
one, never a truncated file.
"""

import contextlib
import os
import pathlib

# Temporary files start with this, so that a run directory's leftovers (a process killed with
# SIGKILL mid-write) can be recognised and removed.
TEMPORARY_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(path):
    """Context giving a temporary path to write `path` through; on a clean exit the temporary
    file replaces `path`, on an exception (KeyboardInterrupt included) it is removed and `path`
    is left as it was.

    The temporary name keeps `path`'s suffix (`.keras`, `.png`, ...), which writers such as
    `keras.Model.save`, matplotlib and Pillow read the format from.

    Example:

        with atomic_path("weights/last.keras") as temporary:
            model.save(temporary)
    """
    path = pathlib.Path(path)
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{path.name}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


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
