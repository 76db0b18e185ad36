"""Reading InsightFace verification ``.bin`` pickles without running anything they name.

A ``.bin`` is a pickle of ``(bins, issame_list)``: encoded images (bytes, or numpy uint8
arrays in some converted files) and booleans. :func:`load_restricted` unpickles with a
:class:`pickle.Unpickler` whose ``find_class`` knows only what such a file needs:

- ``_codecs.encode`` with the ``latin1`` codec (how Python 3 writes bytes at protocol 2);
- ``bytes``, ``bytearray``, ``list``, ``tuple``, ``bool``, ``int``, ``float``;
- numpy arrays and scalars of plain dtypes (bool, integers, floats, complex, fixed bytes):
  ``numpy.core.multiarray._reconstruct`` / ``scalar``, ``numpy.core.numeric._frombuffer``
  (protocol 5), ``numpy.ndarray``, ``numpy.dtype`` (``numpy._core`` as well: numpy 2).

Any other global (``os.system``, ``builtins.eval``, object arrays ...) stops the load with
:class:`RefusedPickle` before anything is called. Sizes come from the file's own bytes only:
``bytes(n)`` / ``bytearray(n)`` of a number and array shapes not backed by data are refused,
and the memo is a dict (the pure-Python unpickler), where the C unpickler grows an array to
the largest memo index a file names, so that a few bytes could allocate gigabytes. The state
of a dtype or an array (pickle's BUILD) is checked and applied here, never handed to numpy's
``__setstate__``, which trusts it (a forged dtype state crashes the interpreter).
"""

from __future__ import annotations

import builtins
import codecs
import io
import pickle
from typing import Any

import numpy as np

#: dtype kinds a verification file may hold: bool, signed / unsigned int, float, complex, bytes
_PLAIN_KINDS = frozenset("biufcS")


class RefusedPickle(pickle.UnpicklingError):
    """The pickle names a global that a verification ``.bin`` never holds."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    try:
        name = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        name = repr(encoding)
    if name != "iso8859-1":
        raise RefusedPickle(f"_codecs.encode with codec {encoding!r} (only latin1 is allowed)")
    return codecs.encode(text, "latin1", errors)


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.kind not in _PLAIN_KINDS or dtype.hasobject or dtype.fields is not None:
        raise RefusedPickle(f"numpy dtype {dtype!r} (only plain numeric or bytes dtypes)")
    return dtype


def _plain_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """An empty array; its shape and data come with ``__setstate__``, checked against each
    other by numpy (the shape given here is never allocated)."""
    if subtype is not np.ndarray:
        raise RefusedPickle(f"array subtype {subtype!r}")
    return np.ndarray.__new__(np.ndarray, (0,), _plain_dtype(dtype))


def _from_data(kind: type) -> Any:
    """``bytes`` / ``bytearray`` of existing data only (``bytes(10**12)`` would allocate)."""

    def build(*args: Any) -> Any:
        if args and not isinstance(args[0], str | bytes | bytearray | list):
            raise RefusedPickle(f"{kind.__name__} of a {type(args[0]).__name__}")
        return kind(*args)

    return build


def _plain_scalar(dtype: np.dtype, data: bytes = b"") -> Any:
    dtype = _plain_dtype(dtype)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise RefusedPickle(f"numpy scalar of {dtype} from {type(data).__name__}")
    return np.frombuffer(data, dtype=dtype)[0]


def _plain_frombuffer(buffer: Any, dtype: Any, shape: Any, order: str = "C") -> np.ndarray:
    if not isinstance(buffer, bytes | bytearray):
        raise RefusedPickle(f"array buffer of type {type(buffer).__name__}")
    if order not in ("C", "F"):
        raise RefusedPickle(f"array order {order!r}")
    array = np.frombuffer(buffer, dtype=_plain_dtype(dtype))
    return array.reshape(shape, order=order)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
}
for _module in ("builtins", "__builtin__"):
    for _name in ("list", "tuple", "bool", "int", "float"):
        _ALLOWED[(_module, _name)] = getattr(builtins, _name)
    _ALLOWED[(_module, "bytes")] = _from_data(bytes)
    _ALLOWED[(_module, "bytearray")] = _from_data(bytearray)
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _plain_reconstruct
    _ALLOWED[(_module, "scalar")] = _plain_scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_module, "_frombuffer")] = _plain_frombuffer


def _built_dtype(dtype: np.dtype, state: Any) -> np.dtype:
    """A plain dtype with its pickled state (byte order) applied by us: numpy's own
    ``dtype.__setstate__`` trusts the state and crashes on a forged one."""
    ok = (
        isinstance(state, tuple)
        and len(state) in (8, 9)
        and state[0] == 3
        and state[1] in ("<", ">", "|", "=")
        and state[2:5] == (None, None, None)
        and state[5] in (-1, dtype.itemsize)
        and state[6] in (-1, dtype.alignment)
        and isinstance(state[7], int)
    )
    if not ok:
        raise RefusedPickle(f"dtype state {state!r}")
    return dtype if state[1] in ("|", "=") else dtype.newbyteorder(state[1])


def _built_array(array: np.ndarray, state: Any) -> np.ndarray:
    """An array from its pickled state ``(1, shape, dtype, fortran, data)``, built with
    ``frombuffer`` from the data the file holds (never numpy's ``__setstate__``)."""
    ok = (
        isinstance(state, tuple)
        and len(state) == 5
        and state[0] == 1
        and isinstance(state[1], tuple)
        and all(isinstance(n, int) and 0 <= n for n in state[1])
        and isinstance(state[2], np.dtype)
        and isinstance(state[3], bool)
        and isinstance(state[4], bytes | bytearray)
    )
    if not ok:
        raise RefusedPickle("array state")
    dtype = _plain_dtype(state[2])
    if len(state[4]) != int(np.prod(state[1], dtype=object)) * dtype.itemsize:
        raise RefusedPickle(f"array of shape {state[1]} with {len(state[4])} bytes of data")
    flat = np.frombuffer(bytes(state[4]), dtype=dtype)
    return flat.reshape(state[1], order="F" if state[3] else "C").copy()


def _load_build(self: _RestrictedUnpickler) -> None:
    """BUILD (``obj.__setstate__(state)``) for the two types that have a state: dtypes and
    arrays; anything else is refused."""
    state = self.stack.pop()
    target = self.stack[-1]
    if isinstance(target, np.dtype):
        self.stack[-1] = _built_dtype(target, state)
    elif type(target) is np.ndarray:
        self.stack[-1] = _built_array(target, state)
    else:
        raise RefusedPickle(f"setting the state of a {type(target).__name__}")


class _RestrictedUnpickler(pickle._Unpickler):  # the Python one: a dict memo
    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: _load_build}

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise RefusedPickle(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle(f"persistent id {pid!r}")


def load_restricted(data: bytes, encoding: str = "ASCII") -> Any:
    """Unpickle ``data`` allowing only the types listed in the module docstring.

    Raises :class:`RefusedPickle` for anything else, and pickle's own errors (UnpicklingError,
    EOFError, ValueError, ...) for a damaged pickle.
    """
    return _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
