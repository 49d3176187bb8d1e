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
"""

import collections
import dataclasses
import io
import os
import pickle
import re
import zipfile

import numpy as np


class TorchCheckpointError(ValueError):
    """The file is not a readable PyTorch checkpoint, or holds no model."""


class UnsafeCheckpointError(TorchCheckpointError):
    """The checkpoint's pickle asks for something the safe reader refuses to run or build."""


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


def read_torch_checkpoint(path, return_metadata=False):
    """Read the weights of a PyTorch checkpoint as a flat state_dict of numpy arrays.

    Accepts an official YOLOv7 training checkpoint (the pickled `Model` under `"ema"`, used when
    present and not `None`, else under `"model"`), a whole pickled module, a plain state_dict
    (`torch.save(model.state_dict())`) or a checkpoint dict whose `"model"` is a state_dict.
    No code from the file runs and torch need not be installed.

    Args:
        path: a `.pt` / `.pth` file written by `torch.save` with PyTorch >= 1.6 (zip format).
        return_metadata: also return a `TorchCheckpointInfo`.

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
    """
    path = os.fspath(path)
    with _open_archive(path) as archive:
        root = _archive_root(archive, path)
        reader = _StorageReader(archive, root, path)
        obj = _unpickle(_read_entry(archive, f"{root}/data.pkl", path), reader, path)
        state_dict, info = _extract(obj, path, reader)
    return (state_dict, info) if return_metadata else state_dict


# ----------------------------------------------------------------------------------------------
# Archive


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first object of a pre-1.6 torch.save stream


def _open_archive(path):
    with open(path, "rb") as f:
        head = f.read(64)
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


def _read_entry(archive, name, path):
    try:
        return archive.read(name)
    except KeyError as error:
        raise TorchCheckpointError(f"{path} has no entry {name!r}") from error
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as error:
        raise TorchCheckpointError(
            f"{path}: entry {name!r} cannot be read ({error}); the file is truncated or corrupt"
        ) from error


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
        raise UnsafeCheckpointError(f"the checkpoint tried to set {key!r} on a {type(self).__name__}")

    def __delattr__(self, key):
        raise UnsafeCheckpointError(f"the checkpoint tried to delete {key!r} from a {type(self).__name__}")


class _StorageType(_Frozen):
    __slots__ = ("dtype",)


class _StorageRef(_Frozen):
    """A storage named by the pickle; its bytes are read only when a tensor using it is needed."""

    __slots__ = ("key", "dtype", "numel")


class _StorageReader:
    def __init__(self, archive, root, path):
        self.archive = archive
        self.root = root
        self.path = path
        self.entries = set(archive.namelist())
        self.byteorder = "<"
        if f"{root}/byteorder" in self.entries:
            order = _read_entry(archive, f"{root}/byteorder", path).decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise TorchCheckpointError(f"{path}: byteorder is {order!r}, expected 'little' or 'big'")
            self.byteorder = "<" if order == "little" else ">"
        self.storages = {}
        self._arrays = {}

    def reference(self, key, dtype, numel):
        """The storage `key`, checked to exist; the same object for every tensor sharing it."""
        if not isinstance(key, str) or not re.fullmatch(r"[0-9A-Za-z_]+", key):
            raise UnsafeCheckpointError(f"{self.path}: storage key {key!r} is not a plain name")
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

    def array(self, storage):
        """The storage's elements, 1-D, native byte order (bfloat16 widened to float32)."""
        if storage.key not in self._arrays:
            raw = _read_entry(self.archive, f"{self.root}/data/{storage.key}", self.path)
            stored = np.dtype("uint16" if storage.dtype == "bfloat16" else storage.dtype)
            needed = storage.numel * stored.itemsize
            if len(raw) < needed:
                raise TorchCheckpointError(
                    f"{self.path}: storage {storage.key!r} holds {len(raw)} bytes but {storage.numel} "
                    f"{storage.dtype} values ({needed} bytes) were declared; the file is truncated"
                )
            values = np.frombuffer(raw, stored.newbyteorder(self.byteorder), count=storage.numel)
            values = values.astype(stored.newbyteorder("="))
            if storage.dtype == "bfloat16":
                values = (values.astype(np.uint32) << 16).view(np.float32)
            self._arrays[storage.key] = values
        return self._arrays[storage.key]


# ----------------------------------------------------------------------------------------------
# Tensors


class _TensorRef(_Frozen):
    """A tensor as pickled: a strided view into a storage, materialised on demand."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _StorageRef):
            raise UnsafeCheckpointError(f"a tensor was rebuilt from {type(storage).__name__}, not a storage")
        size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
        if not _is_int(offset) or offset < 0 or len(size) != len(stride):
            raise UnsafeCheckpointError(
                f"tensor of size {size}, stride {stride}, offset {offset!r}: not a valid strided view"
            )
        if all(size):
            last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
            if last >= storage.numel:
                raise UnsafeCheckpointError(
                    f"tensor of size {size}, stride {stride}, offset {offset} reaches element {last} "
                    f"of storage {storage.key!r}, which holds {storage.numel}"
                )
        super().__init__(storage=storage, offset=offset, size=size, stride=stride)

    def numpy(self, reader):
        values = reader.array(self.storage)
        if not all(self.size):
            return np.zeros(self.size, values.dtype)
        view = np.lib.stride_tricks.as_strided(
            values[self.offset :],
            shape=self.size,
            strides=tuple(s * values.itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(values, what):
    if not isinstance(values, (tuple, list)) or not all(_is_int(v) and v >= 0 for v in values):
        raise UnsafeCheckpointError(f"tensor {what} {values!r} is not a tuple of non-negative ints")
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
        raise UnsafeCheckpointError(f"_rebuild_from_type_v2 wraps {function!r}, expected a tensor rebuild")
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
            f"the checkpoint tried to set {key!r} on class {cls.__module__}.{cls.__qualname__}"
        )

    def __delattr__(cls, key):
        raise UnsafeCheckpointError(
            f"the checkpoint tried to delete {key!r} from class {cls.__module__}.{cls.__qualname__}"
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
        raise UnsafeCheckpointError(f"_codecs.encode called with ({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _torch_size(values=()):
    return _int_tuple(tuple(values) if isinstance(values, (tuple, list)) else values, "torch.Size")


def _torch_device(kind, index=None):
    if not isinstance(kind, str) or not (index is None or _is_int(index)):
        raise UnsafeCheckpointError(f"torch.device({kind!r}, {index!r}): expected a name and an index")
    return kind if index is None else f"{kind}:{index}"


class _NumpyArrayClass:
    """Stands for `numpy.ndarray` in `_reconstruct(ndarray, (0,), b"b")`; not callable."""

    __slots__ = ()


_NUMPY_ARRAY_CLASS = _NumpyArrayClass()


def _numpy_reconstruct(array_class, shape, code):
    if array_class is not _NUMPY_ARRAY_CLASS:
        raise UnsafeCheckpointError(f"numpy _reconstruct of {array_class!r}, expected numpy.ndarray")
    # numpy fills the array through ndarray.__setstate__ (BUILD), which checks sizes itself.
    return np.empty((0,), np.uint8)


def _numpy_dtype(spec, align=False, copy=False):
    if not isinstance(spec, str) or not isinstance(align, bool) or not isinstance(copy, bool):
        raise UnsafeCheckpointError(f"numpy.dtype({spec!r}, {align!r}, {copy!r}): expected a dtype name")
    return np.dtype(spec)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UnsafeCheckpointError(f"numpy scalar of {dtype!r} from {type(data).__name__}")
    if len(data) != dtype.itemsize:
        raise TorchCheckpointError(f"numpy scalar of {dtype} from {len(data)} bytes")
    return np.frombuffer(data, dtype, count=1)[0]


def _admitted_globals():
    table = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
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
    table[("__builtin__", "set")] = set  # protocol-2 pickles spell builtins "__builtin__"
    table[("__builtin__", "frozenset")] = frozenset
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = _Admitted(_numpy_reconstruct, "numpy _reconstruct")
        table[(module, "scalar")] = _Admitted(_numpy_scalar, "numpy scalar")
    for name, dtype in _STORAGE_DTYPES.items():
        table[("torch", name)] = _StorageType(dtype=dtype)
    for name in _TORCH_DTYPES:
        table[("torch", name)] = f"torch.{name}"
    return table


_ADMITTED = _admitted_globals()


class _SafeUnpickler(pickle.Unpickler):
    """Builds only admitted objects and stand-ins; every callable the pickle can reach is one of
    them, so no REDUCE, NEWOBJ, INST/OBJ or BUILD can call anything else."""

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
            raise UnsafeCheckpointError(f"unsupported persistent id {pid!r}; expected ('storage', ...)")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"persistent id names storage type {storage_type!r}")
        if not _is_int(numel) or numel < 0:
            raise UnsafeCheckpointError(f"persistent id declares {numel!r} elements")
        return self._reader.reference(key, storage_type.dtype, numel)


# ----------------------------------------------------------------------------------------------
# From the unpickled object to a state_dict


def _unpickle(data, reader, path):
    try:
        return _SafeUnpickler(io.BytesIO(data), reader).load()
    except TorchCheckpointError:
        raise
    except Exception as error:  # any malformed pickle: truncated, wrong opcodes, bad BUILD target
        raise TorchCheckpointError(
            f"{path}: data.pkl cannot be unpickled safely ({type(error).__name__}: {error}); the file "
            "is corrupt or not a PyTorch checkpoint"
        ) from error


def _extract(obj, path, reader):
    """Pick the weights (ema, else model, else the object itself) and read them."""
    keys, numbers, source, chosen = (), {}, "module", obj
    if isinstance(obj, dict) and not _is_state_dict(obj):
        keys = tuple(str(k) for k in obj)
        source = next((k for k in ("ema", "model") if obj.get(k) is not None), None)
        if source is None:
            raise TorchCheckpointError(
                f"{path} holds a dict with keys {list(keys)} and no 'ema' or 'model' entry that is not "
                "None: no model inside"
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
        tensors = _module_state_dict(chosen, path)
        source = "module" if chosen is obj else source
    elif _is_state_dict(chosen):
        tensors = {str(k): v for k, v in chosen.items()}
        source = "state_dict" if chosen is obj else source
    else:
        raise TorchCheckpointError(
            f"{path}: {where} holds a {type(chosen).__name__}, expected a pickled nn.Module or a "
            "state_dict (a dict of tensors)"
        )
    if not tensors:
        raise TorchCheckpointError(f"{path}: {where} holds no tensors; no model inside")

    state_dict = {name: _as_output_array(tensor.numpy(reader)) for name, tensor in tensors.items()}
    yaml = attributes.get("yaml")
    info = TorchCheckpointInfo(
        path=path,
        source=source,
        module_class=module_class,
        checkpoint_keys=keys,
        saved_dtypes=tuple(sorted({tensor.storage.dtype for tensor in tensors.values()})),
        model_yaml=_plain_data(yaml) if isinstance(yaml, dict) else None,
        class_names=_class_names(attributes.get("names")),
        num_classes=_num_classes(attributes),
        strides=_strides(attributes.get("stride"), reader),
        **numbers,
    )
    return state_dict, info


def _is_state_dict(obj):
    return isinstance(obj, dict) and all(isinstance(v, _TensorRef) for v in obj.values())


def _module_state_dict(root, path):
    """Flatten a pickled module tree like `torch.nn.Module.state_dict()`: at each module its own
    parameters, then its persistent buffers, then each child's entries under `<child name>.`."""
    tensors = {}
    stack = [(root, "", ())]
    while stack:
        module, prefix, ancestors = stack.pop()
        where = prefix[:-1] or "the top-level module"
        state = module.state
        if not isinstance(state, dict) or not all(
            isinstance(state.get(k), dict) for k in ("_parameters", "_buffers", "_modules")
        ):
            raise TorchCheckpointError(
                f"{path}: {type(module).qualified_name()} at {where} has no _parameters, _buffers and "
                "_modules: not a torch.nn.Module"
            )
        non_persistent = state.get("_non_persistent_buffers_set") or ()
        for kind in ("_parameters", "_buffers"):
            for name, tensor in state[kind].items():
                if tensor is None or (kind == "_buffers" and name in non_persistent):
                    continue
                if not isinstance(tensor, _TensorRef):
                    raise TorchCheckpointError(
                        f"{path}: {prefix}{name} is a {type(tensor).__name__}, expected a tensor"
                    )
                tensors[f"{prefix}{name}"] = tensor
        children = []
        for name, child in state["_modules"].items():
            if child is None:
                continue
            if not isinstance(child, _Stub):
                raise TorchCheckpointError(
                    f"{path}: child {prefix}{name} is a {type(child).__name__}, expected a module"
                )
            if any(child is a for a in ancestors) or child is module:
                raise TorchCheckpointError(f"{path}: module {prefix}{name} contains itself")
            children.append((child, f"{prefix}{name}.", ancestors + (module,)))
        stack.extend(reversed(children))  # depth first, children in registration order
    return tensors


def _as_output_array(array):
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    return array


def _plain_number(value, kind, reader):
    if isinstance(value, _TensorRef):
        value = value.numpy(reader)
    if isinstance(value, (np.ndarray, np.generic)) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return kind(value)
    return None


def _plain_data(value, depth=0):
    """Python data (a model config) with anything else replaced by its repr; a crafted cycle stops
    at a depth no real config reaches."""
    if depth > 32:
        raise TorchCheckpointError("the model config nests deeper than 32 levels")
    if isinstance(value, dict):
        return {k: _plain_data(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain_data(v, depth + 1) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _class_names(names):
    if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
        return list(names)
    if isinstance(names, dict) and all(isinstance(n, str) for n in names.values()):
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
    if isinstance(stride, _TensorRef) and len(stride.size) == 1:
        return tuple(float(s) for s in stride.numpy(reader))
    return None
