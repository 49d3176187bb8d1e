"""The safe reader of PyTorch checkpoints against files written by torch itself.

torch is used here only to write files. The "official" checkpoints are pickled from a stand-in
`models` package (models/common.py, models/yolo.py with the official class names and module
layout, built from real torch.nn layers) written to a temporary folder and removed from sys.path
and sys.modules before reading, as for a user who has the .pt file but not the official code.
"""

import copy
import importlib
import importlib.util
import os
import pathlib
import pickle
import struct
import subprocess
import sys
import textwrap
import types
import zipfile

import numpy as np
import pytest

from keras_yolov7.convert import TorchCheckpointError
from keras_yolov7.convert import UnsafeCheckpointError
from keras_yolov7.convert import read_torch_checkpoint

torch = pytest.importorskip("torch")

MODULE_FILE = pathlib.Path(__file__).resolve().parents[1] / "keras_yolov7" / "convert" / "torch_checkpoint.py"
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
TINY_KEYS = FIXTURES / "keys" / "yolov7-tiny.training.txt"
sys.path.insert(0, str(FIXTURES))
from official_checkpoint import write_official_checkpoint  # noqa: E402

COMMON_PY = """
import torch
from torch import nn


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU() if act is True else nn.LeakyReLU(0.1)


class RepConv(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.act = nn.SiLU()
        self.rbr_identity = nn.BatchNorm2d(c1) if c1 == c2 else None
        self.rbr_dense = nn.Sequential(nn.Conv2d(c1, c2, 3, 1, 1, bias=False), nn.BatchNorm2d(c2))
        self.rbr_1x1 = nn.Sequential(nn.Conv2d(c1, c2, 1, 1, 0, bias=False), nn.BatchNorm2d(c2))


class MP(nn.Module):
    def __init__(self):
        super().__init__()
        self.m = nn.MaxPool2d(2, 2)


class Concat(nn.Module):
    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension


class ImplicitA(nn.Module):
    def __init__(self, channel):
        super().__init__()
        self.implicit = nn.Parameter(torch.zeros(1, channel, 1, 1))


class ImplicitM(nn.Module):
    def __init__(self, channel):
        super().__init__()
        self.implicit = nn.Parameter(torch.ones(1, channel, 1, 1))


class Quirks(nn.Module):
    # torch.nn.Module.state_dict() rules: None parameters and non-persistent buffers are left out,
    # a module registered twice appears under both names.
    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(2))
        self.register_parameter("unused", None)
        self.register_buffer("kept", torch.arange(3.0))
        self.register_buffer("scratch", torch.zeros(4), persistent=False)
        self.register_buffer("missing", None)
        shared = nn.Conv2d(2, 2, 1)
        self.first = shared
        self.second = shared
        self.empty = nn.Sequential()
"""

YOLO_PY = """
import torch
from torch import nn

from models.common import Concat, Conv, ImplicitA, ImplicitM, MP, RepConv


class IDetect(nn.Module):
    stride = None

    def __init__(self, nc=80, anchors=(), ch=()):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.grid = [torch.zeros(1)] * self.nl
        a = torch.tensor(anchors).float().view(self.nl, -1, 2)
        self.register_buffer("anchors", a)
        self.register_buffer("anchor_grid", a.clone().view(self.nl, 1, -1, 1, 1, 2))
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.ia = nn.ModuleList(ImplicitA(x) for x in ch)
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch)


class IAuxDetect(IDetect):
    def __init__(self, nc=80, anchors=(), ch=()):
        super().__init__(nc, anchors, ch[: len(anchors)])
        self.m2 = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch[len(anchors):])


class Model(nn.Module):
    def __init__(self, layers, yaml, names):
        super().__init__()
        self.yaml = yaml
        self.model = nn.Sequential(*layers)
        self.save = [1, 2]
        self.names = names
        self.nc = yaml["nc"]
        self.hyp = {"box": 0.05, "cls": 0.3}
        self.gr = 1.0
        self.class_weights = torch.ones(self.nc)
        head = layers[-1]
        head.stride = torch.tensor([8.0, 16.0, 32.0][: head.nl])
        self.stride = head.stride
        self.traced = False
"""

TINY_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]


def _randomize(module, seed):
    """Distinct values in every state tensor (parameters, BN statistics, counters)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.dtype == torch.int64:
                tensor.fill_(int(torch.randint(1, 10_000, (), generator=generator)))
            elif name.endswith(("anchors", "anchor_grid")):
                continue
            else:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 2 - 0.5)
    return module


def _read_keys(path):
    rows = []
    for line in pathlib.Path(path).read_text().splitlines():
        name, shape, dtype = line.split("\t")
        rows.append((name, tuple(int(s) for s in shape.strip("()").split(",") if s.strip()), dtype))
    return rows


def _tiny_from_keys(models, keys):
    """The yolov7-tiny training model rebuilt from the official state_dict listing: Conv layers
    where the listing has `model.i.conv.weight`, IDetect at the end, parameter-free layers
    (Concat, MP, Upsample) at the indices without tensors."""
    shapes = {name: shape for name, shape, _ in keys}
    last = max(int(name.split(".")[1]) for name in shapes)
    free = [models.common.Concat, models.common.MP, lambda: torch.nn.Upsample(None, 2, "nearest")]
    layers = []
    for i in range(last):
        weight = shapes.get(f"model.{i}.conv.weight")
        if weight is None:
            layers.append(free[i % len(free)]())
        else:
            layers.append(models.common.Conv(weight[1], weight[0], weight[2], act=False))
    ch = [shapes[f"model.{last}.ia.{j}.implicit"][1] for j in range(3)]
    layers.append(models.yolo.IDetect(80, TINY_ANCHORS, ch))
    return models.yolo.Model(layers, {"nc": 80, "anchors": TINY_ANCHORS, "backbone": [], "head": []}, None)


def _small_official(models, seed):
    c = models.common
    layers = [
        c.Conv(3, 8, 3),
        c.Conv(8, 16, 3, 2),
        c.RepConv(16, 16),
        c.RepConv(16, 24),
        c.MP(),
        torch.nn.Upsample(None, 2, "nearest"),
        c.Concat(1),
        models.yolo.IAuxDetect(3, [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]], [24, 16, 24, 16]),
    ]
    yaml = {
        "nc": 3,
        "depth_multiple": 1.0,
        "anchors": [[10, 13], [30, 61]],
        "backbone": [[-1, 1, "Conv", [8, 3, 1]]],
    }
    return _randomize(models.yolo.Model(layers, yaml, ["square", "disc", "star"]), seed)


def _expected(module):
    out = {}
    for name, tensor in module.state_dict().items():
        out[name] = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
    return out


def _official_checkpoint(model, ema, epoch=41, ema_entry=True):
    # What the official train.py saves (half-precision deep copies of the model and of the EMA).
    return {
        "epoch": epoch,
        "best_fitness": np.array([0.6125]),
        "training_results": "0/299 ...",
        "model": copy.deepcopy(model).half(),
        "ema": copy.deepcopy(ema).half() if ema_entry else None,
        "updates": 1234,
        "optimizer": None,
        "wandb_id": None,
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Checkpoint files written with the stand-in official code, which is gone when tests read."""
    root = tmp_path_factory.mktemp("official")
    code = root / "code"
    (code / "models").mkdir(parents=True)
    (code / "models" / "__init__.py").write_text("")
    (code / "models" / "common.py").write_text(textwrap.dedent(COMMON_PY))
    (code / "models" / "yolo.py").write_text(textwrap.dedent(YOLO_PY))
    hidden = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "models" or k.startswith("models.")}
    sys.path.insert(0, str(code))
    try:
        models = types.SimpleNamespace(
            common=importlib.import_module("models.common"), yolo=importlib.import_module("models.yolo")
        )
        model, ema = _small_official(models, seed=1), _small_official(models, seed=2)
        ckpt = _official_checkpoint(model, ema)
        paths = {
            name: root / f"{name}.pt" for name in ("official", "no_ema", "state_dicts", "plain", "quirks")
        }
        torch.save(ckpt, paths["official"])
        torch.save(_official_checkpoint(model, ema, epoch=-1, ema_entry=False), paths["no_ema"])
        torch.save({"epoch": 3, "model": ckpt["model"].state_dict(), "ema": None}, paths["state_dicts"])
        torch.save(model.state_dict(), paths["plain"])
        quirks = _randomize(models.common.Quirks(), seed=3)
        torch.save(quirks, paths["quirks"])

        keys = _read_keys(TINY_KEYS)
        tiny = _randomize(_tiny_from_keys(models, keys), seed=4)
        paths["tiny"] = root / "yolov7-tiny.pt"
        tiny_ckpt = _official_checkpoint(tiny, tiny)
        torch.save(tiny_ckpt, paths["tiny"])
        expected = {
            "ema": _expected(ckpt["ema"]),
            "model": _expected(ckpt["model"]),
            "plain": _expected(model),
            "quirks": _expected(quirks),
            "tiny": _expected(tiny_ckpt["ema"]),
            "tiny_fp32": _expected(tiny),
            "tiny_keys": keys,
        }
    finally:
        sys.path.remove(str(code))
        for k in [k for k in sys.modules if k == "models" or k.startswith("models.")]:
            del sys.modules[k]
        sys.modules.update(hidden)
    return types.SimpleNamespace(paths=paths, expected=expected, root=root)


def _assert_same_state_dict(actual, expected):
    assert list(actual) == list(expected)
    for name, value in expected.items():
        assert actual[name].shape == value.shape, name
        assert actual[name].dtype == (np.float32 if value.dtype.kind == "f" else value.dtype), name
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


def test_official_checkpoint_reads_the_ema_state_dict(files):
    state_dict, info = read_torch_checkpoint(files.paths["official"], return_metadata=True)
    _assert_same_state_dict(state_dict, files.expected["ema"])
    assert "model.2.rbr_dense.0.weight" in state_dict and "model.2.rbr_identity.running_var" in state_dict
    assert "model.3.rbr_identity.weight" not in state_dict  # None when channels change, as officially
    assert state_dict["model.7.m2.1.weight"].shape == (24, 16, 1, 1)
    assert state_dict["model.0.bn.num_batches_tracked"].dtype == np.int64
    assert not np.array_equal(
        state_dict["model.0.conv.weight"], files.expected["model"]["model.0.conv.weight"]
    )
    assert info.source == "ema" and info.module_class == "models.yolo.Model"
    assert (info.epoch, info.updates) == (41, 1234)
    assert info.best_fitness == pytest.approx(0.6125)
    assert info.checkpoint_keys == (
        "epoch",
        "best_fitness",
        "training_results",
        "model",
        "ema",
        "updates",
        "optimizer",
        "wandb_id",
    )
    assert info.saved_dtypes == ("float16", "int64")
    assert info.class_names == ["square", "disc", "star"] and info.num_classes == 3
    assert info.model_yaml["backbone"] == [[-1, 1, "Conv", [8, 3, 1]]]
    assert info.strides == (8.0, 16.0)


def test_values_are_the_fp16_rounding_of_the_trained_weights(files):
    state_dict = read_torch_checkpoint(files.paths["tiny"])
    full = files.expected["tiny_fp32"]["model.0.conv.weight"]
    np.testing.assert_array_equal(
        state_dict["model.0.conv.weight"], full.astype(np.float16).astype(np.float32)
    )
    assert not np.array_equal(state_dict["model.0.conv.weight"], full)


def test_falls_back_to_model_when_ema_is_none(files):
    state_dict, info = read_torch_checkpoint(files.paths["no_ema"], return_metadata=True)
    _assert_same_state_dict(state_dict, files.expected["model"])
    assert info.source == "model" and info.epoch == -1


def test_checkpoint_whose_model_is_a_state_dict(files):
    state_dict, info = read_torch_checkpoint(files.paths["state_dicts"], return_metadata=True)
    _assert_same_state_dict(state_dict, files.expected["model"])
    assert (info.source, info.module_class, info.epoch, info.class_names) == ("model", None, 3, None)


def test_plain_state_dict_file(files):
    state_dict, info = read_torch_checkpoint(files.paths["plain"], return_metadata=True)
    _assert_same_state_dict(state_dict, files.expected["plain"])
    assert info.source == "state_dict" and info.saved_dtypes == ("float32", "int64")


def test_module_tree_follows_torch_state_dict_rules(files):
    state_dict, info = read_torch_checkpoint(files.paths["quirks"], return_metadata=True)
    _assert_same_state_dict(state_dict, files.expected["quirks"])
    assert list(state_dict) == ["gain", "kept", "first.weight", "first.bias", "second.weight", "second.bias"]
    assert info.source == "module" and info.module_class == "models.common.Quirks"


def test_yolov7_tiny_has_the_official_key_set(files):
    state_dict = read_torch_checkpoint(files.paths["tiny"])
    official = files.expected["tiny_keys"]
    assert [(name, value.shape) for name, value in state_dict.items()] == [(n, s) for n, s, _ in official]
    for name, _, dtype in official:
        assert state_dict[name].dtype == (np.int64 if dtype == "torch.int64" else np.float32), name
    _assert_same_state_dict(state_dict, files.expected["tiny"])
    np.testing.assert_array_equal(
        state_dict["model.77.anchors"].reshape(3, 6), np.array(TINY_ANCHORS, np.float32)
    )


def test_tensor_views_dtypes_and_storage_sharing(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {
        "transposed": base.t(),
        "window": base[1:3, 2:5],
        "expanded": torch.tensor([[1.5], [2.5], [3.5]]).expand(3, 4),
        "empty": torch.zeros(0, 3),
        "bfloat16": torch.tensor([1.0, -2.5, 3.140625]).bfloat16(),
        "float64": torch.tensor([0.1, 0.2], dtype=torch.float64),
        "int32": torch.arange(5, dtype=torch.int32),
        "int8": torch.tensor([-3, 4], dtype=torch.int8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(7),
    }
    torch.save(tensors, tmp_path / "views.pt")
    state_dict = read_torch_checkpoint(tmp_path / "views.pt")
    assert list(state_dict) == list(tensors)
    for name, tensor in tensors.items():
        expected = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
        assert state_dict[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(state_dict[name], expected, err_msg=name)
    assert state_dict["float64"].dtype == np.float32 and state_dict["int32"].dtype == np.int32


def test_does_not_import_or_run_the_official_code(files, tmp_path):
    # A `models` package that would leave a mark if anything imported it.
    marker = tmp_path / "imported"
    trap = tmp_path / "trap" / "models"
    trap.mkdir(parents=True)
    for name in ("__init__", "yolo", "common"):
        (trap / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    sys.path.insert(0, str(trap.parent))
    try:
        state_dict = read_torch_checkpoint(files.paths["official"])
    finally:
        sys.path.remove(str(trap.parent))
    assert not marker.exists()
    assert "models" not in sys.modules
    _assert_same_state_dict(state_dict, files.expected["ema"])


def test_reads_without_torch_installed(files):
    script = (
        "import sys, importlib.util\n"
        "sys.modules['torch'] = None\n"  # any `import torch` now fails
        f"spec = importlib.util.spec_from_file_location('reader', {str(MODULE_FILE)!r})\n"
        "reader = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(reader)\n"
        f"sd = reader.read_torch_checkpoint({str(files.paths['tiny'])!r})\n"
        "print(len(sd), float(sd['model.77.anchors'].sum()))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        str(len(files.expected["tiny"])),
        str(float(sum(map(sum, TINY_ANCHORS)))),
    ]


# ----------------------------------------------------------------------------------------------
# Format errors


def test_not_a_zip_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(TorchCheckpointError, match="not a PyTorch checkpoint"):
        read_torch_checkpoint(path)


def test_legacy_format_is_refused_clearly(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(TorchCheckpointError, match="legacy"):
        read_torch_checkpoint(path)


def test_truncated_file(files, tmp_path):
    data = files.paths["official"].read_bytes()
    path = tmp_path / "partial.pt"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(TorchCheckpointError, match="truncated"):
        read_torch_checkpoint(path)


def test_torchscript_archive(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with pytest.raises(TorchCheckpointError, match="TorchScript"):
        read_torch_checkpoint(path)


def test_zip_without_pickle(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "x")
    with pytest.raises(TorchCheckpointError, match="data.pkl"):
        read_torch_checkpoint(path)


def test_checkpoint_without_model(tmp_path):
    path = tmp_path / "optimizer_only.pt"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.01}, "model": None}, path)
    with pytest.raises(TorchCheckpointError, match=r"no model inside") as error:
        read_torch_checkpoint(path)
    assert "'optimizer'" in str(error.value)


# ----------------------------------------------------------------------------------------------
# Crafted pickles: nothing outside the admitted set is built, nothing runs.


def _text(value):
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _short_text(value):
    return b"\x8c" + bytes([len(value)]) + value.encode()


def _int(value):
    return b"J" + struct.pack("<i", value)


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tuple(*items):
    return b"(" + b"".join(items) + b"t"


def _tensor(numel, size, stride, offset=0):
    storage = (
        _tuple(_text("storage"), _global("torch", "FloatStorage"), _text("0"), _text("cpu"), _int(numel))
        + b"Q"
    )
    hooks = _global("collections", "OrderedDict") + b")R"
    args = _tuple(storage, _int(offset), _tuple(*map(_int, size)), _tuple(*map(_int, stride)), b"\x89", hooks)
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _state_dict(value):
    return b"\x80\x02}" + _text("w") + value + b"s."


def _archive(path, data_pkl, storage=b"", byteorder="little"):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", byteorder)
        archive.writestr("archive/data/0", storage)
        archive.writestr("archive/version", "3\n")
    return path


class _Call:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _attacks(marker):
    import builtins
    import subprocess as sp

    command = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": (pickle.dumps(_Call(os.system, command), protocol=2), os.system.__module__ + ".system"),
        "eval, protocol 2": (pickle.dumps(_Call(builtins.eval, code), protocol=2), "__builtin__.eval"),
        "exec, protocol 4": (pickle.dumps(_Call(builtins.exec, code), protocol=4), "builtins.exec"),
        "subprocess.Popen": (
            pickle.dumps(_Call(sp.Popen, ["touch", str(marker)]), protocol=4),
            "subprocess.Popen",
        ),
        "getattr": (pickle.dumps(_Call(getattr, 1, "real"), protocol=2), "__builtin__.getattr"),
        "torch.load nested": (
            _global("torch.serialization", "load") + _tuple(_text(str(marker))) + b"R.",
            "torch.serialization.load",
        ),
        "numpy runstring": (
            _global("numpy.testing._private.utils", "runstring") + _tuple(_text(code), b"}") + b"R.",
            "numpy.testing._private.utils.runstring",
        ),
        # Dotted names through an admitted namespace (protocol 4 STACK_GLOBAL) reach attributes.
        "dotted stand-in name": (
            b"\x80\x04" + _short_text("models.yolo") + _short_text("Model.__init__.__class__") + b"\x93.",
            "models.yolo.Model.__init__.__class__",
        ),
        "dunder stand-in name": (_global("models.yolo", "__builtins__") + b".", "models.yolo.__builtins__"),
        # Protocol 0/1 instantiation opcodes: INST names the class inline, OBJ takes it from the stack.
        "INST": (b"(" + _text(command) + b"ios\nsystem\n.", "os.system"),
        "OBJ": (b"(" + _global("subprocess", "getoutput") + _text(command) + b"o.", "subprocess.getoutput"),
    }


@pytest.mark.parametrize(
    "attack",
    [
        "os.system",
        "eval, protocol 2",
        "exec, protocol 4",
        "subprocess.Popen",
        "getattr",
        "torch.load nested",
        "numpy runstring",
        "dotted stand-in name",
        "dunder stand-in name",
        "INST",
        "OBJ",
    ],
)
def test_refuses_globals_outside_the_admitted_set(tmp_path, attack):
    marker = tmp_path / "pwned"
    data, name = _attacks(marker)[attack]
    path = _archive(tmp_path / "evil.pt", data)
    with pytest.raises(UnsafeCheckpointError, match=name.replace(".", r"\.")):
        read_torch_checkpoint(path)
    assert not marker.exists()


def test_crafted_archive_helper_reads_a_valid_tensor(tmp_path):
    # The crafted files below differ from this one only by the attack.
    values = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    path = _archive(tmp_path / "ok.pt", _state_dict(_tensor(4, (2, 2), (1, 2))), values.tobytes())
    np.testing.assert_array_equal(read_torch_checkpoint(path)["w"], values.reshape(2, 2).T)
    path = _archive(
        tmp_path / "big.pt", _state_dict(_tensor(4, (4,), (1,))), values.byteswap().tobytes(), "big"
    )
    np.testing.assert_array_equal(read_torch_checkpoint(path)["w"], values)


@pytest.mark.parametrize(
    "pickled, message",
    [
        (_state_dict(_tensor(4, (1000,), (1,))), "reaches element 999 of storage '0', which holds 4"),
        (_state_dict(_tensor(4, (2,), (1,), offset=3)), "reaches element 4"),
        (_state_dict(_tensor(4, (2,), (-1,))), "stride (-1,) is not a tuple of non-negative ints"),
        # BUILD with slot state on a checked tensor, to move it out of bounds afterwards.
        (
            _state_dict(_tensor(4, (4,), (1,)) + b"N}" + _text("offset") + _int(10**6) + b"s\x86b"),
            "tried to set 'offset'",
        ),
        # A tensor rebuilt from something that is not a storage.
        (
            _state_dict(
                _global("torch._utils", "_rebuild_tensor_v2") + _tuple(_text("x"), _int(0), b")", b")") + b"R"
            ),
            "not a storage",
        ),
        # An admitted callable wrapped as if it were a tensor rebuild.
        (
            _state_dict(
                _global("torch._tensor", "_rebuild_from_type_v2")
                + _tuple(_global("collections", "OrderedDict"), _global("torch", "Tensor"), b")", b"}")
                + b"R"
            ),
            "expected a tensor rebuild",
        ),
        (
            _state_dict(_global("_codecs", "encode") + _tuple(_text("abc"), _text("rot13")) + b"R"),
            "_codecs.encode",
        ),
        (
            _state_dict(
                _tuple(_text("storage"), _global("models.yolo", "Model"), _text("0"), _text("cpu"), _int(4))
                + b"Q"
            ),
            "storage type",
        ),
        (
            _state_dict(
                _tuple(
                    _text("storage"), _global("torch", "FloatStorage"), _text("../x"), _text("cpu"), _int(4)
                )
                + b"Q"
            ),
            "not a plain name",
        ),
    ],
)
def test_refuses_crafted_tensors_and_calls(tmp_path, pickled, message):
    path = _archive(tmp_path / "crafted.pt", pickled, np.zeros(4, np.float32).tobytes())
    with pytest.raises(UnsafeCheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_torch_checkpoint(path)


def test_stand_in_classes_cannot_be_modified(tmp_path):
    # BUILD on a class object would set class attributes (e.g. a __reduce__ or __setstate__ used
    # by later objects); stand-in classes and admitted objects are frozen.
    attacks = [
        _global("models.yolo", "Model")
        + b"N}"
        + _text("__setstate__")
        + _global("collections", "OrderedDict")
        + b"s\x86b.",
        _global("torch", "FloatStorage") + b"N}" + _text("dtype") + _text("object") + b"s\x86b.",
        _global("torch._utils", "_rebuild_tensor_v2")
        + b"N}"
        + _text("function")
        + _global("collections", "OrderedDict")
        + b"s\x86b.",
    ]
    # NEWOBJ on an admitted function, as if it were a class.
    attacks.append(_global("torch._utils", "_rebuild_tensor_v2") + b")\x81.")
    for index, data in enumerate(attacks):
        with pytest.raises(TorchCheckpointError):
            read_torch_checkpoint(_archive(tmp_path / f"build{index}.pt", b"\x80\x02" + data))
    values = np.arange(4, dtype=np.float32)
    path = _archive(tmp_path / "after.pt", _state_dict(_tensor(4, (4,), (1,))), values.tobytes())
    np.testing.assert_array_equal(read_torch_checkpoint(path)["w"], values)


def test_storage_shorter_than_declared(tmp_path):
    path = _archive(tmp_path / "short.pt", _state_dict(_tensor(4, (4,), (1,))), b"\0" * 8)
    with pytest.raises(TorchCheckpointError, match="truncated"):
        read_torch_checkpoint(path)


def test_load_torch_checkpoint_builds_the_matching_model(files):
    from keras_yolov7.convert import load_torch_checkpoint
    from keras_yolov7.convert import to_torch_state_dict

    model = load_torch_checkpoint(files.paths["tiny"])
    assert (model.architecture, model.num_classes, model.fused) == ("yolov7_tiny", 80, False)
    exported = to_torch_state_dict(model)
    expected = files.expected["tiny"]
    assert list(exported) == list(expected)
    for name, value in expected.items():
        # The stand-in IDetect keeps `anchors` in pixels (the official Model divides them by the
        # strides); `anchor_grid`, in pixels in both, carries the anchors.
        if not name.endswith(("num_batches_tracked", ".anchors")):
            np.testing.assert_array_equal(exported[name], value, err_msg=name)


def test_load_torch_checkpoint_refuses_a_foreign_model(files):
    from keras_yolov7.convert import load_torch_checkpoint

    with pytest.raises(TorchCheckpointError, match="do not match the training-configuration key names"):
        load_torch_checkpoint(files.paths["official"])


# ----------------------------------------------------------------------------------------------
# Official release files in every form


def fp16(state_dict):
    """The values an official (float16) file holds, as the reader returns them."""
    return {k: v.astype(np.float16).astype(np.float32) if v.dtype == np.float32 else v for k, v in state_dict.items()}


@pytest.mark.parametrize("form", ["training", "deploy", "deploy_fused"])
def test_load_torch_checkpoint_reads_every_official_form(tmp_path, form):
    from keras_yolov7.convert import load_torch_checkpoint
    from keras_yolov7.convert import to_torch_state_dict

    names = ["square", "disc", "star"]
    path = tmp_path / "yolov7-tiny.pt"
    written = fp16(write_official_checkpoint(path, "yolov7_tiny", form, num_classes=3, seed=2, class_names=names))
    model, info = load_torch_checkpoint(path, return_info=True)
    assert (info.preset, info.form, info.module_class) == ("yolov7_tiny", form, "models.yolo.Model")
    assert (model.fused, model.num_classes, model.class_names) == (form == "deploy_fused", 3, names)
    assert info.epoch == -1 and info.saved_dtypes[0] == "float16"
    exported = to_torch_state_dict(model, form=form)
    assert list(exported) == list(written)
    for name, value in written.items():
        if not name.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(exported[name], value, err_msg=name)


@pytest.mark.slow
def test_yolov7_e6_and_e6e_are_told_apart_by_their_names(tmp_path):
    # Their heads read equally wide maps; the candidates are built and their names compared.
    from keras_yolov7.convert import load_torch_checkpoint

    path = tmp_path / "yolov7-e6e.pt"
    write_official_checkpoint(path, "yolov7_e6e", "deploy_fused", num_classes=2)
    model, info = load_torch_checkpoint(path, return_info=True)
    assert (model.architecture, info.form, model.num_classes) == ("yolov7_e6e", "deploy_fused", 2)


def test_reading_needs_the_returned_arrays_plus_one_storage(tmp_path):
    """Peak memory while reading an official file: the float32 arrays returned, plus one storage
    being copied out, plus the unpickled module objects (a few MB)."""
    import tracemalloc

    path = tmp_path / "yolov7-tiny.pt"
    write_official_checkpoint(path, "yolov7_tiny", "training")
    with zipfile.ZipFile(path) as archive:
        largest = max(i.file_size for i in archive.infolist() if "/data/" in i.filename)
    tracemalloc.start()
    try:
        state_dict = read_torch_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    returned = sum(value.nbytes for value in state_dict.values())
    assert returned > 2 * 12 * 10**6  # 6.2 million float32 values
    assert peak - returned < largest + 8 * 2**20, (peak, returned, largest)
