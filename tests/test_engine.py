"""The engine's training runs: resume after a real interrupt, atomic run files, run directories,
the short-run warning, readable logs and the errors of a bad resume.

The runs are yolov7_tiny at 64 px on 12 synthetic images, 3 epochs of 3 batches, with gradients
summed over 2 batches (nominal batch 8) so that an optimizer step spans the epoch boundary where
the runs are interrupted: a resume that lost the accumulated gradients, the optimizer slots, the
schedule position, the EMA or the data order would end with other weights.
"""

import concurrent.futures
import contextlib
import io
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_yolov7 import engine
from keras_yolov7.cli.main import main
from keras_yolov7.engine.runs import new_run_directory
from keras_yolov7.engine.training_state import STATE_FILE
from keras_yolov7.engine.training_state import load_training_state
from keras_yolov7.engine.training_state import save_training_state
from keras_yolov7.engine.weights import ModelSaver
from keras_yolov7.engine.weights import load_model
from keras_yolov7.files import TEMPORARY_PREFIX
from keras_yolov7.files import atomic_path
from keras_yolov7.training.recipe import short_run_advice

ROOT = pathlib.Path(__file__).resolve().parents[1]
EPOCHS = 3
HYP = {"nominal_batch_size": 8, "min_warmup_iterations": 2, "warmup_epochs": 0.5}
OPTIONS = dict(
    preset="yolov7_tiny",
    image_size=64,
    batch_size=4,
    epochs=EPOCHS,
    max_boxes=16,
    synthetic_images=(12, 4),
    hyperparameters=HYP,
)
CLI_OPTIONS = [
    "--data", "synthetic", "--preset", "yolov7_tiny", "--image-size", "64", "--batch", "4",
    "--epochs", str(EPOCHS), "--max-boxes", "16", "--synthetic-images", "12", "4",
    "--hyp", *(f"{key}={value}" for key, value in HYP.items()),
]  # fmt: skip
# ANSI escapes, backspaces, carriage returns and other C0 controls but tab and newline.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# The child of the interrupted runs: the real command line, which signals itself at the moment
# a user's Ctrl-C or a scheduler's SIGTERM is to arrive: right after an epoch is committed, or in
# the middle of the first file written after that (while `atomic_path` holds it). A watcher in
# this process (busy training the reference) could not be relied on to catch the tiny epochs in
# time: it sometimes saw the run end first.
_SELF_INTERRUPTING_CLI = """
import contextlib, os, signal, sys
from keras_yolov7.cli.main import main
from keras_yolov7 import files
from keras_yolov7.engine.recorder import RunRecorder

signum = getattr(signal, os.environ["KYV7_TEST_SIGNAL"])
mid_write = os.environ["KYV7_TEST_MID_WRITE"] == "1"
armed = []
record = RunRecorder.on_epoch_end

def record_then_interrupt(self, epoch, logs=None):
    record(self, epoch, logs)
    if mid_write:
        armed.append(True)
    else:
        signal.raise_signal(signum)

hold = files._interrupts_held

@contextlib.contextmanager
def hold_then_interrupt():
    with hold():
        if armed:
            armed.clear()
            signal.raise_signal(signum)
        yield

RunRecorder.on_epoch_end = record_then_interrupt
files._interrupts_held = hold_then_interrupt
sys.exit(main())  # as the keras-yolov7 command: reads sys.argv, SIGTERM handled
"""


def cli_process(*argv, interrupt=None, mid_write=False):
    """`keras-yolov7 argv` in a child process with pipes (not a terminal) for stdout/stderr.

    `interrupt` ("SIGINT", "SIGTERM"): the child receives that signal once its first epoch is
    committed, or with `mid_write` in the middle of its next file write (see above)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    command = ["-m", "keras_yolov7.cli"]
    if interrupt is not None:
        command = ["-c", _SELF_INTERRUPTING_CLI]
        env.update(KYV7_TEST_SIGNAL=interrupt, KYV7_TEST_MID_WRITE="1" if mid_write else "0")
    return subprocess.Popen(
        [sys.executable, *command, *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finished(process):
    """`(returncode, stdout, stderr)` of a child process."""
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def files_of(run_dir):
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


def assert_same_weights(a, b, rtol):
    weights_a, weights_b = load_model(a).get_weights(), load_model(b).get_weights()
    assert len(weights_a) == len(weights_b)
    for x, y in zip(weights_a, weights_b):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol)


# How close a resumed run ends to the uninterrupted one. TensorFlow and JAX (XLA) on a CPU run
# the same kernels in the same order: equal to float tolerance. Torch's CPU convolutions may pick
# other algorithms in a new process, which moves the last bits of the sums.
RTOL = {"tensorflow": 1e-5, "jax": 1e-5, "torch": 1e-4}[keras.backend.backend()]

# The runs train yolov7_tiny four times (three processes). The engine code they exercise is the
# same on every backend, so the default run has them on TensorFlow; on JAX and torch they are
# slow cases (`-m slow`), where they passed with the tolerances above.
on_tensorflow_else_slow = (
    (lambda test: test) if keras.backend.backend() == "tensorflow" else pytest.mark.slow
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The uninterrupted run, trained here from Python, and beside it the same run on the
    command line in a child process, stopped by SIGINT once epoch 1 is committed:
    `{"reference": TrainingResult, "reference_log", "interrupted": run directory, "first":
    (returncode, stdout, stderr)}`."""
    project = tmp_path_factory.mktemp("runs")
    process = cli_process(
        "train", *CLI_OPTIONS, "--project", project, "--name", "interrupted", interrupt="SIGINT"
    )
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # Waited for in a thread while this one trains the reference.
        first = pool.submit(finished, process)
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            reference = engine.train("synthetic", project=project, name="reference", **OPTIONS)
        return {
            "reference": reference,
            "reference_log": log.getvalue(),
            "interrupted": project / "interrupted",
            "first": first.result(),
        }


@on_tensorflow_else_slow
def test_resumes_after_real_interrupts_end_with_the_uninterrupted_weights(runs):
    """SIGINT after epoch 1 -> `train --resume` on the command line, SIGTERM at a write after
    epoch 2 -> `engine.resume` from Python: the weights, the optimizer and the run files equal
    those of the run never interrupted."""
    run_dir, reference = runs["interrupted"], runs["reference"].run_dir
    code, out, err = runs["first"]
    assert code == 130, err
    assert f"interrupted: resume with `keras-yolov7 train --resume {run_dir}`" in err
    assert load_training_state(run_dir / "weights" / STATE_FILE).epoch == 1

    second = finished(cli_process("train", "--resume", run_dir, interrupt="SIGTERM", mid_write=True))
    assert second[0] == 130, second
    assert f"resuming {run_dir} at epoch 2 of {EPOCHS}" in second[1]
    assert load_training_state(run_dir / "weights" / STATE_FILE).epoch == 2
    # Whatever was being written when the signal came, the previous files are whole.
    assert not [p for p in (run_dir / "weights").iterdir() if p.name.startswith(TEMPORARY_PREFIX)]
    load_model(run_dir / "weights" / "last.keras")

    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        result = engine.resume(run_dir)
    assert f"resuming {run_dir} at epoch 3 of {EPOCHS}" in log.getvalue()
    assert result.run_dir == run_dir and [row["epoch"] for row in result.rows] == [1, 2, 3]
    for name in ("last.keras", "best.keras"):
        assert_same_weights(run_dir / "weights" / name, reference / "weights" / name, RTOL)
    # The raw training weights and the optimizer's state (momentum, summed gradients, counters).
    state = load_training_state(run_dir / "weights" / STATE_FILE)
    expected = load_training_state(reference / "weights" / STATE_FILE)
    assert (state.epoch, state.step, state.ema_updates) == (EPOCHS, 9, expected.ema_updates)
    assert state.best_epoch == expected.best_epoch
    for x, y in zip(
        state.weights + state.optimizer_variables, expected.weights + expected.optimizer_variables
    ):
        np.testing.assert_allclose(x, y, rtol=RTOL, atol=RTOL)
    # results.csv: one row per epoch from 1, the same columns as the uninterrupted run's.
    rows = (run_dir / "results.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["epoch", "1", "2", "3"]
    assert rows[0] == (reference / "results.csv").read_text().splitlines()[0]
    # Python and the command line write the same run directory.
    assert files_of(run_dir) == files_of(reference)
    # A log file reads line by line: no control characters, one line per epoch.
    logs = (out, err, *second[1:], log.getvalue(), runs["reference_log"])
    for text in logs:
        assert not CONTROL.search(text), repr(CONTROL.search(text).group())
    def epoch_lines(text):
        return [line.split(":")[0] for line in text.splitlines() if line.startswith("epoch ")]

    assert epoch_lines(runs["reference_log"]) == [f"epoch {e}/{EPOCHS}" for e in (1, 2, 3)]
    # The interrupted processes may stop between an epoch's commit and its line.
    assert epoch_lines(second[1]) in ([], [f"epoch 2/{EPOCHS}"])
    assert epoch_lines(log.getvalue()) == [f"epoch 3/{EPOCHS}"]


@on_tensorflow_else_slow
def test_short_run_warning_names_the_overrides(runs, caplog):
    # The reference run sums 2 batches per step: 1.5 weight updates per epoch.
    advice = short_run_advice(EPOCHS, 3, 4, **HYP)
    assert "1.5 weight updates per epoch" in advice and "nominal_batch_size=4" in advice
    assert "warmup" not in advice  # 2 warmup batches of 9 planned
    assert "the warmup lasts 1000 batches of the 30 planned" in short_run_advice(10, 3, 64)
    assert short_run_advice(300, 1000, 64) is None
    assert "warning: short run: gradients are summed over 2 batches" in runs["first"][2]


@on_tensorflow_else_slow
def test_resume_refuses_a_finished_run(runs):
    run_dir = runs["reference"].run_dir
    with pytest.raises(ValueError, match=f"{run_dir} finished all {EPOCHS} epochs"):
        engine.resume(run_dir)


def copy_run(runs, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(runs["reference"].run_dir, run_dir)
    state = load_training_state(run_dir / "weights" / STATE_FILE)
    state.epoch = 1
    save_training_state(run_dir / "weights" / STATE_FILE, state)
    return run_dir, state


@on_tensorflow_else_slow
def test_resume_refuses_another_runs_state(runs, tmp_path):
    run_dir, state = copy_run(runs, tmp_path)
    state.run["num_classes"] = 80
    save_training_state(run_dir / "weights" / STATE_FILE, state)
    with pytest.raises(ValueError, match=r"training_state.npz is of a run with num_classes 80 but .*args.yaml says 5"):
        engine.resume(run_dir)


@on_tensorflow_else_slow
def test_resume_refuses_an_older_state_format(runs, tmp_path):
    run_dir, _ = copy_run(runs, tmp_path)
    path = run_dir / "weights" / STATE_FILE
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["meta"] = np.frombuffer(
        bytes(arrays["meta"]).replace(b'"format": 1', b'"format": 0'), np.uint8
    )
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=f"{path} is a training state of format 0"):
        engine.resume(run_dir)


@on_tensorflow_else_slow
def test_resume_refuses_a_run_without_checkpoints(runs, tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="args.yaml does not exist"):
        engine.resume(tmp_path / "run")
    shutil.copy(runs["reference"].run_dir / "args.yaml", tmp_path / "run" / "args.yaml")
    with pytest.raises(FileNotFoundError, match="has no finished epoch to resume from"):
        engine.resume(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="no run with weights/training_state.npz"):
        engine.resume(project=tmp_path)


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@on_tensorflow_else_slow
def test_cli_resume_errors_are_one_line(runs, tmp_path):
    run_dir = runs["reference"].run_dir
    code, _, err = run_cli("train", "--resume", run_dir)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{run_dir} finished all {EPOCHS} epochs" in err
    code, _, err = run_cli("train", "--resume", run_dir, "--preset", "yolov7")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--preset differs from" in err and "yolov7_tiny" in err
    code, _, err = run_cli("train", "--resume", tmp_path)
    assert code == 2 and "args.yaml does not exist" in err


@on_tensorflow_else_slow
def test_an_interrupted_write_leaves_the_previous_checkpoint(runs, tmp_path, monkeypatch):
    source = runs["reference"].run_dir / "weights" / "last.keras"
    last = tmp_path / "last.keras"
    shutil.copy(source, last)
    model = runs["reference"].model
    saver = ModelSaver(model)
    real_save = type(saver.copy).save

    def interrupted_save(self, path, *args, **kwargs):
        real_save(self, path, *args, **kwargs)
        with open(path, "r+b") as file:  # half the archive written, then Ctrl-C
            file.truncate(os.path.getsize(path) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(type(saver.copy), "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        saver.save(last, [w * 0 for w in model.get_weights()])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.keras"]
    assert_same_weights(last, source, 0)

    state_path = runs["reference"].run_dir / "weights" / STATE_FILE
    state = load_training_state(state_path)
    copy = tmp_path / STATE_FILE
    shutil.copy(state_path, copy)

    def interrupted_savez(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted_savez)
    with pytest.raises(KeyboardInterrupt):
        save_training_state(copy, state)
    monkeypatch.undo()
    assert load_training_state(copy).step == state.step
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.keras", STATE_FILE]


def test_exist_ok_moves_another_runs_files_aside_and_says_so(tmp_path, caplog):
    taken = tmp_path / "exp"
    (taken / "weights").mkdir(parents=True)
    (taken / "weights" / "last.keras").write_text("another run")
    with caplog.at_level("WARNING", logger="keras_yolov7"):
        assert new_run_directory(tmp_path, "exp", exist_ok=True) == taken
    assert list(taken.iterdir()) == []
    assert (tmp_path / "exp2" / "weights" / "last.keras").read_text() == "another run"
    assert f"{taken} held another run's files: moved them to {tmp_path / 'exp2'}" in caplog.text
    # An empty directory is simply used.
    assert new_run_directory(tmp_path, "exp", exist_ok=True) == taken
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "exp2"]


def test_a_signal_during_a_write_is_delivered_after_the_file_is_whole(tmp_path):
    # Writers such as h5py swallow an exception raised inside their callbacks: a Ctrl-C that
    # came mid-write must not leave a broken file renamed into place.
    path = tmp_path / "results.csv"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as temporary:
            temporary.write_text("half")
            signal.raise_signal(signal.SIGINT)  # to this thread: delivered before the next line
            temporary.write_text("whole")
    assert path.read_text() == "whole" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
