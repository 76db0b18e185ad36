"""Reading InsightFace verification ``.bin`` pickles with a pickle machine of our own.

A ``.bin`` is a pickle of ``(bins, issame_list)``: encoded images (bytes; numpy uint8 arrays
or bytearrays in some converted files) and flags (booleans, numpy bools, or a numpy bool
array). :func:`load_restricted` runs the pickle's opcodes in a loop of its own, not
:class:`pickle.Unpickler` (whose dispatch table brings every opcode of every protocol, with
the lengths they declare taken on trust), and it knows only what such files hold:

- **opcodes** (``_Machine.OPCODES``): protocol and frame headers, marks, ``None``, booleans,
  integers, bytes and strings of every protocol, lists and tuples, the memo, globals, REDUCE,
  BUILD and STOP. Any other (dicts, sets, floats, NEWOBJ, INST, persistent ids, out-of-band
  buffers, extension codes) is refused.
- **globals**: none is ever called. Each allowed name maps to a constructor of this module
  that accepts exactly what the pickles of bytes, bytearrays and plain numpy arrays and
  scalars hold (Python 2 and 3, numpy 1 and 2, protocols 0 to 5), and arrays are built here
  with :func:`numpy.frombuffer` from a (dtype, shape, bytes) checked first: the shape's
  product times the item size must equal the number of bytes, with no offset and no strides.
  ``numpy.ndarray`` is only a marker that ``_reconstruct`` expects as its first argument
  (calling it is refused, so a file cannot choose a buffer, an offset or strides); dtypes are
  bool, integers, floats and complex numbers (no object, structured, string or void dtype),
  and a bool array's bytes must be 0 or 1.

Sizes come from the file: every length an opcode declares is checked against the bytes left
before anything is read or allocated; memo indices follow each other as picklers write them
(at most one past the next free one, as Python 2's cPickle starts at 1: no memo of 175 million
empty slots); lists and tuples nest at most :data:`MAX_DEPTH` deep, and a list cannot change
once it is inside another (so no cycles); an empty array has no dimension above 1 (no loop over
10^12 empty rows); what the machine builds is counted, and a file that would need more than
:data:`BYTES_PER_FILE_BYTE` bytes of objects per byte of its own (plus
:data:`FIXED_ALLOWANCE`) is refused before the allocation. Nothing recurses, so no depth of
input reaches Python's recursion limit.

Errors: :class:`RefusedPickle` (the file asks for something a ``.bin`` never holds) and
:class:`DamagedPickle` (the bytes are not a well-formed pickle), both
:class:`pickle.UnpicklingError`; nothing else is raised for any input.
"""

from __future__ import annotations

import codecs
import pickle
import pickletools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

#: lists and tuples nested deeper than this are refused (a .bin nests 3 deep)
MAX_DEPTH = 32
#: array dimensions at most (numpy's own limit is 64)
MAX_DIMS = 32
#: what the machine may build, per byte of the file ...
BYTES_PER_FILE_BYTE = 8
#: ... plus this much for any file
FIXED_ALLOWANCE = 1 << 16
#: an integer of more bytes (or decimal digits) than this is refused: a .bin's integers are
#: flags, lengths and shapes
MAX_INT_BYTES = 16
#: the dtypes of numpy's own pickles that an array or scalar may have
PLAIN_DTYPES = frozenset(
    ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]
)

_LATIN1 = ("latin1", "latin-1")
# the approximate sizes of what the machine makes, charged to its budget (a stack or list
# slot with the list's over-allocation; a container with its bookkeeping here; an array
# object and its view of the data, which it does not copy)
_SLOT, _CONTAINER, _ARRAY, _SCALAR, _MARK = 9, 200, 240, 64, 48


class RefusedPickle(pickle.UnpicklingError):
    """The pickle asks for something a verification ``.bin`` never holds; nothing was run."""


class DamagedPickle(pickle.UnpicklingError):
    """The bytes are not a well-formed pickle (truncated, a length beyond the end, ...)."""


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _what(value: Any) -> str:
    """A short description of a value for an error message (never a full repr)."""
    if isinstance(value, int | np.generic) or value is None:
        return _cut(repr(value), 40)
    if isinstance(value, str | bytes | bytearray):
        if len(value) <= 16:
            return repr(value)
        return f"{type(value).__name__} of length {len(value)}"
    if isinstance(value, list | tuple):
        return f"{type(value).__name__} of {len(value)} items"
    if isinstance(value, np.ndarray):
        return f"array {value.dtype}{list(value.shape)}"
    if isinstance(value, np.dtype):
        return f"dtype {value}"
    if isinstance(value, _Pending):
        return f"a numpy {value.kind} without its state"
    return type(value).__name__ if not isinstance(value, _Global) else value.name


def _args(values: Any) -> str:
    """The first few of ``values`` (a tuple), described."""
    if type(values) is not tuple:
        return _what(values)
    shown = ", ".join(map(_what, values[:8]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > 8 else "")


def _text(value: Any) -> str | None:
    """A str, or ASCII bytes as a str (Python 2 strings load as bytes); otherwise None."""
    if type(value) is str:
        return value
    if type(value) is bytes and len(value) <= 64:
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return None


def _small_int(value: Any, *allowed: int) -> bool:
    return type(value) in (int, bool) and int(value) in allowed


class _Global:
    """An allowed global: a constructor of this module (``build``), or a marker (None)."""

    __slots__ = ("build", "name")

    def __init__(self, name: str, build: Callable[[_Machine, tuple], Any] | None) -> None:
        self.name = name
        self.build = build


class _Pending:
    """A dtype or an array made by REDUCE, waiting for its state (BUILD)."""

    __slots__ = ("base", "kind", "value")

    def __init__(self, kind: str, base: np.dtype | None = None) -> None:
        self.kind = kind
        self.base = base
        self.value: Any = None


# ---------------------------------------------------------------------------------------------
# what the globals build
# ---------------------------------------------------------------------------------------------
def _dtype_of(value: Any) -> np.dtype:
    if not (
        isinstance(value, np.dtype)
        and value.kind in "biufc"
        and not value.hasobject
        and value.fields is None
        and value.subdtype is None
    ):
        raise RefusedPickle(f"a numpy array or scalar of {_what(value)}")
    return value


def _data_bytes(machine: _Machine, data: Any, what: str) -> bytes | bytearray:
    """An array's or scalar's data: bytes, or (Python 2 files read as text) latin-1 text."""
    if type(data) in (bytes, bytearray):
        return data
    if type(data) is str:
        machine.charge(len(data) + 40)
        try:
            return data.encode("latin1")
        except UnicodeEncodeError:
            raise DamagedPickle(f"the data of {what} is text beyond latin-1") from None
    raise RefusedPickle(f"{what} with data of type {_what(data)}")


def make_array(
    data: bytes | bytearray, dtype: np.dtype, shape: Any, fortran: bool = False
) -> np.ndarray:
    """A plain array over ``data`` (not copied), after checking that ``shape`` and ``dtype``
    describe exactly ``len(data)`` bytes; for :class:`RefusedPickle` otherwise."""
    dtype = _dtype_of(dtype)
    if (
        type(shape) is not tuple
        or len(shape) > MAX_DIMS
        or any(type(n) is not int or n < 0 for n in shape)
    ):
        raise RefusedPickle(f"an array of shape {_what(shape)}")
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(data):
        raise RefusedPickle(
            f"an array of shape {shape} and dtype {dtype} ({count * dtype.itemsize} bytes) "
            f"from {len(data)} bytes of data"
        )
    if any(n > max(count, 1) for n in shape):
        raise RefusedPickle(f"an empty array of shape {shape}")
    flat = np.frombuffer(data, dtype=dtype)
    if dtype.kind == "b" and count and np.frombuffer(data, dtype=np.uint8).max() > 1:
        raise RefusedPickle("a bool array holding bytes other than 0 and 1")
    return flat.reshape(shape, order="F" if fortran else "C")


def _encode(machine: _Machine, args: tuple) -> bytes:
    """``_codecs.encode(text, 'latin1')``: how Python 3 writes bytes at protocols 0 to 2."""
    if len(args) != 2 or type(args[0]) is not str or _text(args[1]) not in _LATIN1:
        raise RefusedPickle(f"_codecs.encode of ({_args(args)})")
    machine.charge(len(args[0]) + 40)
    try:
        return args[0].encode("latin1")
    except UnicodeEncodeError:
        raise DamagedPickle("_codecs.encode of text beyond latin-1") from None


def _bytes(machine: _Machine, args: tuple) -> bytes:
    """``bytes()`` (empty bytes at protocols 0 to 2) or ``bytes(existing bytes)``."""
    if args == ():
        return b""
    if len(args) == 1 and type(args[0]) in (bytes, bytearray):
        machine.charge(len(args[0]) + 40)
        return bytes(args[0])
    raise RefusedPickle(f"bytes({_args(args)})")


def _bytearray(machine: _Machine, args: tuple) -> bytearray:
    """``bytearray()``, ``bytearray(bytes)`` (Python 3), ``bytearray(text, 'latin-1')``
    (Python 2)."""
    if args == ():
        return bytearray()
    if len(args) == 1 and type(args[0]) in (bytes, bytearray):
        machine.charge(len(args[0]) + 64)
        return bytearray(args[0])
    if len(args) == 2 and type(args[0]) is str and _text(args[1]) in _LATIN1:
        machine.charge(len(args[0]) + 64)
        try:
            return bytearray(args[0].encode("latin1"))
        except UnicodeEncodeError:
            raise DamagedPickle("bytearray of text beyond latin-1") from None
    raise RefusedPickle(f"bytearray({_args(args)})")


def _dtype(machine: _Machine, args: tuple) -> _Pending:
    """``numpy.dtype(spec, align, copy)`` as numpy pickles it; its state comes with BUILD."""
    if (
        len(args) != 3
        or _text(args[0]) not in PLAIN_DTYPES
        or not _small_int(args[1], 0)
        or not _small_int(args[2], 0, 1)
    ):
        raise RefusedPickle(
            f"numpy.dtype({_args(args)}) (only bool, integer, float and complex dtypes)"
        )
    machine.charge(_CONTAINER)
    return _Pending("dtype", np.dtype(_text(args[0])))


def _reconstruct(machine: _Machine, args: tuple) -> _Pending:
    """``_reconstruct(numpy.ndarray, (0,), b'b')``: an array whose shape, dtype and data come
    with BUILD (checked by :func:`make_array`)."""
    if not (
        len(args) == 3
        and args[0] is _NDARRAY
        and type(args[1]) is tuple
        and len(args[1]) == 1
        and _small_int(args[1][0], 0)
        and (args[2] == b"b" if type(args[2]) is bytes else args[2] == "b")
    ):
        raise RefusedPickle(f"numpy _reconstruct({_args(args)})")
    machine.charge(_CONTAINER)
    return _Pending("array")


def _scalar(machine: _Machine, args: tuple) -> np.generic:
    """``scalar(dtype, data)``: a numpy scalar (``np.bool_(True)`` in a list of flags)."""
    if len(args) != 2:
        raise RefusedPickle(f"numpy scalar({_args(args)})")
    dtype = _dtype_of(args[0])
    data = _data_bytes(machine, args[1], "a numpy scalar")
    if len(data) != dtype.itemsize:
        raise RefusedPickle(f"a numpy {dtype} scalar from {len(data)} bytes")
    machine.charge(_SCALAR)
    return make_array(data, dtype, ())[()]


def _frombuffer(machine: _Machine, args: tuple) -> np.ndarray:
    """``_frombuffer(data, dtype, shape, order)``: numpy's arrays at protocol 5."""
    order = _text(args[3]) if len(args) == 4 else None
    if order not in ("C", "F") or type(args[0]) not in (bytes, bytearray):
        raise RefusedPickle(f"numpy _frombuffer({_args(args)})")
    machine.charge(_ARRAY)
    return make_array(args[0], args[1], args[2], fortran=order == "F")


def _built_dtype(pending: _Pending, state: Any) -> np.dtype:
    """A dtype's state ``(3, byteorder, None, None, None, -1, -1, 0)`` (numpy 1 and 2), applied
    here: numpy's own ``__setstate__`` trusts it."""
    dtype = pending.base
    order = _text(state[1]) if type(state) is tuple and len(state) >= 8 else None
    ok = (
        order is not None
        and ((len(state) == 8 and _small_int(state[0], 3)) or (
            len(state) == 9 and _small_int(state[0], 4) and state[8] is None))
        and all(item is None for item in state[2:5])
        and _small_int(state[5], -1, dtype.itemsize)
        and _small_int(state[6], -1, dtype.alignment)
        and _small_int(state[7], 0)
        and len(order) == 1
        and order in ("<>=" if dtype.itemsize > 1 else "|<>=")
    )  # fmt: skip
    if not ok:
        raise RefusedPickle(f"the state ({_args(state)}) of numpy dtype {dtype}")
    return dtype.newbyteorder(order) if order in "<>" else dtype


def _built_array(machine: _Machine, state: Any) -> np.ndarray:
    """An array's state ``(1, shape, dtype, fortran, data)``, built by :func:`make_array`."""
    if not (
        type(state) is tuple
        and len(state) == 5
        and _small_int(state[0], 1)
        and _small_int(state[3], 0, 1)
    ):
        raise RefusedPickle(f"an array state of {_what(state)}")
    data = _data_bytes(machine, state[4], "a numpy array")
    machine.charge(_ARRAY)
    return make_array(data, state[2], state[1], fortran=bool(state[3]))


_NDARRAY = _Global("numpy.ndarray", None)
_UNSET = _Global("an unset memo entry", None)
_GLOBALS: dict[tuple[str, str], _Global] = {
    ("_codecs", "encode"): _Global("_codecs.encode", _encode),
    ("numpy", "dtype"): _Global("numpy.dtype", _dtype),
    ("numpy", "ndarray"): _NDARRAY,
}
for _module in ("builtins", "__builtin__"):
    _GLOBALS[(_module, "bytes")] = _Global("bytes", _bytes)
    _GLOBALS[(_module, "bytearray")] = _Global("bytearray", _bytearray)
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _GLOBALS[(_module, "_reconstruct")] = _Global(f"{_module}._reconstruct", _reconstruct)
    _GLOBALS[(_module, "scalar")] = _Global(f"{_module}.scalar", _scalar)
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _GLOBALS[(_module, "_frombuffer")] = _Global(f"{_module}._frombuffer", _frombuffer)


# ---------------------------------------------------------------------------------------------
# the machine
# ---------------------------------------------------------------------------------------------
class _Machine:
    """One run over one pickle. The stack is one list; ``marks`` holds its lengths at each
    MARK (pickle's "metastack"), and nothing below the last mark can be popped."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.view = memoryview(data)
        self.pos = 0
        self.start = 0  # where the current opcode starts, for messages
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: list[Any] = []
        self.depth: dict[int, int] = {}  # id -> nesting depth, of the lists and tuples made
        self.sealed: set[int] = set()  # ids of the lists put inside another list or tuple
        self.budget = BYTES_PER_FILE_BYTE * len(data) + FIXED_ALLOWANCE

    # -- accounting and reading --------------------------------------------------------------
    def charge(self, size: int) -> None:
        """Count ``size`` bytes about to be built; refuse past the budget."""
        self.budget -= size
        if self.budget < 0:
            raise RefusedPickle(
                f"more than {BYTES_PER_FILE_BYTE} bytes of objects per byte of the file"
            )

    def fits(self, size: int) -> None:
        """Check that ``size`` bytes may be built, without counting them yet."""
        if size > self.budget:
            raise RefusedPickle(
                f"more than {BYTES_PER_FILE_BYTE} bytes of objects per byte of the file"
            )

    def name(self) -> str:
        return pickletools.code2op[chr(self.data[self.start])].name

    def take(self, n: int) -> memoryview:
        """The next ``n`` bytes; a length beyond the end is a damaged file, found before
        anything is allocated."""
        left = len(self.data) - self.pos
        if n > left:
            raise DamagedPickle(
                f"{self.name()} at byte {self.start} declares {n} bytes, {left} are left"
            )
        self.pos += n
        return self.view[self.pos - n : self.pos]

    def length(self, size: int, signed: bool = False) -> int:
        n = int.from_bytes(self.take(size), "little", signed=signed)
        if n < 0:
            raise DamagedPickle(f"{self.name()} at byte {self.start} declares {n} bytes")
        return n

    def line(self) -> memoryview:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise DamagedPickle(f"{self.name()} at byte {self.start}: no end of line")
        return self.take(end + 1 - self.pos)[:-1]

    def line_int(self) -> int:
        text = bytes(self.line())
        digits = text.rstrip(b"L").strip()
        if len(digits) > 3 * MAX_INT_BYTES:
            raise RefusedPickle(f"an integer of {len(digits)} digits")
        try:
            return int(digits)
        except ValueError:
            raise DamagedPickle(f"{self.name()} at byte {self.start}: not an integer") from None

    def int_bytes(self, n: int) -> int:
        if n > MAX_INT_BYTES:
            self.take(n)  # a length beyond the end is "damaged" first
            raise RefusedPickle(f"an integer of {n} bytes")
        return int.from_bytes(self.take(n), "little", signed=True)

    # -- the stack -----------------------------------------------------------------------------
    def floor(self) -> int:
        return self.marks[-1] if self.marks else 0

    def push(self, value: Any) -> None:
        self.charge(_SLOT)
        self.stack.append(value)

    def pop(self) -> Any:
        if len(self.stack) <= self.floor():
            raise DamagedPickle(f"{self.name()} at byte {self.start}: nothing on the stack")
        return self.stack.pop()

    def top(self) -> Any:
        if len(self.stack) <= self.floor():
            raise DamagedPickle(f"{self.name()} at byte {self.start}: nothing on the stack")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise DamagedPickle(f"{self.name()} at byte {self.start} without a MARK")
        mark = self.marks.pop()
        self.charge(_SLOT * (len(self.stack) - mark))  # the copy made here
        items = self.stack[mark:]
        del self.stack[mark:]
        return items

    def item(self, value: Any) -> tuple[Any, int]:
        """``value`` as it goes into a list or tuple, and its nesting depth: a dtype or array
        must have its state, a global cannot be a value (but ``numpy.ndarray``, the argument
        of ``_reconstruct``), and a list is sealed (it may not change any more)."""
        if type(value) is _Pending:
            if value.value is None:
                raise RefusedPickle(f"a numpy {value.kind} used before its state was set")
            return value.value, 0
        if type(value) is _Global and value is not _NDARRAY:
            raise RefusedPickle(f"{value.name} as a value")
        if type(value) is list:
            self.sealed.add(id(value))
        if type(value) in (list, tuple):
            return value, self.depth.get(id(value), 1)
        return value, 0

    def container(self, value: list | tuple, depth: int) -> list | tuple:
        if depth > MAX_DEPTH:
            raise RefusedPickle(f"lists or tuples nested more than {MAX_DEPTH} deep")
        self.depth[id(value)] = depth
        self.sealed.discard(id(value))
        return value

    def make_tuple(self, items: list[Any]) -> tuple:
        self.charge(_CONTAINER + _SLOT * len(items))
        depth = 0
        for i, value in enumerate(items):
            items[i], d = self.item(value)
            depth = max(depth, d)
        return self.container(tuple(items), depth + 1)

    def extend(self, target: Any, items: list[Any]) -> None:
        if type(target) is not list:
            raise RefusedPickle(f"an append to {_what(target)}")
        if id(target) in self.sealed:
            raise RefusedPickle("a list changed after it was put inside another")
        self.charge(_SLOT * len(items))
        depth = self.depth.get(id(target), 1)
        for i, value in enumerate(items):
            if value is target:
                raise RefusedPickle("a list inside itself")
            items[i], d = self.item(value)
            depth = max(depth, d + 1)
        self.container(target, depth)
        target.extend(items)

    # -- opcodes -------------------------------------------------------------------------------
    def op_proto(self) -> None:
        version = self.take(1)[0]
        if version > 5:
            raise DamagedPickle(f"pickle protocol {version} (at most 5)")

    def op_frame(self) -> None:
        """A frame's bytes follow inline: its length is only checked against what is left."""
        n, left = self.length(8), len(self.data) - self.pos
        if n > left:
            raise DamagedPickle(f"FRAME at byte {self.start} declares {n} bytes, {left} are left")

    def op_mark(self) -> None:
        self.charge(_MARK)
        self.marks.append(len(self.stack))

    def op_pop(self) -> None:
        if len(self.stack) > self.floor():
            self.stack.pop()
        elif self.marks and self.marks[-1] == len(self.stack):
            self.marks.pop()
        else:
            raise DamagedPickle(f"POP at byte {self.start}: nothing on the stack")

    def op_pop_mark(self) -> None:
        self.pop_mark()

    def op_dup(self) -> None:
        self.push(self.top())

    def op_none(self) -> None:
        self.push(None)

    def op_true(self) -> None:
        self.push(True)

    def op_false(self) -> None:
        self.push(False)

    def op_int(self) -> None:
        text = bytes(self.view[self.pos : self.pos + 3])
        if text in (b"00\n", b"01\n"):
            self.pos += 3
            self.push(text == b"01\n")
        else:
            self.push_int(self.line_int())

    def push_int(self, value: int) -> None:
        self.charge(32)
        self.push(value)

    def op_binint(self) -> None:
        self.push_int(int.from_bytes(self.take(4), "little", signed=True))

    def op_binint1(self) -> None:
        self.push(self.take(1)[0])

    def op_binint2(self) -> None:
        self.push_int(int.from_bytes(self.take(2), "little"))

    def op_long(self) -> None:
        self.push_int(self.line_int())

    def op_long1(self) -> None:
        self.push_int(self.int_bytes(self.length(1)))

    def op_long4(self) -> None:
        self.push_int(self.int_bytes(self.length(4, signed=True)))

    def push_bytes(self, n: int, kind: type = bytes) -> None:
        data = self.take(n)  # first: a length beyond the end is a damaged file
        self.charge(n + 64)
        self.push(kind(data))

    def op_binbytes(self) -> None:
        self.push_bytes(self.length(4))

    def op_short_binbytes(self) -> None:
        self.push_bytes(self.length(1))

    def op_binbytes8(self) -> None:
        self.push_bytes(self.length(8))

    def op_bytearray8(self) -> None:
        self.push_bytes(self.length(8), bytearray)

    def op_binstring(self) -> None:  # Python 2 str: bytes
        self.push_bytes(self.length(4, signed=True))

    def op_short_binstring(self) -> None:
        self.push_bytes(self.length(1))

    def op_string(self) -> None:
        text = self.line()
        if len(text) < 2 or text[0] != text[-1] or text[0] not in b"'\"":
            raise DamagedPickle(f"STRING at byte {self.start} is not quoted")
        self.charge(len(text) + 64)  # the bytes decoded are at most as many as the text's
        try:
            self.push(codecs.escape_decode(text[1:-1])[0])
        except ValueError:
            raise DamagedPickle(f"STRING at byte {self.start}: a bad escape") from None

    def push_text(self, data: memoryview, decode: Callable[[memoryview], str]) -> None:
        self.fits(4 * len(data) + 80)  # one character takes at most 4 bytes in a str
        try:
            text = decode(data)
        except UnicodeDecodeError:
            raise DamagedPickle(f"{self.name()} at byte {self.start}: bad text") from None
        self.charge(sys.getsizeof(text))
        self.push(text)

    def utf8(self, n: int) -> None:
        self.push_text(self.take(n), lambda b: codecs.utf_8_decode(b, "surrogatepass", True)[0])

    def op_binunicode(self) -> None:
        self.utf8(self.length(4))

    def op_short_binunicode(self) -> None:
        self.utf8(self.length(1))

    def op_binunicode8(self) -> None:
        self.utf8(self.length(8))

    def op_unicode(self) -> None:
        self.push_text(self.line(), lambda b: codecs.raw_unicode_escape_decode(b)[0])

    def op_empty_list(self) -> None:
        self.charge(_CONTAINER)
        self.push(self.container([], 1))

    def op_list(self) -> None:
        items = self.pop_mark()
        target = self.container([], 1)
        self.charge(_CONTAINER)
        self.extend(target, items)
        self.push(target)

    def op_append(self) -> None:
        value = self.pop()
        self.extend(self.top(), [value])

    def op_appends(self) -> None:
        items = self.pop_mark()
        self.extend(self.top(), items)

    def op_empty_tuple(self) -> None:
        self.push(self.make_tuple([]))

    def op_tuple(self) -> None:
        self.push(self.make_tuple(self.pop_mark()))

    def op_tuple1(self) -> None:
        self.push(self.make_tuple([self.pop()]))

    def op_tuple2(self) -> None:
        b, a = self.pop(), self.pop()
        self.push(self.make_tuple([a, b]))

    def op_tuple3(self) -> None:
        c, b, a = self.pop(), self.pop(), self.pop()
        self.push(self.make_tuple([a, b, c]))

    def find_global(self, module: str, name: str) -> None:
        found = _GLOBALS.get((module, name))
        if found is None:
            raise RefusedPickle(f"the global {_cut(module)}.{_cut(name)}")
        self.push(found)

    def op_global(self) -> None:
        try:
            module = codecs.utf_8_decode(self.line(), "strict", True)[0]
            name = codecs.utf_8_decode(self.line(), "strict", True)[0]
        except UnicodeDecodeError:
            raise DamagedPickle(f"GLOBAL at byte {self.start}: bad text") from None
        self.find_global(module, name)

    def op_stack_global(self) -> None:
        name, module = self.pop(), self.pop()
        if type(name) is not str or type(module) is not str:
            raise DamagedPickle(f"STACK_GLOBAL at byte {self.start}: names are not text")
        self.find_global(module, name)

    def op_reduce(self) -> None:
        args, func = self.pop(), self.pop()
        if type(func) is not _Global or func.build is None:
            raise RefusedPickle(f"a call of {_what(func)}")
        if type(args) is not tuple:
            raise RefusedPickle(f"a call of {func.name} with {_what(args)}")
        self.push(func.build(self, args))

    def op_build(self) -> None:
        state = self.pop()
        target = self.top()
        if type(target) is not _Pending:
            raise RefusedPickle(f"a state (BUILD) for {_what(target)}")
        if target.value is not None:
            raise RefusedPickle(f"a second state (BUILD) for a numpy {target.kind}")
        state, _ = self.item(state)
        if target.kind == "dtype":
            target.value = _built_dtype(target, state)
        else:
            target.value = _built_array(self, state)
        self.stack[-1] = target.value

    def put(self, index: int) -> None:
        """Store the top of the stack at ``index``: the next free index, or one past it
        (Python 2's cPickle numbers from 1), or one already used."""
        if index > len(self.memo) + 1:
            raise RefusedPickle(
                f"memo index {index} with {len(self.memo)} stored: picklers number their memo "
                "in order"
            )
        value = self.top()
        while len(self.memo) <= index:
            self.charge(_SLOT)
            self.memo.append(_UNSET)
        self.memo[index] = value

    def op_put(self) -> None:
        self.put(self.line_int())

    def op_binput(self) -> None:
        self.put(self.take(1)[0])

    def op_long_binput(self) -> None:
        self.put(self.length(4))

    def op_memoize(self) -> None:
        self.put(len(self.memo))

    def get(self, index: int) -> None:
        if not 0 <= index < len(self.memo) or self.memo[index] is _UNSET:
            raise DamagedPickle(f"{self.name()} at byte {self.start}: no memo entry {index}")
        self.push(self.memo[index])

    def op_get(self) -> None:
        self.get(self.line_int())

    def op_binget(self) -> None:
        self.get(self.take(1)[0])

    def op_long_binget(self) -> None:
        self.get(self.length(4))

    OPCODES: dict[int, Callable[[_Machine], None]] = {}

    def run(self) -> Any:
        opcodes = self.OPCODES
        data = self.data
        while self.pos < len(data):
            self.start = self.pos
            code = data[self.pos]
            self.pos += 1
            if code == 0x2E:  # STOP
                value, _ = self.item(self.pop())
                if type(value) is _Global:
                    raise RefusedPickle(f"{value.name} as a value")
                return value
            handler = opcodes.get(code)
            if handler is None:
                known = pickletools.code2op.get(chr(code))
                if known is not None:
                    raise RefusedPickle(f"the pickle opcode {known.name}")
                raise DamagedPickle(f"byte {self.start}: {code:#04x} is not a pickle opcode")
            handler(self)
        raise DamagedPickle("it ends before its STOP opcode")


_OPS = {
    pickle.PROTO: _Machine.op_proto,
    pickle.FRAME: _Machine.op_frame,
    pickle.MARK: _Machine.op_mark,
    pickle.POP: _Machine.op_pop,
    pickle.POP_MARK: _Machine.op_pop_mark,
    pickle.DUP: _Machine.op_dup,
    pickle.NONE: _Machine.op_none,
    pickle.NEWTRUE: _Machine.op_true,
    pickle.NEWFALSE: _Machine.op_false,
    pickle.INT: _Machine.op_int,
    pickle.BININT: _Machine.op_binint,
    pickle.BININT1: _Machine.op_binint1,
    pickle.BININT2: _Machine.op_binint2,
    pickle.LONG: _Machine.op_long,
    pickle.LONG1: _Machine.op_long1,
    pickle.LONG4: _Machine.op_long4,
    pickle.BINBYTES: _Machine.op_binbytes,
    pickle.SHORT_BINBYTES: _Machine.op_short_binbytes,
    pickle.BINBYTES8: _Machine.op_binbytes8,
    pickle.BYTEARRAY8: _Machine.op_bytearray8,
    pickle.STRING: _Machine.op_string,
    pickle.BINSTRING: _Machine.op_binstring,
    pickle.SHORT_BINSTRING: _Machine.op_short_binstring,
    pickle.UNICODE: _Machine.op_unicode,
    pickle.BINUNICODE: _Machine.op_binunicode,
    pickle.SHORT_BINUNICODE: _Machine.op_short_binunicode,
    pickle.BINUNICODE8: _Machine.op_binunicode8,
    pickle.EMPTY_LIST: _Machine.op_empty_list,
    pickle.LIST: _Machine.op_list,
    pickle.APPEND: _Machine.op_append,
    pickle.APPENDS: _Machine.op_appends,
    pickle.EMPTY_TUPLE: _Machine.op_empty_tuple,
    pickle.TUPLE: _Machine.op_tuple,
    pickle.TUPLE1: _Machine.op_tuple1,
    pickle.TUPLE2: _Machine.op_tuple2,
    pickle.TUPLE3: _Machine.op_tuple3,
    pickle.GLOBAL: _Machine.op_global,
    pickle.STACK_GLOBAL: _Machine.op_stack_global,
    pickle.REDUCE: _Machine.op_reduce,
    pickle.BUILD: _Machine.op_build,
    pickle.PUT: _Machine.op_put,
    pickle.BINPUT: _Machine.op_binput,
    pickle.LONG_BINPUT: _Machine.op_long_binput,
    pickle.MEMOIZE: _Machine.op_memoize,
    pickle.GET: _Machine.op_get,
    pickle.BINGET: _Machine.op_binget,
    pickle.LONG_BINGET: _Machine.op_long_binget,
}
#: the opcodes the machine runs (STOP is handled by its loop); any other is refused
ALLOWED_OPCODES = frozenset(_OPS) | {pickle.STOP}
_Machine.OPCODES = {code[0]: handler for code, handler in _OPS.items()}


def load_restricted(data: bytes) -> Any:
    """Unpickle ``data``, allowing only what the module docstring lists.

    Python 2 strings load as bytes (InsightFace's files hold their images as Python 2 ``str``).
    Raises :class:`RefusedPickle` or :class:`DamagedPickle`, nothing else.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    return _Machine(data).run()
