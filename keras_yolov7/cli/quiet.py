"""Quiet start-up for the command line: TensorFlow's and absl's start-up lines left out.

TensorFlow prints C++ log lines when it is imported (oneDNN notes, CUDA probing, CPU features),
before its logging reads TF_CPP_MIN_LOG_LEVEL; later lines obey it. The command line sets the
environment first, then imports the frameworks once with stderr filtered: the start-up lines go,
anything else (a Python warning, a real error) is written on as it came.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile

# C++ log lines of absl / TensorFlow ("I0000 00:00:1796625478.914283 1944 port.cc:153] ..."),
# at info, warning and error level, and the two other start-up lines.
_LOG_LINE = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+\s+\S+:\d+\] ")
_START_UP = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "To enable the following instructions:",
)
# Python loggers whose start-up warnings say nothing a user can act on.
_LOGGERS = ("absl", "tensorflow", "jax._src.xla_bridge")


def set_environment():
    """The environment variables that quieten TensorFlow; call before it is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_frameworks():
    """Imports Keras (with its backend) and TensorFlow, which the commands' data and export code
    use on every backend, leaving their start-up lines out of stderr."""
    if "keras" not in sys.modules or "tensorflow" not in sys.modules:
        with filtered_stderr():
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _is_start_up_line(line):
    return bool(_LOG_LINE.match(line)) or line.startswith(_START_UP)


@contextlib.contextmanager
def filtered_stderr():
    """Captures file descriptor 2 (where C++ code writes) and writes it back without the
    start-up lines (around code that may import TensorFlow first)."""
    try:
        descriptor = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced (tests): nothing to filter
        yield
        return
    sys.stderr.flush()
    saved = os.dup(descriptor)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), descriptor)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, descriptor)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not _is_start_up_line(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
