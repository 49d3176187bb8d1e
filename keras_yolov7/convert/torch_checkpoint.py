"""A safe reader for PyTorch checkpoints (official YOLOv7 `.pt` files) that needs neither torch nor
the official code, and never runs code stored in the file.

A `torch.save` file (PyTorch >= 1.6) is a zip archive: `<root>/data.pkl` is a pickle whose tensors
point, through persistent ids `("storage", storage_type, key, location, numel)`, at raw little- or
big-endian arrays stored as `<root>/data/<key>`. An official YOLOv7 checkpoint pickles the whole
`models.yolo.Model` object: `{"epoch", "best_fitness", "training_results", "model", "ema",
"updates", "optimizer", "wandb_id"}`. Unpickling such a file normally imports and runs the
official classes; here a restricted unpickler admits only

- the tensor and storage rebuild functions, reimplemented with numpy (bounds-checked views),
- `collections.OrderedDict`, `set`, `frozenset`, latin-1 byte strings (`_codecs.encode`),
  numpy arrays, dtypes and scalars, `torch.Size`, `torch.device` and torch dtype names,
- inert stand-ins for every class of the `models.*`, `utils.*` and `torch.nn.*` namespaces: they
  record their pickled state and do nothing else,

and refuses every other global with an `UnsafeCheckpointError` naming it. The module objects are
then walked the way `torch.nn.Module.state_dict()` walks them (own parameters, own persistent
buffers, then children, names joined by dots).

The work and memory of a read are bounded before anything is allocated (`CheckpointLimits`): the
archive's entry count, the pickle's size and opcode count, the module nesting depth and the
number of state_dict entries are checked first; a module shared by several parents is validated
once; dict keys and set items must be strings or small integers (crafted colliding hashes would
make building a dict quadratic); each tensor's declared bytes are checked against its storage
entry's size (and that entry's compression ratio) in the zip directory before any data is
decompressed; storages are then read one at a time, only as many bytes as declared. Peak memory
is the returned arrays plus one storage plus the unpickled objects (bounded by the opcode count).
"""

import collections
import dataclasses
import io
import os
import pickle
import pickletools
import re
import reprlib
import zipfile

import numpy as np


class TorchCheckpointError(ValueError):
    """The file is not a readable PyTorch checkpoint, or holds no model."""


class UnsafeCheckpointError(TorchCheckpointError):
    """The checkpoint's pickle asks for something the safe reader refuses to run or build."""


class CheckpointTooLargeError(TorchCheckpointError):
    """Reading the checkpoint would exceed one of its `CheckpointLimits`."""


@dataclasses.dataclass(frozen=True)
class CheckpointLimits:
    """Bounds on what reading one checkpoint may cost; a file beyond one is refused with an error
    naming it. The defaults are far above the largest official file (yolov7-e6e training: a
    334 KB pickle of 138,000 opcodes, 1,490 tensors in modules nested 5 deep).

    Attributes:
        max_pickle_bytes: size of `data.pkl`, uncompressed.
        max_objects: pickle opcodes (each builds at most one object) and memo indices; also the
            values of the pickled model config, counted as often as they are reached.
        max_depth: nesting of modules, and of the model config.
        max_tensors: state_dict entries (a module registered under several names counts under
            each, as `torch.nn.Module.state_dict()` lists it), and archive entries.
        max_compression: how many times larger than its compressed size a storage entry may be
            (torch.save stores storages uncompressed).
    """

    max_pickle_bytes: int = 64 * 2**20
    max_objects: int = 1_000_000
    max_depth: int = 64
    max_tensors: int = 100_000
    max_compression: int = 16


_short = reprlib.Repr()
_short.maxstring = _short.maxother = 80


@dataclasses.dataclass(frozen=True)
class TorchCheckpointInfo:
    """What `read_torch_checkpoint` found in a file.

    Attributes:
        path: the file read.
        source: where the weights came from: `"ema"` or `"model"` (entries of a training
            checkpoint dict), `"module"` (a whole pickled module, `torch.save(model)`) or
            `"state_dict"` (a dict of tensors, at the top level or under `"model"`/`"ema"`).
        module_class: the pickled class of the module walked, e.g. `"models.yolo.Model"`;
            `None` for a state_dict.
        checkpoint_keys: the keys of the top-level dict (empty when the file holds no dict).
        epoch: the checkpoint's `"epoch"` (`-1` in released official weights), or `None`.
        best_fitness: the checkpoint's `"best_fitness"` as a float, or `None`.
        updates: the EMA update count `"updates"`, or `None`.
        saved_dtypes: storage dtypes of the tensors returned, as saved (e.g. `("float16",
            "int64")`); the returned arrays are float32 whatever the saved float type.
        model_yaml: the official model configuration (`Model.yaml`: `nc`, `anchors`, `backbone`,
            `head`, ...) when the module carries it, else `None`.
        class_names: `Model.names` when present, else `None`.
        num_classes: `Model.nc`, else `model_yaml["nc"]`, else `None`.
        strides: `Model.stride` (pixels per output cell of each detection level), else `None`.
        preset: the YOLOv7 preset the weights were recognised as (`load_torch_checkpoint`),
            else `None`.
        form: the official form read, "training", "deploy" or "deploy_fused"
            (`load_torch_checkpoint`), else `None`.
    """

    path: str
    source: str
    module_class: str = None
    checkpoint_keys: tuple = ()
    epoch: int = None
    best_fitness: float = None
    updates: int = None
    saved_dtypes: tuple = ()
    model_yaml: dict = None
    class_names: list = None
    num_classes: int = None
    strides: tuple = None
    preset: str = None
    form: str = None


def read_torch_checkpoint(path, return_metadata=False, limits=None):
    """Read the weights of a PyTorch checkpoint as a flat state_dict of numpy arrays.

    Accepts an official YOLOv7 training checkpoint (the pickled `Model` under `"ema"`, used when
    present and not `None`, else under `"model"`), a whole pickled module, a plain state_dict
    (`torch.save(model.state_dict())`) or a checkpoint dict whose `"model"` is a state_dict.
    No code from the file runs and torch need not be installed.

    Args:
        path: a `.pt` / `.pth` file written by `torch.save` with PyTorch >= 1.6 (zip format).
        return_metadata: also return a `TorchCheckpointInfo`.
        limits: a `CheckpointLimits` (default: `CheckpointLimits()`).

    Returns:
        A dict `{name: numpy.ndarray}` in PyTorch's state_dict order with PyTorch's names
        (`model.0.conv.weight`, `model.0.bn.num_batches_tracked`, `model.77.m.0.weight`,
        `model.77.anchors`, ...) and PyTorch layouts (conv weights `(out, in/groups, kh, kw)`).
        Floating tensors are returned as float32 (official checkpoints store float16), integer
        and boolean tensors keep their dtype (`num_batches_tracked` is int64). With
        `return_metadata=True`, a tuple `(state_dict, TorchCheckpointInfo)`.

    Raises:
        TorchCheckpointError: the file is not a zip-format PyTorch checkpoint (legacy pre-1.6
            files, TorchScript archives, truncated downloads are named as such) or holds no model.
        UnsafeCheckpointError: the pickle refers to a global outside the allowed set, or to
            tensor data outside its storage.
        CheckpointTooLargeError: the file exceeds one of the `limits`.
    """
    path = os.fspath(path)
    limits = limits or CheckpointLimits()
    with _open_archive(path, limits) as archive:
        tensors, info, reader = _open_checkpoint(archive, path, limits)
        state_dict = reader.read(tensors)
    return (state_dict, info) if return_metadata else state_dict


def check_torch_checkpoint(path, limits=None):
    """Checks that a file reads as a PyTorch checkpoint holding a model, without reading its
    tensor data: a zip archive whose `data.pkl` unpickles safely (as in `read_torch_checkpoint`,
    within the same `limits`) to a module or state_dict whose storages are all in the archive,
    as large as declared.

    Returns:
        the file's `TorchCheckpointInfo`.

    Raises:
        TorchCheckpointError: as `read_torch_checkpoint`.
    """
    path = os.fspath(path)
    limits = limits or CheckpointLimits()
    with _open_archive(path, limits) as archive:
        return _open_checkpoint(archive, path, limits)[1]


def _open_checkpoint(archive, path, limits):
    root = _archive_root(archive, path)
    reader = _StorageReader(archive, root, path, limits)
    obj = _unpickle(_read_pickle(archive, root, path, limits), reader, path)
    tensors, info = _locate(obj, path, reader, limits)
    return tensors, info, reader


# ----------------------------------------------------------------------------------------------
# Archive


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first object of a pre-1.6 torch.save stream


def _open_archive(path, limits):
    with open(path, "rb") as f:
        head = f.read(64)
        entries = _zip_entry_count(f)
    # zipfile reads the whole central directory (a few hundred bytes per entry) when it opens.
    if entries is not None and entries > limits.max_tensors + 64:
        raise CheckpointTooLargeError(
            f"{path}: the archive declares {entries} entries, more than max_tensors="
            f"{limits.max_tensors} (one per storage) allow"
        )
    if zipfile.is_zipfile(path):
        try:
            return zipfile.ZipFile(path)
        except zipfile.BadZipFile as error:
            raise TorchCheckpointError(f"{path} is a corrupt zip archive: {error}") from error
    if head.startswith(b"PK\x03\x04"):
        raise TorchCheckpointError(
            f"{path} starts like a zip archive but its central directory is missing: the file is "
            "truncated (an interrupted download or copy?)"
        )
    if _is_legacy_torch_file(head):
        raise TorchCheckpointError(
            f"{path} is a legacy (PyTorch < 1.6, non-zip) checkpoint, which is not supported; "
            "re-save it with a recent PyTorch: torch.save(torch.load(path), new_path)"
        )
    raise TorchCheckpointError(
        f"{path} is not a PyTorch checkpoint: expected a zip archive written by torch.save, got a "
        f"file starting with {head[:8]!r}"
    )


def _zip_entry_count(f):
    """The entry count the zip's end-of-central-directory record declares (zip64 too), or None
    when there is no such record."""
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - (22 + 0xFFFF)))  # the record (22 bytes) and its comment (< 64 KiB)
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return None
    count = int.from_bytes(tail[at + 10 : at + 12], "little")
    if count == 0xFFFF and at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
        f.seek(int.from_bytes(tail[at - 12 : at - 4], "little"))
        record = f.read(56)  # the zip64 end-of-central-directory record
        if len(record) == 56 and record[:4] == b"PK\x06\x06":
            count = int.from_bytes(record[32:40], "little")
    return count


def _is_legacy_torch_file(head):
    # The legacy format starts with the pickled magic number (protocol 2: PROTO 2, LONG1 10 bytes).
    magic = _LEGACY_MAGIC.to_bytes(10, "little")
    return head.startswith(b"\x80\x02\x8a\x0a" + magic)


def _archive_root(archive, path):
    names = archive.namelist()
    roots = [name[: -len("/data.pkl")] for name in names if re.fullmatch(r"[^/]+/data\.pkl", name)]
    if any(re.fullmatch(r"[^/]+/constants\.pkl", name) for name in names):
        raise TorchCheckpointError(
            f"{path} is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; save "
            "the model's state_dict or the training checkpoint instead"
        )
    if len(roots) == 1:
        return roots[0]
    if not roots:
        raise TorchCheckpointError(
            f"{path} is a zip archive without <root>/data.pkl: not a torch.save checkpoint "
            f"(entries: {names[:5]}{' ...' if len(names) > 5 else ''})"
        )
    raise TorchCheckpointError(f"{path} holds several pickles {roots}; expected one torch.save archive")


def _read_entry(archive, name, path, size=-1):
    """Entry `name` of the archive, or only its first `size` bytes."""
    try:
        with archive.open(name) as entry:
            return entry.read(size)
    except KeyError as error:
        raise TorchCheckpointError(f"{path} has no entry {name!r}") from error
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile, NotImplementedError) as error:
        raise TorchCheckpointError(
            f"{path}: entry {name!r} cannot be read ({error}); the file is truncated or corrupt"
        ) from error


def _read_pickle(archive, root, path, limits):
    """`data.pkl`, refused before reading when larger than `max_pickle_bytes` and before
    unpickling when it has more opcodes than `max_objects`."""
    name = f"{root}/data.pkl"
    size = archive.getinfo(name).file_size
    if size > limits.max_pickle_bytes:
        raise CheckpointTooLargeError(
            f"{path}: {name} holds {size} bytes, more than max_pickle_bytes={limits.max_pickle_bytes}"
        )
    data = _read_entry(archive, name, path)
    try:
        for count, _ in enumerate(pickletools.genops(data), start=1):
            if count > limits.max_objects:
                raise CheckpointTooLargeError(
                    f"{path}: {name} has more than max_objects={limits.max_objects} opcodes"
                )
    except TorchCheckpointError:
        raise
    except Exception as error:  # genops parses without building anything: a malformed pickle
        raise TorchCheckpointError(
            f"{path}: {name} is not a valid pickle ({type(error).__name__}: {_short.repr(error)}); "
            "the file is corrupt or not a PyTorch checkpoint"
        ) from error
    return data


# numpy dtype of each storage class torch writes in persistent ids ("bfloat16" is decoded by hand).
_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "UntypedStorage": "uint8",
}


class _Frozen:
    """Objects the pickle can reach but must not modify: BUILD's slot state would otherwise
    rewrite checked fields (a tensor's offset after its bounds check, a shared storage type)."""

    __slots__ = ()

    def __init__(self, **fields):
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise UnsafeCheckpointError(
            f"the checkpoint tried to set {_short.repr(key)} on a {type(self).__name__}"
        )

    def __delattr__(self, key):
        raise UnsafeCheckpointError(
            f"the checkpoint tried to delete {_short.repr(key)} from a {type(self).__name__}"
        )


class _StorageType(_Frozen):
    __slots__ = ("dtype",)


class _StorageRef(_Frozen):
    """A storage named by the pickle; its bytes are read only when a tensor using it is needed."""

    __slots__ = ("key", "dtype", "numel")

    @property
    def stored_dtype(self):
        return np.dtype("uint16" if self.dtype == "bfloat16" else self.dtype)


# Repeated views (expand: stride 0) may return more bytes than their storages hold, up to this.
_EXPANSION_SLACK = 2**20


class _StorageReader:
    """Reads the storages of tensors, after checking every declared size against the archive."""

    def __init__(self, archive, root, path, limits):
        self.archive = archive
        self.root = root
        self.path = path
        self.limits = limits
        self.entries = set(archive.namelist())
        self.byteorder = "<"
        if f"{root}/byteorder" in self.entries:
            raw = _read_entry(archive, f"{root}/byteorder", path, 16)
            order = raw.decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise TorchCheckpointError(f"{path}: byteorder is {order!r}, expected 'little' or 'big'")
            self.byteorder = "<" if order == "little" else ">"
        self.storages = {}

    def reference(self, key, dtype, numel):
        """The storage `key`, checked to exist; the same object for every tensor sharing it."""
        if not isinstance(key, str) or not re.fullmatch(r"[0-9A-Za-z_]+", key):
            raise UnsafeCheckpointError(
                f"{self.path}: storage key {_short.repr(key)} is not a plain name"
            )
        if f"{self.root}/data/{key}" not in self.entries:
            raise TorchCheckpointError(
                f"{self.path}: the pickle refers to storage {key!r} but the archive has no "
                f"{self.root}/data/{key} (truncated or corrupt file)"
            )
        if key in self.storages:
            known = self.storages[key]
            if (known.dtype, known.numel) != (dtype, numel):
                raise UnsafeCheckpointError(
                    f"{self.path}: storage {key!r} is declared as {known.numel} {known.dtype} and as "
                    f"{numel} {dtype}"
                )
            return known
        self.storages[key] = _StorageRef(key=key, dtype=dtype, numel=numel)
        return self.storages[key]

    def check(self, tensors):
        """Refuses, before anything is decompressed, storages declared larger than their archive
        entries, entries compressed more than `max_compression` times, and views repeating more
        than `_EXPANSION_SLACK` bytes beyond what the storages hold."""
        held, returned, seen = 0, 0, set()
        for name, tensor in tensors.items():
            storage = tensor.storage
            returned += int(np.prod(tensor.size, dtype=object)) * storage.stored_dtype.itemsize
            if storage.key in seen:
                continue
            seen.add(storage.key)
            entry = self.archive.getinfo(f"{self.root}/data/{storage.key}")
            declared = storage.numel * storage.stored_dtype.itemsize
            if declared > entry.file_size:
                raise TorchCheckpointError(
                    f"{self.path}: checkpoint declares {declared} bytes for tensor {name} but its "
                    f"storage entry holds {entry.file_size} ({entry.filename}; truncated or corrupt "
                    "file)"
                )
            ratio = self.limits.max_compression
            compressed = entry.compress_type != zipfile.ZIP_STORED
            if compressed and entry.file_size > ratio * max(entry.compress_size, 1):
                raise CheckpointTooLargeError(
                    f"{self.path}: the storage entry of tensor {name} ({entry.filename}) decompresses "
                    f"{entry.compress_size} bytes into {entry.file_size}, more than max_compression="
                    f"{ratio} times"
                )
            held += declared
        if returned > held + _EXPANSION_SLACK:
            raise CheckpointTooLargeError(
                f"{self.path}: the checkpoint's tensors view {returned} bytes of storages holding "
                f"{held}: repeated views would allocate more than {_EXPANSION_SLACK} extra bytes"
            )

    def read(self, tensors):
        """`{name: array}` for `{name: _TensorRef}`, in the same order, after `check`: floating
        tensors as float32, others in their dtype, native byte order. Storages are read one at a
        time, only their declared bytes, and released once their tensors are copied out."""
        self.check(tensors)
        by_storage = {}
        for name, tensor in tensors.items():
            by_storage.setdefault(tensor.storage.key, []).append(name)
        arrays = {}
        for names in by_storage.values():
            storage = tensors[names[0]].storage
            stored = storage.stored_dtype.newbyteorder(self.byteorder)
            needed = storage.numel * stored.itemsize
            raw = _read_entry(self.archive, f"{self.root}/data/{storage.key}", self.path, needed)
            if len(raw) < needed:
                raise TorchCheckpointError(
                    f"{self.path}: storage {storage.key!r} holds {len(raw)} bytes but {storage.numel} "
                    f"{storage.dtype} values ({needed} bytes) were declared; the file is truncated"
                )
            values = np.frombuffer(raw, stored, count=storage.numel)
            for name in names:
                arrays[name] = _materialise(values, tensors[name], storage.dtype)
            del raw, values
        return {name: arrays[name] for name in tensors}


def _materialise(values, tensor, dtype):
    """The tensor's elements as a new array: float32 for floating types (bfloat16 widened by
    hand), the stored dtype in native byte order otherwise."""
    if not all(tensor.size):
        view = np.zeros(tensor.size, values.dtype)
    else:
        view = np.lib.stride_tricks.as_strided(
            values[tensor.offset :],
            shape=tensor.size,
            strides=tuple(s * values.itemsize for s in tensor.stride),
            writeable=False,
        )
    if dtype == "bfloat16":
        return (view.astype(np.uint32) << 16).view(np.float32)
    if values.dtype.kind == "f":
        return np.array(view, np.float32)
    return np.array(view, values.dtype.newbyteorder("="))


# ----------------------------------------------------------------------------------------------
# Tensors


class _TensorRef(_Frozen):
    """A tensor as pickled: a strided view into a storage, materialised by `_StorageReader.read`."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _StorageRef):
            raise UnsafeCheckpointError(f"a tensor was rebuilt from {type(storage).__name__}, not a storage")
        size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
        if not _is_int(offset) or offset < 0 or len(size) != len(stride):
            raise UnsafeCheckpointError(
                f"tensor of size {_short.repr(size)}, stride {_short.repr(stride)}, offset "
                f"{_short.repr(offset)}: not a valid strided view"
            )
        if all(size):
            last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
            if last >= storage.numel:
                raise UnsafeCheckpointError(
                    f"tensor of size {_short.repr(size)}, stride {_short.repr(stride)}, offset "
                    f"{offset} reaches element {last} of storage {storage.key!r}, which holds "
                    f"{storage.numel}"
                )
        super().__init__(storage=storage, offset=offset, size=size, stride=stride)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(values, what):
    if not isinstance(values, (tuple, list)) or not all(_is_int(v) and v >= 0 for v in values):
        raise UnsafeCheckpointError(
            f"tensor {what} {_short.repr(values)} is not a tuple of non-negative ints"
        )
    return tuple(values)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    # _rebuild_tensor_v2 adds requires_grad, backward_hooks and metadata; none matter for weights.
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    if not isinstance(data, _TensorRef):
        raise UnsafeCheckpointError(f"a parameter was rebuilt from {type(data).__name__}, not a tensor")
    return data


def _rebuild_from_type(function, tensor_type, args, state):
    # Tensors carrying Python attributes (or subclasses) are pickled through this wrapper; the
    # inner function is itself one of the admitted rebuild functions.
    if not isinstance(function, _Admitted) or function.function not in (_rebuild_tensor, _rebuild_parameter):
        raise UnsafeCheckpointError(
            f"_rebuild_from_type_v2 wraps {_short.repr(function)}, expected a tensor rebuild"
        )
    if not isinstance(args, tuple):
        raise UnsafeCheckpointError(
            f"_rebuild_from_type_v2 arguments {type(args).__name__}, expected a tuple"
        )
    return function(*args)


# ----------------------------------------------------------------------------------------------
# Restricted unpickling


class _Admitted(_Frozen):
    """An admitted callable, frozen so that a pickle cannot set attributes on it."""

    __slots__ = ("function", "name")

    def __init__(self, function, name):
        super().__init__(function=function, name=name)

    def __call__(self, *args):
        return self.function(*args)

    def __repr__(self):
        return f"<admitted {self.name}>"


class _FrozenStubType(type):
    """Stand-in classes cannot be modified by the pickle (BUILD on a class object)."""

    def __setattr__(cls, key, value):
        raise UnsafeCheckpointError(
            f"the checkpoint tried to set {_short.repr(key)} on class "
            f"{cls.__module__}.{cls.__qualname__}"
        )

    def __delattr__(cls, key):
        raise UnsafeCheckpointError(
            f"the checkpoint tried to delete {_short.repr(key)} from class "
            f"{cls.__module__}.{cls.__qualname__}"
        )


class _Stub(metaclass=_FrozenStubType):
    """An inert stand-in for a pickled class: it keeps the constructor arguments and the state it
    is given and has no other behaviour (no `__dict__`, so BUILD cannot plant attributes)."""

    __slots__ = ("args", "state")

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<{type(self).__module__}.{type(self).__qualname__} stand-in>"

    @classmethod
    def qualified_name(cls):
        return f"{cls.__module__}.{cls.__qualname__}"


_STUB_NAMESPACES = ("models", "utils", "torch.nn")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TORCH_DTYPES = (
    "float16 float32 float64 bfloat16 half float double int8 int16 int32 int64 uint8 bool "
    "short int long complex64 complex128"
).split()


def _latin1_bytes(text, encoding="latin1"):
    # Protocol-2 pickles encode bytes objects as _codecs.encode(text, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(
            f"_codecs.encode called with ({type(text).__name__}, {_short.repr(encoding)})"
        )
    return text.encode("latin1")


def _torch_size(values=()):
    return _int_tuple(tuple(values) if isinstance(values, (tuple, list)) else values, "torch.Size")


def _torch_device(kind, index=None):
    if not isinstance(kind, str) or not (index is None or _is_int(index)):
        raise UnsafeCheckpointError(
            f"torch.device({_short.repr(kind)}, {_short.repr(index)}): expected a name and an index"
        )
    return kind if index is None else f"{kind}:{index}"


class _NumpyArrayClass:
    """Stands for `numpy.ndarray` in `_reconstruct(ndarray, (0,), b"b")`; not callable."""

    __slots__ = ()


_NUMPY_ARRAY_CLASS = _NumpyArrayClass()


def _numpy_reconstruct(array_class, shape, code):
    if array_class is not _NUMPY_ARRAY_CLASS:
        raise UnsafeCheckpointError(
            f"numpy _reconstruct of {_short.repr(array_class)}, expected numpy.ndarray"
        )
    # numpy fills the array through ndarray.__setstate__ (BUILD), which checks sizes itself.
    return np.empty((0,), np.uint8)


def _numpy_dtype(spec, align=False, copy=False):
    if not isinstance(spec, str) or not isinstance(align, bool) or not isinstance(copy, bool):
        raise UnsafeCheckpointError(
            f"numpy.dtype({_short.repr(spec)}, {_short.repr(align)}, {_short.repr(copy)}): "
            "expected a dtype name"
        )
    dtype = np.dtype(spec)
    # Numbers only: object arrays would be filled from the pickle element by element, structured
    # and sub-array dtypes can declare sizes unrelated to the data.
    if dtype.kind not in "biufc" or dtype.fields or dtype.subdtype:
        raise UnsafeCheckpointError(f"numpy.dtype({_short.repr(spec)}): only numeric dtypes are admitted")
    return dtype


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UnsafeCheckpointError(f"numpy scalar of {_short.repr(dtype)} from {type(data).__name__}")
    if len(data) != dtype.itemsize:
        raise TorchCheckpointError(f"numpy scalar of {dtype} from {len(data)} bytes")
    return np.frombuffer(data, dtype, count=1)[0]


def _check_keys(keys):
    """Dict keys and set items may only be strings, bytes, None or integers below 2**61 - 1,
    whose hashes cannot be made to collide: crafted colliding keys (large integers, floats,
    tuples) would make each insertion cost as much as all before it."""
    for key in keys:
        if isinstance(key, (str, bytes)) or key is None:
            continue
        if isinstance(key, int) and -(2**61 - 1) < key < 2**61 - 1:
            continue
        raise UnsafeCheckpointError(
            f"the checkpoint uses a {type(key).__name__} {_short.repr(key)} as a dict key or set "
            "item; only strings and integers below 2**61 - 1 are admitted"
        )


def _ordered_dict(*args):
    # torch pickles OrderedDict() and fills it with SETITEMS, which checks the keys.
    if args:
        raise UnsafeCheckpointError("OrderedDict called with arguments; expected OrderedDict()")
    return collections.OrderedDict()


def _set_of(kind):
    def make(items=()):
        items = list(items) if isinstance(items, (list, tuple)) else None
        if items is None:
            raise UnsafeCheckpointError(f"{kind.__name__}() of something that is not a list")
        _check_keys(items)
        return kind(items)

    return _Admitted(make, f"builtins.{kind.__name__}")


def _admitted_globals():
    table = {
        ("collections", "OrderedDict"): _Admitted(_ordered_dict, "collections.OrderedDict"),
        ("builtins", "set"): _set_of(set),
        ("builtins", "frozenset"): _set_of(frozenset),
        ("_codecs", "encode"): _Admitted(_latin1_bytes, "_codecs.encode"),
        ("torch._utils", "_rebuild_tensor"): _Admitted(_rebuild_tensor, "torch._utils._rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v2"): _Admitted(_rebuild_tensor, "torch._utils._rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"): _Admitted(
            _rebuild_parameter, "torch._utils._rebuild_parameter"
        ),
        ("torch._utils", "_rebuild_parameter_with_state"): _Admitted(
            _rebuild_parameter, "torch._utils._rebuild_parameter_with_state"
        ),
        ("torch._tensor", "_rebuild_from_type_v2"): _Admitted(
            _rebuild_from_type, "torch._tensor._rebuild_from_type_v2"
        ),
        ("torch", "Tensor"): "torch.Tensor",
        ("torch", "Size"): _Admitted(_torch_size, "torch.Size"),
        ("torch", "device"): _Admitted(_torch_device, "torch.device"),
        ("numpy", "ndarray"): _NUMPY_ARRAY_CLASS,
        ("numpy", "dtype"): _Admitted(_numpy_dtype, "numpy.dtype"),
    }
    table[("__builtin__", "set")] = table[("builtins", "set")]  # protocol 2 spells "__builtin__"
    table[("__builtin__", "frozenset")] = table[("builtins", "frozenset")]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = _Admitted(_numpy_reconstruct, "numpy _reconstruct")
        table[(module, "scalar")] = _Admitted(_numpy_scalar, "numpy scalar")
    for name, dtype in _STORAGE_DTYPES.items():
        table[("torch", name)] = _StorageType(dtype=dtype)
    for name in _TORCH_DTYPES:
        table[("torch", name)] = f"torch.{name}"
    return table


_ADMITTED = _admitted_globals()


def _checking_keys(load, keys):
    def checked(unpickler):
        _check_keys(keys(unpickler.stack))
        load(unpickler)

    return checked


class _SafeUnpickler(pickle._Unpickler):
    """Builds only admitted objects and stand-ins; every callable the pickle can reach is one of
    them, so no REDUCE, NEWOBJ, INST/OBJ or BUILD can call anything else.

    The pure-Python unpickler is used (0.25 s for the largest official pickle) because the opcodes
    that insert dict keys and set items must check them (`_check_keys`) before hashing them; the
    C unpickler offers no hook there. Its stack holds the items pushed since the last MARK.
    """

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.SETITEM[0]] = _checking_keys(pickle._Unpickler.load_setitem, lambda s: s[-2:-1])
    dispatch[pickle.SETITEMS[0]] = _checking_keys(pickle._Unpickler.load_setitems, lambda s: s[::2])
    dispatch[pickle.DICT[0]] = _checking_keys(pickle._Unpickler.load_dict, lambda s: s[::2])
    dispatch[pickle.ADDITEMS[0]] = _checking_keys(pickle._Unpickler.load_additems, lambda s: s)
    dispatch[pickle.FROZENSET[0]] = _checking_keys(pickle._Unpickler.load_frozenset, lambda s: s)

    def __init__(self, file, reader):
        super().__init__(file)
        self._reader = reader
        self._stubs = {}

    def find_class(self, module, name):
        if (module, name) in _ADMITTED:
            return _ADMITTED[(module, name)]
        in_namespace = any(module == ns or module.startswith(ns + ".") for ns in _STUB_NAMESPACES)
        if in_namespace and _IDENTIFIER.fullmatch(name) and not name.startswith("__"):
            if (module, name) not in self._stubs:
                self._stubs[(module, name)] = _FrozenStubType(
                    name, (_Stub,), {"__slots__": (), "__module__": module, "__qualname__": name}
                )
            return self._stubs[(module, name)]
        raise UnsafeCheckpointError(
            f"the checkpoint refers to {module}.{name}, which the safe reader does not load (only "
            "tensor rebuilds, OrderedDict and plain data, and inert stand-ins for models.*, "
            "utils.* and torch.nn.* classes are admitted); the file may be malicious or not a "
            "YOLOv7 checkpoint"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(
                f"unsupported persistent id {_short.repr(pid)}; expected ('storage', ...)"
            )
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"persistent id names storage type {_short.repr(storage_type)}")
        if not _is_int(numel) or numel < 0:
            raise UnsafeCheckpointError(f"persistent id declares {_short.repr(numel)} elements")
        return self._reader.reference(key, storage_type.dtype, numel)


# ----------------------------------------------------------------------------------------------
# From the unpickled object to a state_dict


def _unpickle(data, reader, path):
    try:
        return _SafeUnpickler(io.BytesIO(data), reader).load()
    except TorchCheckpointError:
        raise
    except RecursionError as error:  # BUILD / REDUCE chains deeper than Python's stack
        raise CheckpointTooLargeError(f"{path}: data.pkl nests objects too deeply to build") from error
    except Exception as error:  # any malformed pickle: truncated, wrong opcodes, bad BUILD target
        raise TorchCheckpointError(
            f"{path}: data.pkl cannot be unpickled safely ({type(error).__name__}: "
            f"{_short.repr(str(error))}); the file is corrupt or not a PyTorch checkpoint"
        ) from error


def _locate(obj, path, reader, limits):
    """Picks the weights (ema, else model, else the object itself) and checks them against the
    archive: `({name: _TensorRef}, TorchCheckpointInfo)`, no storage read yet."""
    keys, numbers, source, chosen = (), {}, "module", obj
    if isinstance(obj, dict) and not _is_state_dict(obj):
        keys = tuple(str(k) for k in obj)
        source = next((k for k in ("ema", "model") if obj.get(k) is not None), None)
        if source is None:
            raise TorchCheckpointError(
                f"{path} holds a dict with keys {_short.repr(list(keys))} and no 'ema' or 'model' "
                "entry that is not None: no model inside"
            )
        chosen = obj[source]
        numbers = {
            "epoch": _plain_number(obj.get("epoch"), int, reader),
            "best_fitness": _plain_number(obj.get("best_fitness"), float, reader),
            "updates": _plain_number(obj.get("updates"), int, reader),
        }
    where = "the file" if chosen is obj else f"its {source!r} entry"

    module_class, attributes = None, {}
    if isinstance(chosen, _Stub):
        module_class = type(chosen).qualified_name()
        attributes = chosen.state if isinstance(chosen.state, dict) else {}
        tensors = _module_state_dict(chosen, path, limits)
        source = "module" if chosen is obj else source
    elif _is_state_dict(chosen):
        if len(chosen) > limits.max_tensors:
            raise CheckpointTooLargeError(
                f"{path}: {where} holds {len(chosen)} tensors, more than "
                f"max_tensors={limits.max_tensors}"
            )
        tensors = {str(k): v for k, v in chosen.items()}
        source = "state_dict" if chosen is obj else source
    else:
        raise TorchCheckpointError(
            f"{path}: {where} holds a {type(chosen).__name__}, expected a pickled nn.Module or a "
            "state_dict (a dict of tensors)"
        )
    if not tensors:
        raise TorchCheckpointError(f"{path}: {where} holds no tensors; no model inside")

    yaml = attributes.get("yaml")
    model_yaml = _plain_data(yaml, path, limits) if isinstance(yaml, dict) else None
    strides = _strides(attributes.get("stride"), reader)
    reader.check(tensors)
    info = TorchCheckpointInfo(
        path=path,
        source=source,
        module_class=module_class,
        checkpoint_keys=keys,
        saved_dtypes=tuple(sorted({tensor.storage.dtype for tensor in tensors.values()})),
        model_yaml=model_yaml,
        class_names=_class_names(attributes.get("names")),
        num_classes=_num_classes(attributes),
        strides=strides,
        **numbers,
    )
    return tensors, info


def _is_state_dict(obj):
    return isinstance(obj, dict) and all(isinstance(v, _TensorRef) for v in obj.values())


def _module_parts(module, where, path):
    """A pickled module's own tensors `[(name, tensor)]` and children `[(name, module)]`, in
    `torch.nn.Module.state_dict()` order (None entries and non-persistent buffers left out)."""
    state = module.state
    if not isinstance(state, dict) or not all(
        isinstance(state.get(k), dict) for k in ("_parameters", "_buffers", "_modules")
    ):
        raise TorchCheckpointError(
            f"{path}: {type(module).qualified_name()} at {where} has no _parameters, _buffers and "
            "_modules: not a torch.nn.Module"
        )
    non_persistent = state.get("_non_persistent_buffers_set") or ()
    own, children = [], []
    for kind in ("_parameters", "_buffers"):
        for name, tensor in state[kind].items():
            if tensor is None or (kind == "_buffers" and name in non_persistent):
                continue
            if not isinstance(name, str) or not isinstance(tensor, _TensorRef):
                raise TorchCheckpointError(
                    f"{path}: {kind[1:-1]} {_short.repr(name)} of {where} is a "
                    f"{type(tensor).__name__}, expected a tensor named by a string"
                )
            own.append((name, tensor))
    for name, child in state["_modules"].items():
        if child is None:
            continue
        if not isinstance(name, str) or not isinstance(child, _Stub):
            raise TorchCheckpointError(
                f"{path}: child {_short.repr(name)} of {where} is a {type(child).__name__}, "
                "expected a module named by a string"
            )
        children.append((name, child))
    return own, children


def _module_state_dict(root, path, limits):
    """Flatten a pickled module tree like `torch.nn.Module.state_dict()`: at each module its own
    parameters, then its persistent buffers, then each child's entries under `<child name>.`.

    A module registered in several places is listed under each name, as torch does. So that a
    graph of shared modules costs no more than its size, each distinct module is validated once
    and the number of entries below it counted (children first); cycles, nesting deeper than
    `max_depth` and more than `max_tensors` entries are refused before any name is listed, and the
    listing skips subtrees without tensors.
    """
    parts, entries, height = {}, {}, {}
    on_path = set()
    stack = [(root, "", 1, False)]
    while stack:
        module, where, depth, finished = stack.pop()
        key = id(module)
        if finished:
            on_path.discard(key)
            own, children = parts[key]
            entries[key] = len(own) + sum(entries[id(child)] for _, child in children)
            height[key] = 1 + max((height[id(child)] for _, child in children), default=0)
            if entries[key] > limits.max_tensors:
                raise CheckpointTooLargeError(
                    f"{path}: the module at {where or 'the top level'} lists {entries[key]} tensors "
                    f"(modules shared by several parents count under each name), more than "
                    f"max_tensors={limits.max_tensors}"
                )
            continue
        if key in entries:
            continue
        if key in on_path:
            raise TorchCheckpointError(f"{path}: module {where} contains itself")
        if depth > limits.max_depth:
            raise CheckpointTooLargeError(
                f"{path}: modules nest deeper than max_depth={limits.max_depth} at {where}"
            )
        parts[key] = _module_parts(module, where or "the top-level module", path)
        on_path.add(key)
        stack.append((module, where, depth, True))
        for name, child in reversed(parts[key][1]):
            child_where = f"{where}.{name}" if where else name
            if id(child) in on_path:
                raise TorchCheckpointError(f"{path}: module {child_where} contains itself")
            stack.append((child, child_where, depth + 1, False))
    if height[id(root)] > limits.max_depth:
        raise CheckpointTooLargeError(
            f"{path}: modules nest {height[id(root)]} deep, more than max_depth={limits.max_depth}"
        )

    tensors = {}
    stack = [(root, "")]
    while stack:
        module, prefix = stack.pop()
        own, children = parts[id(module)]
        tensors.update((f"{prefix}{name}", tensor) for name, tensor in own)
        stack.extend(
            (child, f"{prefix}{name}.") for name, child in reversed(children) if entries[id(child)]
        )
    return tensors


def _plain_number(value, kind, reader):
    if isinstance(value, _TensorRef):
        if len(value.size) > 1 or int(np.prod(value.size, dtype=object)) != 1:
            return None
        value = reader.read({"number": value})["number"]
    if isinstance(value, (np.ndarray, np.generic)) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return kind(value)
    return None


def _plain_data(value, path, limits):
    """Python data (a model config) with anything else replaced by a short repr. Values are
    counted as often as they are reached (a config whose lists share each other would otherwise
    expand exponentially): more than `max_objects`, or nesting deeper than `max_depth`, is refused."""
    budget = [limits.max_objects]

    def convert(item, depth):
        budget[0] -= 1
        if budget[0] < 0:
            raise CheckpointTooLargeError(
                f"{path}: the model config expands to more than max_objects={limits.max_objects} values"
            )
        if depth > limits.max_depth:
            raise CheckpointTooLargeError(
                f"{path}: the model config nests deeper than max_depth={limits.max_depth}"
            )
        if isinstance(item, dict):
            return {k: convert(v, depth + 1) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return type(item)(convert(v, depth + 1) for v in item)
        if item is None or isinstance(item, (str, int, float, bool)):
            return item
        return _short.repr(item)

    return convert(value, 0)


def _class_names(names):
    if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
        return list(names)
    if isinstance(names, dict) and all(_is_int(k) and isinstance(n, str) for k, n in names.items()):
        return [names[k] for k in sorted(names)]
    return None


def _num_classes(attributes):
    nc = attributes.get("nc")
    if _is_int(nc):
        return nc
    yaml = attributes.get("yaml")
    if isinstance(yaml, dict) and _is_int(yaml.get("nc")):
        return yaml["nc"]
    return None


def _strides(stride, reader):
    if isinstance(stride, _TensorRef) and len(stride.size) == 1 and stride.size[0] <= 16:
        return tuple(float(s) for s in reader.read({"stride": stride})["stride"])
    return None
