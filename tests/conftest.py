"""Shared test setup. The backend comes from KERAS_BACKEND (one pytest process per backend)."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_DATA = pathlib.Path(os.environ.get("KERAS_YOLOV7_SHARED_DATA", ROOT.parent / "shared" / "data"))


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture
def shared_data():
    """../shared/data (real COCO images); tests using it skip when it is absent (a user's clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-image data folder {SHARED_DATA} is absent (set KERAS_YOLOV7_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
