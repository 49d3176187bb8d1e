"""What the benchmarks share: the machine they ran on, and the official code timed in the same run.

Speed figures compare only when measured on one machine in one run, so a benchmark given
`--official-dir` times the official PyTorch code right after its own figure, in a subprocess
(`official_timing.py`, run with `--official-python` inside the official checkout), and prints
both and the ratio. Without it, it prints absolute figures and the CPU they were measured on.
"""

import json
import os
import pathlib
import platform
import subprocess
import sys

TIMING_SCRIPT = pathlib.Path(__file__).resolve().with_name("official_timing.py")


def cpu_model_name():
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line():
    """`CPU model name, N CPUs, load average` (the load says whether the machine was idle)."""
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {:.2f} {:.2f} {:.2f} at start".format(*os.getloadavg())
    return f"{cpu_model_name()}, {os.cpu_count()} CPUs{load}"


def add_official_arguments(parser):
    parser.add_argument(
        "--official-dir",
        help="a checkout of github.com/WongKinYiu/yolov7: time the official code on the same "
        "inputs in the same run and print the ratio",
    )
    parser.add_argument(
        "--official-python",
        default=sys.executable,
        help="Python interpreter with torch and the official code's imports (default: this one); "
        "a wrapper script that sets PYTHONPATH works too",
    )


def check_official_arguments(parser, args):
    if args.official_dir is None:
        return
    directory = pathlib.Path(args.official_dir)
    if not (directory / "models" / "yolo.py").is_file():
        parser.error(f"--official-dir {directory} is not a YOLOv7 checkout (no models/yolo.py)")


def official_cfg(preset):
    """This project's preset name -> the official cfg name (`yolov7_tiny` -> `yolov7-tiny`)."""
    return preset.replace("_", "-")


def run_official(args, *arguments):
    """Runs `official_timing.py` with `arguments` in the official checkout; its JSON result."""
    command = [args.official_python, str(TIMING_SCRIPT), *map(str, arguments)]
    completed = subprocess.run(
        command, cwd=args.official_dir, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"the official timing failed ({' '.join(command)} in {args.official_dir}):\n"
            f"{completed.stderr[-3000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])
