"""Finding and downloading the official checkpoints (`keras_yolov7.models.official_weights`).

A small threaded HTTP server on 127.0.0.1 plays the release page: it serves an official-format
yolov7-tiny checkpoint written by `tests/fixtures/official_checkpoint.py`, or misbehaves (cuts
the body short, announces a wrong Content-Length, serves a page that is not a checkpoint, 404,
never answers); a closed port stands for being offline. The environment variables users set
(`KERAS_YOLOV7_RELEASE_URL`, `KERAS_HOME`, `KERAS_YOLOV7_WEIGHTS_DIR`) select it, and each case
goes through `official_checkpoint_path`, the function users call, then checks what the cache holds.
"""

import collections
import http.server
import pathlib
import socket
import sys
import threading
import time

import pytest

from keras_yolov7.models import official_weights
from keras_yolov7.models.official_weights import OfficialWeightsError
from keras_yolov7.models.official_weights import official_checkpoint_path

pytest.importorskip("torch")  # to write the checkpoint served
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from official_checkpoint import write_official_checkpoint  # noqa: E402

NAME = "yolov7-tiny.pt"
HTML = b"<html><body>Rate limit exceeded</body></html>"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The bytes of an official-format yolov7-tiny release file (deploy form, float16)."""
    path = tmp_path_factory.mktemp("release") / NAME
    write_official_checkpoint(path, "yolov7_tiny", "deploy", class_names=[f"c{i}" for i in range(80)])
    return path.read_bytes()


class ReleaseServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture(scope="module")
def server(checkpoint):
    """Serves `/<behaviour>/<file>`; `server.requests` counts the requests per path."""
    requests = collections.Counter()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests[self.path] += 1
            behaviour = self.path.split("/")[1]
            body = checkpoint
            if behaviour == "missing":
                self.send_error(404)
                return
            if behaviour == "silent":
                time.sleep(3)
                return
            if behaviour == "html":
                body = HTML
            self.send_response(200)
            announced = len(body) - 1000 if behaviour == "wrong-length" else len(body)
            self.send_header("Content-Length", str(announced))
            self.end_headers()
            cut = behaviour == "short" or (behaviour == "flaky" and requests[self.path] == 1)
            try:
                self.wfile.write(body[: len(body) // 2] if cut else body)
            except ConnectionError:  # the client stopped at the Content-Length announced
                pass

    httpd = ReleaseServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.requests = requests
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def env(monkeypatch, tmp_path, server):
    """The user's environment: the release URL pointing at `behaviour`, a fresh Keras home."""

    def use(behaviour, port=None):
        port = port or server.server_address[1]
        monkeypatch.setenv("KERAS_YOLOV7_RELEASE_URL", f"http://127.0.0.1:{port}/{behaviour}")
        return f"http://127.0.0.1:{port}/{behaviour}/{NAME}"

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("KERAS_YOLOV7_WEIGHTS_DIR", raising=False)
    use.cache = tmp_path / "keras_home" / "keras_yolov7" / "weights"
    use.held = lambda: sorted(p.name for p in use.cache.iterdir()) if use.cache.exists() else []
    return use


def test_download_once_then_from_the_cache(env, server, checkpoint):
    env("good")
    before = server.requests[f"/good/{NAME}"]
    path = official_checkpoint_path(NAME)
    assert pathlib.Path(path) == env.cache / NAME
    assert pathlib.Path(path).read_bytes() == checkpoint
    assert env.held() == [NAME]
    assert official_checkpoint_path(NAME) == path
    assert server.requests[f"/good/{NAME}"] - before == 1

    from keras_yolov7.convert import load_torch_checkpoint

    model, info = load_torch_checkpoint(path, return_info=True)
    assert (model.architecture, info.form, model.num_classes, model.class_names[1]) == (
        "yolov7_tiny", "deploy", 80, "c1"
    )  # fmt: skip


def test_a_download_cut_short_is_tried_again(env, server, checkpoint):
    env("flaky")  # cuts its first answer short
    path = official_checkpoint_path(NAME)
    assert pathlib.Path(path).read_bytes() == checkpoint
    assert server.requests[f"/flaky/{NAME}"] == 2
    assert env.held() == [NAME]


@pytest.mark.parametrize(
    "behaviour, fragment",
    [
        ("short", f"received {{half}} bytes of the {{size}} announced"),
        ("wrong-length", "are not a PyTorch checkpoint"),
        ("html", f"the {len(HTML)} bytes received are not a PyTorch checkpoint"),
    ],
)
def test_bad_downloads_are_deleted_tried_twice_and_named(env, server, checkpoint, behaviour, fragment):
    url = env(behaviour)
    before = server.requests[f"/{behaviour}/{NAME}"]
    with pytest.raises(OfficialWeightsError) as error:
        official_checkpoint_path(NAME)
    message = str(error.value)
    assert message.startswith(f"downloading {url} failed twice")
    assert fragment.format(half=len(checkpoint) // 2, size=len(checkpoint)) in message
    assert "KERAS_YOLOV7_WEIGHTS_DIR" in message and "path=" in message
    assert server.requests[f"/{behaviour}/{NAME}"] - before == 2
    assert env.held() == []


def test_404_names_the_url(env, server):
    url = env("missing")
    before = server.requests[f"/missing/{NAME}"]
    with pytest.raises(OfficialWeightsError, match=rf"{url} does not exist \(HTTP 404\)"):
        official_checkpoint_path(NAME)
    assert server.requests[f"/missing/{NAME}"] - before == 1
    assert env.held() == []


def test_offline_says_how_to_supply_the_file(env):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = env("good", port=port)
    with pytest.raises(OfficialWeightsError) as error:
        official_checkpoint_path(NAME)
    message = str(error.value)
    assert message.startswith(f"cannot download {url} (") and "refused" in message
    assert "weights_path=" in message and "path=...)" in message
    assert f"put it, named '{NAME}', in a folder named by the environment variable" in message
    assert message.endswith("KERAS_YOLOV7_WEIGHTS_DIR")
    assert "\n" not in message
    assert env.held() == []


def test_a_server_that_never_answers_times_out(env, monkeypatch):
    monkeypatch.setattr(official_weights, "TIMEOUT_S", 0.5)
    url = env("silent")
    with pytest.raises(OfficialWeightsError, match=rf"cannot download {url} \(.*timed out"):
        official_checkpoint_path(NAME)
    assert env.held() == []


def test_an_interrupted_download_leaves_nothing(env, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    env("good")
    monkeypatch.setattr(official_weights.keras.utils.Progbar, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        official_checkpoint_path(NAME)
    assert env.held() == []


def test_weights_dir_and_path_come_before_any_download(env, server, monkeypatch, tmp_path, checkpoint):
    url = env("missing")  # any download would fail
    before = server.requests[f"/missing/{NAME}"]
    folder = tmp_path / "offline"
    folder.mkdir()
    (folder / NAME).write_bytes(checkpoint)
    monkeypatch.setenv("KERAS_YOLOV7_WEIGHTS_DIR", str(folder))
    assert official_checkpoint_path(NAME) == str(folder / NAME)
    assert official_checkpoint_path("yolov7.pt", path=folder / NAME) == str(folder / NAME)
    with pytest.raises(FileNotFoundError, match="official checkpoint '.*nowhere.pt' does not exist"):
        official_checkpoint_path(NAME, path=folder / "nowhere.pt")
    # Not in the folder: the cache, then the download are tried.
    with pytest.raises(OfficialWeightsError, match=url.replace(NAME, "yolov7.pt")):
        official_checkpoint_path("yolov7.pt")
    assert server.requests[f"/missing/{NAME}"] == before
    assert env.held() == []


def test_cache_is_used_without_the_network(env, checkpoint):
    env("missing")
    env.cache.mkdir(parents=True)
    (env.cache / NAME).write_bytes(checkpoint)
    assert official_checkpoint_path(NAME) == str(env.cache / NAME)


def test_unknown_names_are_refused(env):
    with pytest.raises(ValueError, match=r"unknown official checkpoint 'yolov8n.pt'; expected one of"):
        official_checkpoint_path("yolov8n.pt")


def test_the_release_url_by_default(monkeypatch):
    monkeypatch.delenv("KERAS_YOLOV7_RELEASE_URL", raising=False)
    release = "https://github.com/WongKinYiu/yolov7/releases/download/v0.1/"
    assert official_weights.release_url() == release
