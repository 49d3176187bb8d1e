"""Pretrained presets end to end: `YOLOv7ObjectDetector.from_preset("yolov7_tiny_coco")`.

A server on 127.0.0.1 plays the official release page and serves an official-format
yolov7-tiny checkpoint written by `tests/fixtures/official_checkpoint.py` (seeded weights, deploy
form, float16, as the release files are). Each case goes through the calls a user makes: the
first `from_preset` downloads, converts and caches; later ones load the cache without the
network; offline, the error says what to do.
"""

import collections
import http.server
import json
import pathlib
import sys
import threading

import keras
import keras_hub
import numpy as np
import pytest

import keras_yolov7 as kyv7
from keras_yolov7.convert import load_torch_checkpoint
from keras_yolov7.models import presets
from keras_yolov7.models.official_weights import OfficialWeightsError

pytest.importorskip("torch")  # to write the checkpoint served
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from official_checkpoint import write_official_checkpoint  # noqa: E402

FILE = "yolov7-tiny.pt"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    write_official_checkpoint(folder / FILE, "yolov7_tiny", "deploy", seed=3)
    requests = collections.Counter()
    body = (folder / FILE).read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests[self.path] += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.requests = requests
    httpd.file = folder / FILE
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/v0.1/"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def home(monkeypatch, tmp_path, release):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("KERAS_YOLOV7_RELEASE_URL", release.url)
    monkeypatch.delenv("KERAS_YOLOV7_WEIGHTS_DIR", raising=False)
    release.requests.clear()
    return tmp_path / "keras_home" / "keras_yolov7"


def offline(monkeypatch):
    """A release URL on a port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v0.1/"
    monkeypatch.setenv("KERAS_YOLOV7_RELEASE_URL", url)
    return url


def lead_outputs(detector, images):
    return [keras.ops.convert_to_numpy(x) for x in detector(images, training=False)]


def test_pretrained_preset_downloads_once_converts_exactly_and_loads_offline(home, release, monkeypatch):
    detector = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny_coco")
    assert release.requests == {"/v0.1/" + FILE: 1}
    assert detector.architecture == "yolov7_tiny" and detector.num_classes == 80
    assert detector.class_names == list(presets.COCO_CLASS_NAMES)
    assert detector.image_size == (640, 640)

    # The same numbers as converting the release file directly.
    images = np.random.default_rng(0).uniform(0, 1, (1, 64, 96, 3)).astype("float32")
    direct = load_torch_checkpoint(release.file)
    for ours, reference in zip(lead_outputs(detector, images), lead_outputs(direct, images)):
        np.testing.assert_allclose(ours, reference, atol=1e-5)

    # Cached: no second download, and nothing reaches the network when offline.
    offline(monkeypatch)
    again = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny_coco")
    assert sum(release.requests.values()) == 1
    np.testing.assert_allclose(lead_outputs(again, images)[0], lead_outputs(detector, images)[0])
    cached = home / "presets" / "yolov7_tiny_coco"
    assert json.loads((cached / presets.MARKER_FILE).read_text())["source"] == FILE

    # The cached directory is an ordinary KerasHub preset.
    hub = keras_hub.models.ObjectDetector.from_preset(str(cached))
    assert isinstance(hub, kyv7.YOLOv7ObjectDetector)
    backbone = keras_hub.models.Backbone.from_preset(str(cached))
    assert isinstance(backbone, kyv7.YOLOv7Backbone)


def test_fine_tuning_preset_keeps_the_box_weights(home):
    coco = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny_coco")
    two = kyv7.YOLOv7ObjectDetector.from_preset(
        "yolov7_tiny_coco", num_classes=2, class_names=["cat", "dog"]
    )
    assert two.num_classes == 2 and two.class_names == ["cat", "dog"]
    images = np.random.default_rng(1).uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    for ours, theirs in zip(lead_outputs(two, images), lead_outputs(coco, images)):
        # Per anchor: 4 box + 1 objectness channels carried over, class channels fresh.
        ours, theirs = ours.reshape(-1, 3, 7), theirs.reshape(-1, 3, 85)
        np.testing.assert_allclose(ours[..., :5], theirs[..., :5], atol=1e-5)


def test_offline_first_use_says_how_to_supply_the_file(home, release, monkeypatch):
    url = offline(monkeypatch)
    with pytest.raises(OfficialWeightsError) as caught:
        kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny_coco")
    message = str(caught.value)
    assert url + FILE in message
    assert "weights_path=" in message and "KERAS_YOLOV7_WEIGHTS_DIR" in message and FILE in message
    assert not (home / "presets" / "yolov7_tiny_coco").exists()

    # Either way the message names works without the network.
    detector = kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny_coco", weights_path=release.file)
    assert detector.num_classes == 80
    monkeypatch.setenv("KERAS_YOLOV7_WEIGHTS_DIR", str(release.file.parent))
    monkeypatch.setenv("KERAS_HOME", str(home.parent.parent / "other_home"))
    assert kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny_coco").num_classes == 80
    assert sum(release.requests.values()) == 0


def test_interrupted_conversion_leaves_nothing_trusted(home, monkeypatch):
    def interrupted(self, preset_dir, max_shard_size=10):
        (pathlib.Path(preset_dir) / "config.json").write_text("{")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(kyv7.YOLOv7ObjectDetector, "save_to_preset", interrupted)
        with pytest.raises(KeyboardInterrupt):
            kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny_coco")
    presets_dir = home / "presets"
    assert not presets_dir.exists() or list(presets_dir.iterdir()) == []
    # The downloaded file is kept; the next call converts again and succeeds.
    assert kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny_coco").num_classes == 80


def test_foreign_or_broken_preset_directories_are_named(tmp_path):
    foreign = tmp_path / "retinanet"
    foreign.mkdir()
    (foreign / "config.json").write_text(
        json.dumps({"registered_name": "keras_hub>RetinaNetBackbone", "config": {}})
    )
    with pytest.raises(ValueError, match="keras_hub>RetinaNetBackbone preset, not a keras_yolov7"):
        kyv7.YOLOv7ObjectDetector.from_preset(str(foreign))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        kyv7.YOLOv7ObjectDetector.from_preset(str(empty))
    with pytest.raises(ValueError, match="unknown preset 'yolov7_tiny_cocoa'"):
        kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny_cocoa")
    with pytest.raises(ValueError, match="weights_path is for the pretrained presets"):
        kyv7.YOLOv7ObjectDetector.from_preset("yolov7_tiny", weights_path=str(tmp_path / "x.pt"))
