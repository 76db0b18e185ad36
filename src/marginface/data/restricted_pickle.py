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
:class:`RefusedPickle` before anything is called.
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
    if codecs.lookup(encoding).name != "iso8859-1":
        raise RefusedPickle(f"_codecs.encode with codec {encoding!r} (only latin1 is allowed)")
    return codecs.encode(text, "latin1", errors)


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.kind not in _PLAIN_KINDS or dtype.hasobject or dtype.fields is not None:
        raise RefusedPickle(f"numpy dtype {dtype!r} (only plain numeric or bytes dtypes)")
    return dtype


def _plain_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise RefusedPickle(f"array subtype {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, _plain_dtype(dtype))


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
    for _name in ("bytes", "bytearray", "list", "tuple", "bool", "int", "float"):
        _ALLOWED[(_module, _name)] = getattr(builtins, _name)
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _plain_reconstruct
    _ALLOWED[(_module, "scalar")] = _plain_scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_module, "_frombuffer")] = _plain_frombuffer


class _RestrictedUnpickler(pickle.Unpickler):
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
