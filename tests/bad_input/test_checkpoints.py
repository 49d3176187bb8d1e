"""Bad input to the checkpoint reader (`keras_yolov7.convert.read_torch_checkpoint`): files built to
exhaust its work or memory.

Every file is generated here, small (the largest, a deflate bomb, is 1 MB), in the layout
`torch.save` writes: a zip archive with `archive/data.pkl` (the pickle, written opcode by opcode)
and `archive/data/<key>` storages. Each case states its expected outcome, the error it raises and
a fragment of its message naming the limit; for every case the file read is unchanged and nothing
is written beside it. The bombs run in a subprocess whose address space is capped
(`RLIMIT_AS`) 256 MiB above what it uses after its imports, and must be refused within seconds.
"""

import dataclasses
import hashlib
import json
import pathlib
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from keras_yolov7.convert import CheckpointLimits
from keras_yolov7.convert import CheckpointTooLargeError
from keras_yolov7.convert import TorchCheckpointError
from keras_yolov7.convert import UnsafeCheckpointError
from keras_yolov7.convert import read_torch_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[2]
READER = ROOT / "keras_yolov7" / "convert" / "torch_checkpoint.py"
GIB = 2**30


# Pickles, opcode by opcode (protocol 2) ---------------------------------------------------------


def text(value):
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def integer(value):
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data  # LONG1


def global_(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def tuple_(*items):
    return b"(" + b"".join(items) + b"t"


def dict_(pairs):
    return b"}(" + b"".join(key + value for key, value in pairs) + b"u"


def list_(items):
    return b"](" + b"".join(items) + b"e"


def put(index):
    return b"r" + struct.pack("<I", index)  # LONG_BINPUT


def get(index):
    return b"j" + struct.pack("<I", index)  # LONG_BINGET


def tensor(numel, size, stride, key="0", storage_type="FloatStorage"):
    storage = tuple_(
        text("storage"), global_("torch", storage_type), text(key), text("cpu"), integer(numel)
    )
    hooks = global_("collections", "OrderedDict") + b")R"
    shape = tuple_(*map(integer, size)), tuple_(*map(integer, stride))
    args = tuple_(storage + b"Q", integer(0), *shape, b"\x89", hooks)
    return global_("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def module(parameters=(), children=(), extra=()):
    """A pickled `torch.nn.Module`: NEWOBJ of the class, then BUILD with its __dict__."""
    state = dict_(
        [
            (text("_parameters"), dict_([(text(k), v) for k, v in parameters])),
            (text("_buffers"), b"}"),
            (text("_modules"), dict_([(text(k), v) for k, v in children])),
            *extra,
        ]
    )
    return global_("torch.nn.modules.module", "Module") + b")\x81" + state + b"b"


def pickled(body):
    return b"\x80\x02" + body + b"."


def archive(path, data_pkl, storages=None, compress=False):
    """A torch.save-like zip; `storages` maps keys to bytes, or to a byte count of zeros written
    in 16 MiB chunks (deflated when `compress`)."""
    storages = {"0": np.zeros(1, np.float32).tobytes()} if storages is None else storages
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("archive/data.pkl", data_pkl)
        zipped.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            kind = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            info = zipfile.ZipInfo(f"archive/data/{key}")
            info.compress_type = kind
            with zipped.open(info, "w", force_zip64=True) as entry:
                if isinstance(data, bytes):
                    entry.write(data)
                else:
                    chunk = bytes(16 * 2**20)
                    for start in range(0, data, len(chunk)):
                        entry.write(chunk[: min(len(chunk), data - start)])
        zipped.writestr("archive/version", "3\n")
    return path


# The files --------------------------------------------------------------------------------------


def dag_bomb(path, depth=40):
    """Modules that share their children: 3 KB, 2**depth paths to one tensor."""
    body = module([("w", tensor(1, (1,), (1,)))]) + put(0)
    for level in range(1, depth + 1):
        body += module(children=[("a", get(level - 1)), ("b", get(level - 1))]) + put(level)
    return archive(path, pickled(body))


def tensorless_dag(path, depth=60):
    """Shared children without any tensor: nothing to list, and nothing may be walked 2**60 times."""
    body = module() + put(0)
    for level in range(1, depth + 1):
        body += module(children=[("a", get(level - 1)), ("b", get(level - 1))]) + put(level)
    return archive(path, pickled(body))


def chain(path, depth=80):
    """Modules nested `depth` deep, a tensor at the bottom."""
    body = module([("w", tensor(1, (1,), (1,)))])
    for _ in range(depth):
        body = module(children=[("m", body)])
    return archive(path, pickled(body))


def deflate_bomb(path):
    """1 MB of deflated zeros that decompress into the 1 GiB storage a tensor declares."""
    state_dict = dict_([(text("model.0.conv.weight"), tensor(GIB // 4, (GIB // 4,), (1,)))])
    return archive(path, pickled(state_dict), {"0": GIB}, compress=True)


def declared_gib(path):
    """A tensor declaring 1 GiB whose storage entry holds 4 KiB."""
    state_dict = dict_([(text("model.0.conv.weight"), tensor(GIB // 4, (GIB // 4,), (1,)))])
    return archive(path, pickled(state_dict), {"0": bytes(4096)})


def repeated_view(path):
    """One float viewed 2**28 times (stride 0): 1 GiB out of 4 bytes."""
    return archive(path, pickled(dict_([(text("w"), tensor(1, (2**28,), (0,)))])))


def colliding_keys(path, count=100_000):
    """A dict of integers equal modulo 2**61 - 1, the modulus of Python's int hash: inserting
    them one after the other costs count**2 / 2 comparisons."""
    keys = [integer(k * (2**61 - 1)) for k in range(1, count + 1)]
    body = b"}"
    for start in range(0, count, 1000):
        body += b"(" + b"".join(k + b"N" for k in keys[start : start + 1000]) + b"u"
    return archive(path, pickled(body))


def huge_memo_index(path):
    """An object stored at memo index 2**31 - 1 (the C unpickler allocates a memo table that
    large); the file is otherwise a valid state_dict."""
    body = dict_([(text("w"), tensor(1, (1,), (1,)))]) + put(2**31 - 1)
    return archive(path, pickled(body))


def config_dag(path, depth=40):
    """A model whose pickled config (`yaml`) is lists sharing each other: 2**depth values."""
    values = list_([text("x")]) + put(0)
    for level in range(1, depth + 1):
        values += b"0" + list_([get(level - 1), get(level - 1)]) + put(level)  # POP the level below
    yaml = (text("yaml"), dict_([(text("backbone"), values)]))
    return archive(path, pickled(module([("w", tensor(1, (1,), (1,)))], extra=[yaml])))


def deep_config(path, depth=200):
    yaml = (text("yaml"), dict_([(text("backbone"), b"]" * depth + b"a" * (depth - 1))]))
    return archive(path, pickled(module([("w", tensor(1, (1,), (1,)))], extra=[yaml])))


def many_tensors(path, count=3):
    state_dict = dict_([(text(f"w{i}"), tensor(1, (1,), (1,))) for i in range(count)])
    return archive(path, pickled(state_dict))


def many_entries(path, count=200):
    archive(path, pickled(dict_([(text("w"), tensor(1, (1,), (1,)))])))
    with zipfile.ZipFile(path, "a") as zipped:
        for i in range(count):
            zipped.writestr(f"archive/extra/{i}", b"")
    return path


def float_key(path):
    return archive(path, pickled(b"}" + b"G" + struct.pack(">d", 1.5) + b"Ns"))


def tuple_key_in_set(path):
    items = list_([tuple_(integer(1), integer(2))])
    return archive(path, pickled(global_("builtins", "set") + tuple_(items) + b"R"))


def object_dtype(path):
    """numpy object arrays are filled element by element from the pickle."""
    dtype = global_("numpy", "dtype") + tuple_(text("O8"), b"\x89", b"\x88") + b"R"
    return archive(path, pickled(dtype))


# The cases --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    write: object
    error: type
    fragment: str
    limits: CheckpointLimits = None


TOO_LARGE, UNSAFE, CORRUPT = CheckpointTooLargeError, UnsafeCheckpointError, TorchCheckpointError
CASES = {
    "shared children (DAG), 2**40 paths": Case(dag_bomb, TOO_LARGE, "more than max_tensors=100000"),
    "shared children without tensors": Case(tensorless_dag, CORRUPT, "holds no tensors"),
    "modules nested 80 deep": Case(chain, TOO_LARGE, "deeper than max_depth=64"),
    "deflate bomb, 1 GiB from 1 MB": Case(
        deflate_bomb, TOO_LARGE, "more than max_compression=16 times"
    ),
    "1 GiB declared, 4 KiB stored": Case(
        declared_gib,
        CORRUPT,
        "checkpoint declares 1073741824 bytes for tensor model.0.conv.weight but its storage "
        "entry holds 4096",
    ),
    "one float viewed 2**28 times": Case(repeated_view, TOO_LARGE, "repeated views"),
    "100,000 colliding int keys": Case(colliding_keys, UNSAFE, "as a dict key or set item"),
    "float dict key": Case(float_key, UNSAFE, "float 1.5 as a dict key"),
    "tuple set item": Case(tuple_key_in_set, UNSAFE, "tuple (1, 2) as a dict key or set item"),
    "numpy object dtype": Case(object_dtype, UNSAFE, "only numeric dtypes are admitted"),
    "config of shared lists, 2**40 values": Case(
        config_dag, TOO_LARGE, "config expands to more than max_objects=1000000 values"
    ),
    "config nested 200 deep": Case(deep_config, TOO_LARGE, "config nests deeper than max_depth=64"),
    "pickle over max_pickle_bytes": Case(
        many_tensors,
        TOO_LARGE,
        "more than max_pickle_bytes=100",
        CheckpointLimits(max_pickle_bytes=100),
    ),
    "pickle over max_objects": Case(
        many_tensors, TOO_LARGE, "more than max_objects=50 opcodes", CheckpointLimits(max_objects=50)
    ),
    "state_dict over max_tensors": Case(
        many_tensors,
        TOO_LARGE,
        "holds 3 tensors, more than max_tensors=2",
        CheckpointLimits(max_tensors=2),
    ),
    "archive over max_tensors entries": Case(
        many_entries,
        TOO_LARGE,
        "declares 204 entries, more than max_tensors=10",
        CheckpointLimits(max_tensors=10),
    ),
    "modules over max_depth": Case(
        lambda path: chain(path, depth=4),
        TOO_LARGE,
        "deeper than max_depth=3",
        CheckpointLimits(max_depth=3),
    ),
}
BOMBS = [
    "shared children (DAG), 2**40 paths",
    "deflate bomb, 1 GiB from 1 MB",
    "1 GiB declared, 4 KiB stored",
    "one float viewed 2**28 times",
    "100,000 colliding int keys",
    "config of shared lists, 2**40 values",
]


def digest(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.fixture
def written(tmp_path):
    """Writes a case's file in an empty folder; afterwards, checks it is unchanged and alone."""
    files = []

    def write(case):
        path = case.write(tmp_path / "bad.pt")
        files.append((path, digest(path)))
        return path

    yield write
    for path, before in files:
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
        assert digest(path) == before


@pytest.mark.parametrize("name", [name for name in CASES if name not in BOMBS])
def test_refused_with_the_limit_named(written, name):
    case = CASES[name]
    path = written(case)
    with pytest.raises(case.error) as error:
        read_torch_checkpoint(path, limits=case.limits)
    assert case.fragment in str(error.value)
    assert "\n" not in str(error.value) and len(str(error.value)) < 600


# A reader in a subprocess under an address-space cap: a refused bomb must not allocate its size.
MEMORY_CAPPED = """
import importlib.util, json, resource, sys, time
spec = importlib.util.spec_from_file_location("reader", sys.argv[1])
reader = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reader)
status = open("/proc/self/status").read().splitlines()
used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (used + 256 * 2**20, resource.RLIM_INFINITY))
start = time.perf_counter()
try:
    state_dict = reader.read_torch_checkpoint(sys.argv[2])
    outcome = {"error": None, "tensors": len(state_dict)}
except Exception as error:
    outcome = {"error": type(error).__name__, "message": str(error)}
outcome["seconds"] = time.perf_counter() - start
print(json.dumps(outcome))
"""


def read_capped(path):
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_CAPPED, str(READER), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.mark.skipif(not pathlib.Path("/proc/self/status").exists(), reason="reads VmSize from /proc")
@pytest.mark.parametrize("name", BOMBS)
def test_bombs_are_refused_quickly_within_the_memory_cap(written, name):
    case = CASES[name]
    path = written(case)
    assert path.stat().st_size < 2**21
    outcome = read_capped(path)
    assert outcome["error"] == case.error.__name__, outcome  # a MemoryError would name itself
    assert case.fragment in outcome["message"]
    assert outcome["seconds"] < 10, outcome


@pytest.mark.skipif(not pathlib.Path("/proc/self/status").exists(), reason="reads VmSize from /proc")
def test_huge_memo_index_reads_within_the_memory_cap(written):
    outcome = read_capped(written(Case(huge_memo_index, None, "")))
    assert (outcome["error"], outcome["tensors"]) == (None, 1), outcome
    assert outcome["seconds"] < 10
