"""Read and write PyTorch ``.pt`` checkpoints of plain tensors without torch and without trusting pickle.

``torch.save`` (zip format, the default since torch 1.6) writes a zip archive holding ``<name>/data.pkl`` (a
pickle of the object, where every tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
...)`` and every storage is a *persistent id* ``("storage", torch.FloatStorage, key, location, numel)``), and one
raw little-endian record ``<name>/data/<key>`` per storage.

:func:`read_torch_state_dict` treats the file as hostile:

* the pickle opcodes are checked before anything is unpickled: only the opcodes a state dict needs, and no
  length or memo index that could make the unpickler allocate more than the file holds;
* the unpickler knows only the handful of globals a tensor state dict needs, each mapped to a stand-in made
  afresh for this one load and immune to ``BUILD`` (so a crafted file cannot alter what a later load sees); any
  other global — ``os.system``, ``builtins.eval``, a custom class — stops the load before anything is called;
* unpickling only records tensors; each one's dtype, shape, stride and offset are checked against the real
  size of its storage record before a byte is copied, and all tensors together may not exceed a small
  multiple of the file size;
* any damage (a flipped bit, a bad CRC, truncation) is a ``ValueError`` naming the file.

:func:`write_torch_state_dict` writes the same layout byte by byte, so geniml's ``torch.load(...,
weights_only=True)`` reads it.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import struct
import zipfile
from pathlib import Path

import numpy as np

from fastembed.storage.atomic import atomic_file

__all__ = ["read_torch_state_dict", "write_torch_state_dict"]

# torch storage class -> numpy dtype of its raw record (bfloat16 is widened by hand). This is the dtype
# whitelist: any other storage name is refused.
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

# All tensors of one file together may take at most this many times the file's size once read (covers tied
# weights, i.e. two keys viewing one storage, and float16 widened to float32), plus a floor for tiny files.
MEMORY_FACTOR = 8
_MEMORY_FLOOR = 1 << 16
_MAX_NDIM = 32  # numpy's limit was 32 before 2.0; no real state dict comes close
_MAX_DIM = 1 << 62  # any larger size or stride cannot index real memory
_OBJECT_BYTES = 64  # memory charged per pickle opcode (sys.getsizeof({}) == 64)

# The pickle opcodes of a state dict written by any torch version (protocols 2 to 5): containers, numbers,
# strings, memo traffic, globals, persistent ids, REDUCE and BUILD. Everything else (bytes and buffers, INST/
# OBJ/NEWOBJ, extension codes, the text opcodes of protocol 0/1) is refused before unpickling.
_OPCODES = frozenset(
    {
        "PROTO",
        "FRAME",
        "STOP",
        "MARK",
        "POP",
        "POP_MARK",
        "DUP",
        "EMPTY_DICT",
        "EMPTY_LIST",
        "EMPTY_TUPLE",
        "TUPLE",
        "TUPLE1",
        "TUPLE2",
        "TUPLE3",
        "APPEND",
        "APPENDS",
        "SETITEM",
        "SETITEMS",
        "BUILD",
        "REDUCE",
        "NONE",
        "NEWTRUE",
        "NEWFALSE",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG1",
        "BINFLOAT",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
        "BINPUT",
        "LONG_BINPUT",
        "MEMOIZE",
        "BINGET",
        "LONG_BINGET",
        "GLOBAL",
        "STACK_GLOBAL",
        "BINPERSID",
    }
)
_MEMO_PUTS = frozenset({"BINPUT", "LONG_BINPUT"})


class _Invalid(ValueError):
    """A reason the file is not a valid checkpoint; the reader adds the file name."""


# --------------------------------------------------------------------------------------------------
# Stand-ins. Each load makes its own; none can be altered by the pickle (no __dict__, no setattr, and
# BUILD is refused), so nothing one file does can reach the next load.
# --------------------------------------------------------------------------------------------------
class _Frozen:
    __slots__ = ()

    def __setattr__(self, name, value):
        raise _Invalid(f"the pickle tries to set attribute '{name}' of a loader object")

    def __delattr__(self, name):
        raise _Invalid(f"the pickle tries to delete attribute '{name}' of a loader object")

    def __setstate__(self, state):
        raise _Invalid("the pickle tries to modify a loader object (BUILD on a global)")

    def __reduce__(self):
        raise TypeError("loader stand-ins cannot be pickled")


class _StorageType(_Frozen):
    """Stand-in for a ``torch.<X>Storage`` class named in the pickle."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)


class _Call(_Frozen):
    """Stand-in for a callable global: calls ``fn`` of this load only."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args):
        return self._fn(*args)


class _StorageRecord(_Frozen):
    """A persistent id as found in the pickle, checked only when a tensor needs it."""

    __slots__ = ("pid",)

    def __init__(self, pid):
        object.__setattr__(self, "pid", pid)


class _TensorRecord(_Frozen):
    """The arguments of one ``_rebuild_tensor_v2`` call, checked and materialised after unpickling."""

    __slots__ = ("args",)

    def __init__(self, args: tuple):
        object.__setattr__(self, "args", args)


class _StateDict(dict):
    """What ``OrderedDict()`` makes here: a dict that takes torch's ``BUILD`` (the ``_metadata`` of a
    state dict) and drops it, so the file cannot attach anything to it."""

    __slots__ = ()

    def __setstate__(self, state):
        pass


def _new_ordered_dict(*args):
    # torch only ever calls OrderedDict() with no arguments
    if args:
        raise _Invalid("OrderedDict is called with arguments, which torch never writes")
    return _StateDict()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self._globals = {
            ("collections", "OrderedDict"): _Call(_new_ordered_dict),
            ("torch._utils", "_rebuild_tensor_v2"): _Call(lambda *args: _TensorRecord(args)),
            **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
        }

    def find_class(self, module, name):
        try:
            return self._globals[(module, name)]
        except (KeyError, TypeError):
            if (
                module == "torch"
                and isinstance(name, str)
                and name.endswith("Storage")
                and len(name) <= 40
                and name.isidentifier()
            ):
                # another torch dtype: refused when a tensor uses it, where the message can name the tensor
                return _StorageType(name)
            raise _Invalid(
                f"it refers to '{str(module)[:60]}.{str(name)[:60]}', which a tensor checkpoint does not need; "
                "refusing to load it (only plain tensor state dicts are read)"
            ) from None

    def persistent_load(self, pid):
        return _StorageRecord(pid)


def _check_opcodes(data: bytes) -> int:
    """Refuse a pickle whose opcodes could run code or make the unpickler allocate beyond the data's size.

    Returns the number of opcodes (each makes at most one small object).
    """
    n_memo = n_ops = 0
    try:
        for op, arg, pos in pickletools.genops(data):
            n_ops += 1
            if op.name not in _OPCODES:
                raise _Invalid(
                    f"data.pkl uses the pickle opcode {op.name} (at byte {pos}), which a tensor "
                    "state dict does not need"
                )
            if op.name in _MEMO_PUTS:
                # The unpickler sizes its memo by the largest index it sees; torch numbers entries 0, 1, 2, ...
                if not 0 <= arg <= n_memo:
                    raise _Invalid(
                        f"data.pkl stores memo entry {arg} at byte {pos} after only {n_memo} entries"
                    )
                n_memo += 1
            elif op.name == "MEMOIZE":
                n_memo += 1
            elif op.name == "PROTO" and not 2 <= arg <= 5:
                raise _Invalid(f"data.pkl has pickle protocol {arg}; torch writes 2 to 5")
    except _Invalid:
        raise
    except (
        Exception
    ) as err:  # pickletools reports damage as ValueError, struct.error, UnicodeDecodeError, ...
        raise _Invalid(f"data.pkl is damaged ({type(err).__name__}: {str(err)[:120]})") from None
    return n_ops


class _Archive:
    """The zip archive of one checkpoint, read with every size bounded by the file's own size."""

    def __init__(self, archive: zipfile.ZipFile, file_size: int):
        self.zip = archive
        self.file_size = file_size
        self.budget = MEMORY_FACTOR * file_size + _MEMORY_FLOOR
        self.storages: dict[str, bytes] = {}
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise _Invalid("it is a zip file but not a PyTorch checkpoint (no <name>/data.pkl)")
        self.prefix = pickles[0][: -len("data.pkl")]

    def spend(self, nbytes: int, what: str) -> None:
        if nbytes > self.budget:
            raise _Invalid(
                f"{what} would need {nbytes} more bytes of memory, more than {MEMORY_FACTOR} times "
                f"the file's {self.file_size} bytes allow"
            )
        self.budget -= nbytes

    def read(self, name: str, *, limit: int | None = None) -> bytes | None:
        """The member's bytes (CRC checked), or None if absent."""
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            return None
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Invalid(
                f"member '{name}' uses compression method {info.compress_type}, which torch never writes"
            )
        limit = self.file_size if limit is None else min(limit, self.file_size)
        # A deflated member may claim any size; never inflate more than the file itself could hold raw.
        if info.file_size > limit:
            raise _Invalid(
                f"member '{name}' claims {info.file_size} bytes, more than the checkpoint can hold"
            )
        self.spend(info.file_size, f"member '{name}'")
        with self.zip.open(info) as fh:
            data = fh.read(info.file_size + 1)
        if len(data) != info.file_size:
            raise _Invalid(f"member '{name}' holds {len(data)} bytes but its header says {info.file_size}")
        return data


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int_field(value, tensor: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(
            f"tensor '{tensor}': {field} is {type(value).__name__} {_short(value)}, not an integer"
        )
    if not 0 <= value <= _MAX_DIM:
        raise _Invalid(f"tensor '{tensor}': {field} {_short(value)} is out of range")
    return value


def _int_tuple(value, tensor: str, field: str) -> tuple[int, ...]:
    if not isinstance(value, tuple):
        raise _Invalid(f"tensor '{tensor}': {field} is {type(value).__name__}, not a tuple of integers")
    if len(value) > _MAX_NDIM:
        raise _Invalid(
            f"tensor '{tensor}': {field} has {len(value)} dimensions (at most {_MAX_NDIM} are read)"
        )
    return tuple(_int_field(v, tensor, field) for v in value)


def _storage(record, archive: _Archive, tensor: str) -> tuple[np.ndarray, str]:
    """The storage a tensor views, as a flat array of its dtype, and the storage's torch type name."""
    pid = record.pid if isinstance(record, _StorageRecord) else None
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
        raise _Invalid(f"tensor '{tensor}' has no valid storage record ({str(pid)[:60]})")
    _, kind, key, _location, numel = pid
    if not isinstance(kind, _StorageType):
        raise _Invalid(f"tensor '{tensor}': its storage type {str(kind)[:60]} is not a torch storage class")
    if not isinstance(key, str) or not key or len(key) > 64:
        raise _Invalid(f"tensor '{tensor}': its storage key {str(key)[:60]!r} is not a record name")
    if kind.name not in _STORAGE_DTYPES:
        raise _Invalid(
            f"tensor '{tensor}' has dtype torch.{kind.name}, which is not read (supported: "
            f"{', '.join(_STORAGE_DTYPES)})"
        )
    numel = _int_field(numel, tensor, "the storage's element count")
    dtype = _STORAGE_DTYPES[kind.name]
    name = f"{archive.prefix}data/{key}"
    if name not in archive.storages:
        raw = archive.read(name)
        if raw is None:
            raise _Invalid(f"tensor '{tensor}': storage record '{name}' is missing")
        archive.storages[name] = raw
    raw = archive.storages[name]
    if len(raw) < numel * dtype.itemsize:
        raise _Invalid(
            f"tensor '{tensor}': storage record '{name}' ({len(raw)} bytes) is shorter than its "
            f"{numel} elements of {kind.name}"
        )
    return np.frombuffer(raw, dtype=dtype, count=numel), kind.name


def _materialise(record: _TensorRecord, archive: _Archive, tensor: str) -> np.ndarray:
    """Check one tensor's geometry against its storage, then copy it out as a contiguous array."""
    args = record.args
    if not 4 <= len(args) <= 7:
        raise _Invalid(f"tensor '{tensor}' has {len(args)} rebuild arguments; torch writes 6 or 7")
    data, kind = _storage(args[0], archive, tensor)
    offset = _int_field(args[1], tensor, "storage offset")
    size = _int_tuple(args[2], tensor, "size")
    stride = _int_tuple(args[3], tensor, "stride")
    if len(size) != len(stride):
        raise _Invalid(f"tensor '{tensor}': size {size} and stride {stride} differ in length")
    numel, extent = 1, 1
    for n in size:
        numel *= n
        extent *= max(n, 1)
    if extent * 8 > _MAX_DIM:  # numpy cannot even describe such an array, empty or not
        raise _Invalid(f"tensor '{tensor}' has size {_short(size)}, beyond any array")
    if numel:
        last = offset + sum((n - 1) * st for n, st in zip(size, stride, strict=True))
        if last >= data.size:
            raise _Invalid(
                f"tensor '{tensor}' of size {size}, stride {stride}, offset {offset} runs past its "
                f"storage of {data.size} elements"
            )
        if numel > data.size:
            # Only overlapping views (stride 0, expand()) can hold more elements than their storage; such a
            # tensor could be made to claim any amount of memory, and no state dict needs one.
            raise _Invalid(
                f"tensor '{tensor}' of size {size} has more elements than its storage "
                f"({data.size}); overlapping views are not read"
            )
    out_dtype = np.dtype(np.float32) if kind in _FLOAT_STORAGES else data.dtype
    archive.spend(numel * (data.dtype.itemsize + out_dtype.itemsize), f"tensor '{tensor}'")
    if not numel:
        return np.zeros(size, dtype=out_dtype)
    itemsize = data.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[offset:], shape=size, strides=tuple(st * itemsize for st in stride), writeable=False
    )
    array = np.array(view, order="C")  # a contiguous, writeable copy detached from the archive's bytes
    if kind == "BFloat16Storage":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    elif array.dtype.kind == "f" and array.dtype != np.float32:
        with np.errstate(
            over="ignore"
        ):  # float64 beyond float32's range becomes inf, refused by model loaders
            array = array.astype(np.float32)
    return array


def _collect(root, archive: _Archive) -> dict[str, np.ndarray]:
    """Tensors of the (possibly nested) dict ``root``, keys joined with ".", in file order."""
    if not isinstance(root, dict):
        raise _Invalid(f"data.pkl holds a {type(root).__name__}, not a dict of tensors")
    out: dict[str, np.ndarray] = {}
    made: dict[int, np.ndarray] = {}  # a tensor stored under two keys (tied weights) is read once
    seen = {id(root)}
    # An explicit stack, not recursion: a crafted file can nest dicts deeper than Python's recursion limit.
    stack = [("", iter(root.items()))]
    while stack:
        prefix, items = stack[-1]
        item = next(items, None)
        if item is None:
            stack.pop()
            continue
        key, value = item
        if not isinstance(key, str):
            raise _Invalid(
                f"data.pkl has a key of type {type(key).__name__} under '{prefix}'; expected strings"
            )
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            if id(value) in seen:  # shared or cyclic dicts could multiply the work without bound
                raise _Invalid(f"the dict under '{name[:80]}' appears twice in data.pkl")
            if len(stack) >= _MAX_NDIM:
                raise _Invalid(f"dicts nest more than {_MAX_NDIM} deep at '{name[:80]}'")
            seen.add(id(value))
            stack.append((name, iter(value.items())))
        elif isinstance(value, _TensorRecord):
            if name in out:
                raise _Invalid(f"two tensors are named '{name[:80]}'")
            if id(value) not in made:
                made[id(value)] = _materialise(value, archive, name[:80])
            out[name] = made[id(value)]
    if not out:
        raise _Invalid("it holds no tensors")
    return out


def _read(fh, file_size: int) -> dict[str, np.ndarray]:
    head = fh.read(4)
    fh.seek(0)
    try:
        zf = zipfile.ZipFile(fh)
    except zipfile.BadZipFile as err:
        if head.startswith(b"PK"):
            raise _Invalid(f"the zip archive is damaged or truncated ({err})") from None
        raise _Invalid(
            "it is not a zip-format PyTorch checkpoint (legacy pickle checkpoints are not read: "
            "unpickling them could run arbitrary code); re-save it with torch >= 1.6"
        ) from None
    with zf:
        archive = _Archive(zf, file_size)
        order = archive.read(archive.prefix + "byteorder", limit=16)
        # torch wrote no byteorder record before 2.1; those files are little-endian
        order = "little" if order is None else order.decode("ascii").strip()
        if order != "little":
            raise _Invalid(f"it stores {order[:16]}-endian data; only little-endian is supported")
        data = archive.read(archive.prefix + "data.pkl")
        # One opcode makes at most one small object (an empty dict is the largest); charge that up front, so a
        # data.pkl of a million '}' opcodes is refused rather than unpickled.
        archive.spend(_OBJECT_BYTES * _check_opcodes(data), "unpickling data.pkl")
        try:
            root = _RestrictedUnpickler(data).load()
        except _Invalid:
            raise
        except Exception as err:
            raise _Invalid(f"cannot read its data.pkl ({type(err).__name__}: {str(err)[:120]})") from None
        return _collect(root, archive)


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the tensors of a PyTorch zip checkpoint as numpy arrays, without torch and without running code.

    Parameters
    ----------
    path
        A file written by ``torch.save`` (zip format) holding a dict of tensors, possibly nested in
        dicts (e.g. ``{"state_dict": {...}}``); nested keys are joined with ``"."``. Other values (numbers,
        strings, lists) are skipped.

    Returns
    -------
    dict of str to np.ndarray
        Floating tensors as float32 (float16/bfloat16/float64 converted), integer and bool tensors as
        their own dtype; each array is a contiguous copy (a tensor stored under two keys is one array).

    Raises
    ------
    FileNotFoundError
        ``path`` is not a file.
    ValueError
        ``"'<path>' is not a valid checkpoint: <reason>"``: not a zip checkpoint (e.g. the legacy pickle
        format, which cannot be read safely), a damaged archive (bad CRC, truncation), a pickle that names
        anything beyond ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the torch storage
        types or uses opcodes a state dict does not need, or a tensor whose dtype, shape, stride or offset
        does not fit its storage record (the tensor is named). Nothing named in the file is imported or
        called, and at most ``MEMORY_FACTOR`` times the file size (plus 64 KiB) is allocated for its contents.
    """
    path = Path(path)
    if not path.is_file():
        if path.exists():  # a folder, a FIFO (which would block the read), a device
            raise ValueError(f"'{path}' is not a valid checkpoint: it is not a regular file")
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    with open(path, "rb") as fh:
        file_size = os.fstat(fh.fileno()).st_size
        try:
            return _read(fh, file_size)
        except _Invalid as err:
            raise ValueError(f"'{path}' is not a valid checkpoint: {err}") from None
        except Exception as err:  # zipfile, zlib and struct report damage in many types; the user needs one
            raise ValueError(
                f"'{path}' is not a valid checkpoint: the file is damaged "
                f"({type(err).__name__}: {str(err)[:160]})"
            ) from None


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
        pid = (
            _op_tuple(
                [
                    _op_str("storage"),
                    _op_global("torch", storage),
                    _op_str(str(key)),
                    _op_str("cpu"),
                    _op_int(array.size),
                ]
            )
            + b"Q"
        )  # BINPERSID
        stride = [int(s // array.itemsize) for s in array.strides] if array.ndim else []
        args = _op_tuple(
            [
                pid,
                _op_int(0),
                _op_tuple([_op_int(int(n)) for n in array.shape]),
                _op_tuple([_op_int(s) for s in stride]),
                b"\x89",
                _EMPTY_ORDERED_DICT,
            ]
        )  # NEWFALSE
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
    with (
        atomic_file(path, what="checkpoint", overwrite=True) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf,
    ):
        zf.writestr(f"{root}/data.pkl", _state_dict_pickle(arrays))
        zf.writestr(f"{root}/byteorder", "little")
        for key, a in enumerate(arrays.values()):
            zf.writestr(f"{root}/data/{key}", a.tobytes())
        zf.writestr(f"{root}/version", "3\n")
    return path
