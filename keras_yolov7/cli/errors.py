"""The errors the command line reports as one line on stderr (exit code 2), not a traceback."""


class CLIError(Exception):
    """A problem with the command's arguments or inputs, reported as one line."""


def reported_errors():
    """The exception types a command reports as one line: bad arguments and inputs met by the
    library (`ValueError`, file problems), a missing optional dependency (`ImportError`), a
    failed export verification and a training loss that became NaN. Anything else is a bug and
    keeps its traceback."""
    from keras_yolov7.export.verify import ExportVerificationError
    from keras_yolov7.training.guard import NonFiniteLossError

    return (CLIError, ValueError, OSError, ImportError, ExportVerificationError, NonFiniteLossError)
