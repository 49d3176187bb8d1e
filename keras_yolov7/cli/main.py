"""The `keras-yolov7` entry point: the parser, the backend switch and one-line error reports."""

import os
import pathlib
import subprocess
import sys

from keras_yolov7.cli import arguments
from keras_yolov7.cli.commands import convert
from keras_yolov7.cli.commands import export
from keras_yolov7.cli.commands import info
from keras_yolov7.cli.commands import predict
from keras_yolov7.cli.commands import preview
from keras_yolov7.cli.commands import train
from keras_yolov7.cli.commands import val
from keras_yolov7.cli.errors import reported_errors

COMMANDS = (train, val, predict, export, convert, info, preview)

DESCRIPTION = """\
YOLOv7 object detection for Keras 3 (TensorFlow, JAX, PyTorch).

examples:
  keras-yolov7 train --data data.yaml --preset yolov7_tiny --epochs 100 --batch 16
  keras-yolov7 train --data synthetic --preset yolov7_tiny --image-size 256 --epochs 10
  keras-yolov7 val --weights runs/train/exp/weights/best.keras --data data.yaml
  keras-yolov7 predict --weights runs/train/exp/weights/best.keras --source images/ --save-json
  keras-yolov7 export --weights best.keras --format tflite --precision int8 --data data.yaml
  keras-yolov7 convert yolov7-tiny.pt
  keras-yolov7 info
"""


def build_parser():
    """The argument parser of every command (no Keras work is done to build it)."""
    parser = arguments.Parser(
        prog="keras-yolov7",
        description=DESCRIPTION,
        epilog="Run `keras-yolov7 COMMAND --help` for the options of a command. Errors in "
        "arguments and inputs are one line on stderr with exit code 2 (set "
        "KERAS_YOLOV7_TRACEBACK=1 to see the traceback).",
        formatter_class=arguments.Formatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def _switch_backend(backend, argv, replace_process):
    """Runs the command again under the requested backend when Keras is already on another one.

    Keras reads KERAS_BACKEND once, when it is first imported, which has happened by the time
    this module runs (the package imports Keras). From the command line the process is replaced
    (`exec`); a call with an explicit `argv` (a Python caller) runs a child process instead.

    Returns:
        None when the current backend is the requested one, else the child's exit code.
    """
    import keras

    if backend is None or keras.backend.backend() == backend:
        return None
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    root = str(pathlib.Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "keras_yolov7.cli", *argv]
    if replace_process:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, command, env)
    return subprocess.run(command, env=env).returncode


def main(argv=None):
    """Runs one command; returns the exit code (0 success, 2 bad arguments or inputs).

    Args:
        argv: the arguments after the program name; default `sys.argv[1:]`.
    """
    command_line = argv is None
    argv = list(sys.argv[1:] if command_line else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (2), already printed
        return done.code
    switched = _switch_backend(args.backend, argv, replace_process=command_line)
    if switched is not None:
        return switched
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        args.run(args)
    except reported_errors() as error:
        if os.environ.get("KERAS_YOLOV7_TRACEBACK"):
            raise
        print(f"keras-yolov7 {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"keras-yolov7 {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{text}: {error.filename}"
    return text
