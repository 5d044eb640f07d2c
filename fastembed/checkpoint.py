"""Read and write PyTorch ``.pt`` checkpoints of plain tensors without torch and without trusting pickle.

``torch.save`` (zip format, the default since torch 1.6) writes a zip archive holding ``<name>/data.pkl`` (a
pickle of the object, where every tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
...)`` and every storage is a *persistent id* ``("storage", torch.FloatStorage, key, location, numel)``), and one
raw little-endian record ``<name>/data/<key>`` per storage.

:func:`read_torch_state_dict` unpickles ``data.pkl`` with an unpickler that knows only the handful of globals a
tensor state dict needs (each mapped to a harmless stand-in defined here); any other global — ``os.system``,
``builtins.eval``, a custom class — stops the load with a ``ValueError`` before anything is called.
:func:`write_torch_state_dict` writes the same layout byte by byte, so geniml's ``torch.load(...,
weights_only=True)`` reads it.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ._atomic import atomic_file

__all__ = ["read_torch_state_dict", "write_torch_state_dict"]

# torch storage class -> numpy dtype of its raw record (bfloat16 is widened by hand).
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
_FLOAT_STORAGES = {"FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage"}


class _StorageType:
    """Stand-in for a ``torch.<X>Storage`` class named in the pickle."""

    def __init__(self, name: str):
        self.name = name


class _Storage:
    """A storage record of the archive, read lazily as a flat numpy array."""

    def __init__(self, kind: _StorageType, data: np.ndarray):
        self.kind = kind
        self.data = data


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a contiguous numpy copy of the view."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor without a storage record")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or storage_offset < 0:
        raise pickle.UnpicklingError(f"bad tensor geometry: size {size}, stride {stride}, offset {storage_offset}")
    data = storage.data
    if size and all(s > 0 for s in size):
        last = storage_offset + sum((n - 1) * st for n, st in zip(size, stride, strict=True))
        if last >= data.size or min(stride) < 0:
            raise pickle.UnpicklingError(f"tensor of size {size} runs past its storage of {data.size} elements")
    itemsize = data.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(data[storage_offset:], shape=size,
                                           strides=tuple(st * itemsize for st in stride), writeable=False)
    array = np.array(view, order="C")  # a contiguous, writeable copy detached from the archive buffer
    if storage.kind.name == "BFloat16Storage":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _ordered_dict(*args):
    return OrderedDict(*args)


# (module, name) -> stand-in. Nothing else can be named by a checkpoint we read.
_ALLOWED = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, source: Path):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._source = source

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise ValueError(
                f"checkpoint '{self._source}' refers to '{module}.{name}', which a tensor checkpoint does not need; "
                "refusing to load it (only plain tensor state dicts are read)"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise ValueError(f"checkpoint '{self._source}': unexpected persistent record {str(pid)[:80]}")
        _, kind, key, _location, numel = pid
        name = f"{self._prefix}data/{key}"
        try:
            raw = self._archive.read(name)
        except KeyError:
            raise ValueError(f"checkpoint '{self._source}': storage record '{name}' is missing") from None
        dtype = _STORAGE_DTYPES[kind.name]
        if len(raw) < int(numel) * dtype.itemsize:
            raise ValueError(f"checkpoint '{self._source}': storage record '{name}' is shorter than its "
                             f"{numel} elements")
        return _Storage(kind, np.frombuffer(raw, dtype=dtype, count=int(numel)))


def _archive_prefix(archive: zipfile.ZipFile, source: Path) -> str:
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise ValueError(f"checkpoint '{source}' is a zip file but not a PyTorch checkpoint (no <name>/data.pkl)")
    prefix = pickles[0][: -len("data.pkl")]
    try:
        order = archive.read(prefix + "byteorder").decode().strip()
    except KeyError:
        order = "little"  # torch wrote no byteorder record before 2.1; those files are little-endian
    if order != "little":
        raise ValueError(f"checkpoint '{source}' stores {order}-endian data; only little-endian is supported")
    return prefix


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the tensors of a PyTorch zip checkpoint as numpy arrays, without torch and without running code.

    Parameters
    ----------
    path
        A file written by ``torch.save`` (zip format) holding a dict of tensors, possibly nested in
        dicts (e.g. ``{"state_dict": {...}}``); nested keys are joined with ``"."``.

    Returns
    -------
    dict of str to np.ndarray
        Floating tensors as float32 (float16/bfloat16/float64 converted), integer and bool tensors as
        their own dtype; each array is a contiguous copy.

    Raises
    ------
    ValueError
        Not a zip checkpoint (e.g. the legacy pickle format, which cannot be read safely), or the pickle
        names anything beyond ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the
        torch storage types. Nothing named in the file is imported or called.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"checkpoint '{path}' is not a zip-format PyTorch checkpoint (legacy pickle checkpoints "
                         "are not read: unpickling them could run arbitrary code); re-save it with torch >= 1.6")
    with zipfile.ZipFile(path) as archive:
        prefix = _archive_prefix(archive, path)
        data = archive.read(prefix + "data.pkl")
        try:
            obj = _RestrictedUnpickler(io.BytesIO(data), archive, prefix, path).load()
        except ValueError:
            raise
        except Exception as err:
            raise ValueError(f"checkpoint '{path}': cannot read its data.pkl ({type(err).__name__}: {err})") from None
    out: dict[str, np.ndarray] = {}

    def collect(node, prefix_key: str):
        if isinstance(node, np.ndarray):
            if node.dtype.kind == "f" and node.dtype != np.float32:
                node = node.astype(np.float32)
            out[prefix_key] = node
        elif isinstance(node, dict):
            for k, v in node.items():
                collect(v, f"{prefix_key}.{k}" if prefix_key else str(k))

    collect(obj, "")
    if not out:
        raise ValueError(f"checkpoint '{path}' holds no tensors")
    return out


# --------------------------------------------------------------------------------------------------
# Writing: the pickle opcodes of torch.save for a flat dict of tensors
# --------------------------------------------------------------------------------------------------
_NUMPY_STORAGE = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float64"): "DoubleStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
    np.dtype("int32"): "IntStorage",
    np.dtype("int16"): "ShortStorage",
    np.dtype("int8"): "CharStorage",
    np.dtype("uint8"): "ByteStorage",
    np.dtype("bool"): "BoolStorage",
}


def _op_str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE


def _op_int(n: int) -> bytes:
    if 0 <= n < 256:
        return b"K" + struct.pack("<B", n)  # BININT1
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)  # BININT
    b = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + struct.pack("<B", len(b)) + b  # LONG1


def _op_tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def _op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


_EMPTY_ORDERED_DICT = _op_global("collections", "OrderedDict") + b")R"  # EMPTY_TUPLE, REDUCE


def _state_dict_pickle(tensors: dict[str, np.ndarray]) -> bytes:
    body = [b"\x80\x02", _EMPTY_ORDERED_DICT, b"("]  # PROTO 2, OrderedDict(), MARK
    for key, (name, array) in enumerate(tensors.items()):
        storage = _NUMPY_STORAGE[array.dtype]
        pid = _op_tuple([_op_str("storage"), _op_global("torch", storage), _op_str(str(key)), _op_str("cpu"),
                         _op_int(array.size)]) + b"Q"  # BINPERSID
        stride = [int(s // array.itemsize) for s in array.strides] if array.ndim else []
        args = _op_tuple([pid, _op_int(0), _op_tuple([_op_int(int(n)) for n in array.shape]),
                          _op_tuple([_op_int(s) for s in stride]), b"\x89", _EMPTY_ORDERED_DICT])  # NEWFALSE
        body += [_op_str(name), _op_global("torch._utils", "_rebuild_tensor_v2"), args, b"R"]
    body.append(b"u.")  # SETITEMS, STOP
    return b"".join(body)



def write_torch_state_dict(path: str | os.PathLike, tensors: dict[str, np.ndarray]) -> Path:
    """Write a flat dict of arrays as a PyTorch zip checkpoint (``torch.load(weights_only=True)`` reads it).

    Parameters
    ----------
    path
        Output ``.pt`` file; written to a temporary file beside it, then renamed.
    tensors
        Name -> array of a dtype torch has (float32/64/16, int64/32/16/8, uint8, bool); arrays are
        stored C-contiguous and little-endian.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    arrays = {}
    for name, array in tensors.items():
        a = np.asarray(array)
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))  # the archive is little-endian
        if a.dtype not in _NUMPY_STORAGE:
            raise ValueError(f"tensor '{name}': dtype {a.dtype} has no torch storage type")
        arrays[str(name)] = a
    root = path.stem or "archive"
    # Like np.save, a low-level writer: it replaces a regular file it is pointed at (never a folder or a link).
    with (atomic_file(path, what="checkpoint", overwrite=True) as tmp,
          zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf):
        zf.writestr(f"{root}/data.pkl", _state_dict_pickle(arrays))
        zf.writestr(f"{root}/byteorder", "little")
        for key, a in enumerate(arrays.values()):
            zf.writestr(f"{root}/data/{key}", a.tobytes())
        zf.writestr(f"{root}/version", "3\n")
    return path
