"""The `keras-yolov7` entry point: the parser, the backend switch and one-line error reports.

Building the parser imports no Keras and no TensorFlow (`--help`, usage errors and `info`
answer at once); a command imports the frameworks when it runs.
"""

import contextlib
import importlib
import logging
import os
import pathlib
import signal
import subprocess
import sys

from keras_yolov7.cli import arguments
from keras_yolov7.cli import quiet

COMMANDS = ("train", "val", "predict", "export", "convert", "info", "preview")
# Commands that read only the configs: they run without importing Keras.
WITHOUT_KERAS = ("info",)

DESCRIPTION = """\
YOLOv7 object detection for Keras 3 (TensorFlow, JAX, PyTorch).

examples:
  keras-yolov7 train --data data.yaml --preset yolov7_tiny --epochs 100 --batch 16
  keras-yolov7 train --data synthetic --preset yolov7_tiny --image-size 256 --epochs 10
  keras-yolov7 train --resume runs/train/exp
  keras-yolov7 val --weights runs/train/exp/weights/best.keras --data data.yaml
  keras-yolov7 predict --weights runs/train/exp/weights/best.keras --source images/ --save-json
  keras-yolov7 export --weights best.keras --format tflite --precision int8 --data data.yaml
  keras-yolov7 convert yolov7-tiny.pt
  keras-yolov7 info
"""


def _command(name):
    return importlib.import_module(f"keras_yolov7.cli.commands.{name}")


def build_parser(command="all"):
    """The argument parser (building it imports no Keras).

    Args:
        command: "all" builds every command's options; a command name only that one's and None
            none (the others are listed with their one-line help): `main` parses with the
            parser of the command named, so that building it imports only what that command's
            options need.
    """
    parser = arguments.Parser(
        prog="keras-yolov7",
        description=DESCRIPTION,
        epilog="Run `keras-yolov7 COMMAND --help` for the options of a command. Errors in "
        "arguments and inputs are one line on stderr with exit code 2 (set "
        "KERAS_YOLOV7_TRACEBACK=1 to see the traceback).",
        formatter_class=arguments.Formatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = _command(name)
        if command in ("all", name):
            module.add_parser(commands)
        else:
            commands.add_parser(name, help=module.HELP)
    return parser


def _switch_backend(backend, argv, replace_process):
    """Makes the command run on `backend`.

    Before Keras is imported (the command line) setting KERAS_BACKEND is enough. When Keras is
    already imported on another backend (a Python caller), the command runs in a child process:
    Keras reads KERAS_BACKEND once, when it is first imported.

    Returns:
        None when the command can run here, else the child's exit code.
    """
    if backend is None:
        return None
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = backend
        return None
    import keras

    if keras.backend.backend() == backend:
        return None
    env = dict(os.environ, KERAS_BACKEND=backend)
    root = str(pathlib.Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "keras_yolov7.cli", *argv]
    if replace_process:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, command, env)
    return subprocess.run(command, env=env).returncode


def main(argv=None):
    """Runs one command; returns the exit code (0 success, 2 bad arguments or inputs, 130
    interrupted by Ctrl-C or SIGTERM).

    Args:
        argv: the arguments after the program name; default `sys.argv[1:]`.
    """
    quiet.set_environment()
    command_line = argv is None
    argv = [str(a) for a in (sys.argv[1:] if command_line else argv)]
    command = argv[0] if argv and argv[0] in COMMANDS else None
    try:
        # A command's options may import TensorFlow (export's choices come from the export
        # package): its start-up lines are filtered here too.
        with quiet.filtered_stderr():
            args = build_parser(command).parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (2), already printed
        return done.code
    args.argv = argv[1:]
    switched = _switch_backend(args.backend, argv, replace_process=command_line)
    if switched is not None:
        return switched
    try:
        with _sigterm_as_interrupt(command_line), _library_warnings_on_stderr():
            if args.command not in WITHOUT_KERAS:
                quiet.import_frameworks()
            args.run(args)
    except _reported_errors() as error:
        if os.environ.get("KERAS_YOLOV7_TRACEBACK"):
            raise
        print(f"keras-yolov7 {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"keras-yolov7 {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


class _sigterm_as_interrupt:
    """In the command line, SIGTERM (a `kill`, a job scheduler ending the job) stops the command
    like Ctrl-C does: files being written are abandoned cleanly (the previous ones stay), instead
    of the process vanishing mid-write."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.previous = None

    def __enter__(self):
        if self.enabled:
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            signal.signal(signal.SIGTERM, self.previous)
        return False

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt


@contextlib.contextmanager
def _library_warnings_on_stderr():
    """The library's warnings (`logging.getLogger("keras_yolov7")`: a skipped file, a short
    run, a run directory moved aside) as `warning: ...` lines on the current stderr."""
    handler = _StderrHandler(logging.WARNING)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    library = logging.getLogger("keras_yolov7")
    library.addHandler(handler)
    try:
        yield
    finally:
        library.removeHandler(handler)


class _StderrHandler(logging.Handler):
    """Writes to `sys.stderr` as it is when a record comes (a caller may have redirected it)."""

    def emit(self, record):
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging's own rule: a failed report never raises
            self.handleError(record)


def _reported_errors():
    from keras_yolov7.cli.errors import reported_errors

    return reported_errors()


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{text}: {error.filename}"
    return text
