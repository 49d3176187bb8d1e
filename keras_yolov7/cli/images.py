"""Images for `predict`: finding them in files, folders and globs."""

import glob
import pathlib

from keras_yolov7.cli.errors import CLIError


def find_files(sources):
    """The files named by `--source` entries, in order: files as given, the files of a folder
    (sorted, hidden ones left out, not recursive) and the matches of a glob pattern (sorted).

    Raises:
        CLIError: a path that does not exist, an empty folder, a pattern matching nothing.
    """
    files = []
    for source in sources:
        path = pathlib.Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not found:
                raise CLIError(f"folder {source} has no files (expected images)")
            files += found
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(source):
            found = sorted(pathlib.Path(p) for p in glob.glob(source) if pathlib.Path(p).is_file())
            if not found:
                raise CLIError(f"pattern {source!r} matches no files")
            files += found
        else:
            raise CLIError(f"source {source!r} does not exist")
    return files
