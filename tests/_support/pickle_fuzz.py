"""Inputs of the structured ``.bin`` fuzzer (``tests/fuzz/structured.py``).

Unlike atheris' byte mutations, which rarely get past the first opcode's check, these are
pickles built from the opcodes and globals the pickle machine allows
(``marginface.data.formats.restricted_pickle``), with random arguments: ``.bin``-shaped files
of bytes, numpy arrays (both numpy layouts: ``_reconstruct`` + BUILD, protocol 5's
``_frombuffer``), scalars, dtypes with random specs and states, nested lists, the memo,
declared lengths that lie now and then, and a few globals that are not allowed. Also:
byte-level mutations of valid ``.bin`` pickles of every protocol, and "amplifiers", larger
files made to build much more than their size (one text encoded many times through the memo,
floods of lists, marks, duplicates, memo entries).

``make_input(seed, index)`` is deterministic, so a failing input is found again from its
number alone.
"""

from __future__ import annotations

import pickle
import random

import numpy as np

INTERESTING = [0, 1, 2, 3, 7, 8, 255, 256, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1,
               2**40, 2**63 - 1, 2**64 - 1, 10**12, -1, -(2**31), -(2**40)]  # fmt: skip
ALLOWED_GLOBALS = [
    ("_codecs", "encode"), ("builtins", "bytes"), ("__builtin__", "bytes"),
    ("builtins", "bytearray"), ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
]  # fmt: skip
OTHER_GLOBALS = [
    ("os", "system"), ("builtins", "eval"), ("builtins", "getattr"),
    ("copyreg", "_reconstructor"), ("numpy", "frombuffer"), ("builtins", "list"),
]  # fmt: skip
DTYPES = ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]
BAD_DTYPES = ["O8", "O", "V8", "U3", "S3", "f16", "M8", "?", "<u4", "", "b1,u1"]


class _Writer:
    def __init__(self, rng: random.Random, protocol: int) -> None:
        self.rng = rng
        self.protocol = protocol
        self.out = bytearray()
        self.next_memo = 0
        self.stored: list[int] = []  # memo indices written so far

    # -- low level -------------------------------------------------------------------------
    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def size(self, n: int, width: int, signed: bool = False) -> bytes:
        """A declared length: ``n``, or now and then a lie."""
        if self.chance(0.01):
            n = self.rng.choice([n + 1, max(n - 1, 0), 2**31 - 1, 2**40, 2 ** (8 * width - 1) - 1])
            n = min(n, 2 ** (8 * width - (1 if signed else 0)) - 1)
        return n.to_bytes(width, "little", signed=signed)

    def put(self) -> None:
        if not self.chance(0.4):
            return
        index = self.next_memo
        if self.chance(0.003):
            index = self.rng.choice([index + 1, index + 2, 0, 2**31 - 1, 175404917])
        if self.protocol >= 4 and index == self.next_memo and self.chance(0.5):
            self.out += b"\x94"
        elif self.protocol == 0:
            self.out += b"p%d\n" % index
        elif index < 256:
            self.out += b"q" + bytes([index])
        else:
            self.out += b"r" + index.to_bytes(4, "little")
        self.stored.append(index)
        self.next_memo = max(self.next_memo, index + 1)

    def get(self) -> bool:
        if not self.stored:
            return False
        index = self.rng.choice(self.stored)
        if self.protocol == 0:
            self.out += b"g%d\n" % index
        elif index < 256:
            self.out += b"h" + bytes([index])
        else:
            self.out += b"j" + index.to_bytes(4, "little")
        return True

    def junk(self) -> None:
        if self.chance(0.005):
            codes = [b"0", b"1", b"2", b"(", b"b", b"R", b"a", b"e", b"t", b".", b")", b"]"]
            self.out += self.rng.choice([*codes, bytes([self.rng.randrange(256)])])

    # -- values ----------------------------------------------------------------------------
    def none(self) -> None:
        self.out += b"N"

    def boolean(self, value: bool | None = None) -> None:
        value = self.chance(0.5) if value is None else value
        if self.protocol >= 2 and self.chance(0.8):
            self.out += b"\x88" if value else b"\x89"
        else:
            self.out += b"I01\n" if value else b"I00\n"

    def integer(self, value: int | None = None) -> None:
        if value is None:
            value = self.rng.choice(INTERESTING + [self.rng.randrange(-300, 70000)])
        form = self.rng.randrange(6)
        if form == 0 and 0 <= value < 256 and self.protocol >= 1:
            self.out += b"K" + bytes([value])
        elif form == 1 and 0 <= value < 65536 and self.protocol >= 1:
            self.out += b"M" + value.to_bytes(2, "little")
        elif form == 2 and -(2**31) <= value < 2**31 and self.protocol >= 1:
            self.out += b"J" + value.to_bytes(4, "little", signed=True)
        elif form == 3 and self.protocol >= 2:
            raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            if len(raw) < 256:
                self.out += b"\x8a" + self.size(len(raw), 1) + raw
            else:
                self.out += b"\x8b" + self.size(len(raw), 4, signed=True) + raw
        elif form == 4:
            self.out += b"L%dL\n" % value
        else:
            self.out += b"I%d\n" % value

    def text(self, value: str | None = None) -> None:
        if value is None:
            words = ["latin1", "latin-1", "b", "|", "<", ">", "C", "F", "u1", "\xe9\xff", "\u20ac"]
            value = self.rng.choice([*words, "x" * self.rng.randrange(300)])
        raw = value.encode("utf-8", "surrogatepass")
        form = self.rng.randrange(4)
        if form == 0 and self.protocol >= 4 and len(raw) < 256:
            self.out += b"\x8c" + self.size(len(raw), 1) + raw
        elif form == 1 and self.protocol >= 4:
            self.out += b"\x8d" + self.size(len(raw), 8) + raw
        elif self.protocol >= 1 and form != 3:
            self.out += b"X" + self.size(len(raw), 4) + raw
        else:
            escaped = value.encode("raw-unicode-escape").replace(b"\\", b"\\u005c")
            self.out += b"V" + escaped.replace(b"\n", b"\\u000a") + b"\n"
        self.put()

    def raw_bytes(self, value: bytes | None = None) -> None:
        if value is None:
            value = self.rng.randbytes(self.rng.choice([0, 1, 2, 4, 8, 16, 100, 300]))
        form = self.rng.randrange(8)
        if form == 0 and self.protocol >= 3 and len(value) < 256:
            self.out += b"C" + self.size(len(value), 1) + value
        elif form == 1 and self.protocol >= 3:
            self.out += b"B" + self.size(len(value), 4) + value
        elif form == 2 and self.protocol >= 4:
            self.out += b"\x8e" + self.size(len(value), 8) + value
        elif form == 3 and self.protocol >= 5:
            self.out += b"\x96" + self.size(len(value), 8) + value
        elif form == 4 and self.protocol >= 1:
            if len(value) < 256:
                self.out += b"U" + self.size(len(value), 1) + value
            else:
                self.out += b"T" + self.size(len(value), 4, signed=True) + value
        elif form == 5:
            self.out += b"S" + repr(value)[1:].encode("ascii") + b"\n"
        elif form == 6 and not value:
            self.glob(("builtins", "bytes"))
            self.tuple_of([])
            self.out += b"R"
        else:  # _codecs.encode(text, 'latin1'): Python 3 at protocols 0 to 2
            self.glob(("_codecs", "encode"))
            self.out += b"("
            self.text(value.decode("latin1"))
            self.text("latin1" if self.chance(0.98) else self.rng.choice(["utf-8", "latin-1"]))
            self.out += b"t"
            self.out += b"R"
        self.put()

    def glob(self, name: tuple[str, str] | None = None) -> None:
        if name is None:
            pool = ALLOWED_GLOBALS if self.chance(0.9) else OTHER_GLOBALS
            name = self.rng.choice(pool)
        if self.protocol >= 4 and self.chance(0.5):
            self.text(name[0])
            self.text(name[1])
            self.out += b"\x93"
        else:
            self.out += f"c{name[0]}\n{name[1]}\n".encode()
        self.put()

    def tuple_of(self, items: list) -> None:
        """A tuple of ``items`` (callables that write one value each)."""
        if not items and self.chance(0.8):
            self.out += b")"
        elif 1 <= len(items) <= 3 and self.protocol >= 2 and self.chance(0.7):
            for item in items:
                item()
            self.out += b"\x85\x86\x87"[len(items) - 1 : len(items)]
        else:
            self.out += b"("
            for item in items:
                item()
            self.out += b"t"
        self.put()

    def list_of(self, items: list) -> None:
        form = self.rng.randrange(3)
        if form == 0 or self.protocol == 0:
            self.out += b"(" if self.protocol == 0 else b"]"
            if self.protocol == 0:
                for item in items:
                    item()
                self.out += b"l"
            else:
                self.put()
                for item in items:
                    item()
                    self.out += b"a"
        else:
            self.out += b"]"
            self.put()
            self.out += b"("
            for item in items:
                item()
                self.junk()
            self.out += b"e"
        self.put()

    def pick_dtype(self) -> tuple[str, int]:
        """A dtype spec (now and then one that is not allowed) and its item size."""
        spec = self.rng.choice(DTYPES if self.chance(0.97) else BAD_DTYPES)
        try:
            return spec, np.dtype(spec).itemsize
        except TypeError:
            return spec, 1

    def dtype(self, spec: str | None = None) -> None:
        if spec is None and self.chance(0.3) and self.get():
            return
        spec = spec or self.pick_dtype()[0]
        self.glob(("numpy", "dtype"))

        def align() -> None:
            if self.chance(0.9):
                self.boolean(False)
            else:
                self.integer(self.rng.choice([0, 1, 2]))

        self.tuple_of([lambda: self.text(spec), align, lambda: self.boolean(True)])
        self.out += b"R"
        self.put()
        order = "|" if spec in ("b1", "i1", "u1") else "<"
        if self.chance(0.03):
            order = self.rng.choice(["<", ">", "|", "=", "", "<<"])
        state = [lambda: self.integer(3), lambda: self.text(order), self.none, self.none,
                 self.none, lambda: self.integer(-1), lambda: self.integer(-1),
                 lambda: self.integer(0)]  # fmt: skip
        if self.chance(0.03):
            state[self.rng.randrange(len(state))] = self.value
        self.tuple_of(state)
        self.out += b"b"

    def shape_and_data(self, dtype_bytes: int = 1) -> tuple[tuple, bytes]:
        ndim = self.rng.choice([0, 1, 1, 1, 2, 3])
        shape = tuple(self.rng.choice([0, 1, 2, 3, 5]) for _ in range(ndim))
        count = int(np.prod(shape)) if shape else 1
        data = self.rng.randbytes(count * dtype_bytes)
        if self.chance(0.05):
            shape = tuple(self.rng.choice(INTERESTING) for _ in range(ndim or 1))
        return shape, data

    def array(self) -> None:
        spec, itemsize = self.pick_dtype()
        shape, data = self.shape_and_data(itemsize)
        if spec == "b1" and self.chance(0.95):
            data = bytes(b & 1 for b in data)
        dtype = lambda: self.dtype(spec)  # noqa: E731
        shape_writer = lambda: self.tuple_of([lambda n=n: self.integer(n) for n in shape])  # noqa: E731
        if self.protocol >= 5 and self.chance(0.5):
            self.glob(("numpy._core.numeric", "_frombuffer"))
            self.tuple_of([lambda: self.raw_bytes(data), dtype, shape_writer,
                           lambda: self.text(self.rng.choice(["C", "F", "C", "A"]))])  # fmt: skip
            self.out += b"R"
            self.put()
            return
        module = self.rng.choice(["numpy.core.multiarray", "numpy._core.multiarray"])
        self.glob((module, "_reconstruct"))
        self.tuple_of([lambda: self.glob(("numpy", "ndarray")),
                       lambda: self.tuple_of([lambda: self.integer(0)]),
                       lambda: self.raw_bytes(b"b")])  # fmt: skip
        self.out += b"R"
        self.put()
        fortran = self.chance(0.1)
        self.tuple_of([lambda: self.integer(1), shape_writer, dtype,
                       lambda: self.boolean(fortran), lambda: self.raw_bytes(data)])  # fmt: skip
        self.out += b"b"

    def scalar(self) -> None:
        self.glob(("numpy._core.multiarray", "scalar"))
        spec, size = self.pick_dtype()
        if self.chance(0.05):
            size = self.rng.choice([0, 1, 3, 16])
        data = bytes([self.rng.randrange(2)]) + bytes(max(size - 1, 0))
        self.tuple_of([lambda: self.dtype(spec), lambda: self.raw_bytes(data[:size])])
        self.out += b"R"
        self.put()

    def value(self, depth: int = 0) -> None:
        self.junk()
        kinds = ["none", "bool", "int", "text", "bytes", "array", "scalar", "dtype", "global",
                 "get", "list", "tuple", "reduce"]  # fmt: skip
        kind = self.rng.choice(kinds if depth < 4 else kinds[:-3])
        if kind == "get" and self.get():
            return
        if kind == "list":
            self.list_of([lambda: self.value(depth + 1)] * self.rng.randrange(4))
        elif kind == "tuple":
            self.tuple_of([lambda: self.value(depth + 1)] * self.rng.randrange(4))
        elif kind == "reduce":
            self.glob()
            self.tuple_of([lambda: self.value(depth + 1)] * self.rng.randrange(4))
            self.out += b"R"
        else:
            {"none": self.none, "bool": self.boolean, "int": self.integer, "text": self.text,
             "bytes": self.raw_bytes, "array": self.array, "scalar": self.scalar,
             "dtype": self.dtype, "global": self.glob, "get": self.none}[kind]()  # fmt: skip

    def flags(self) -> None:
        form = self.rng.randrange(5)
        n = self.rng.randrange(4)
        if form == 0:
            self.list_of([self.boolean] * n)
        elif form == 1:
            self.list_of([self.scalar] * n)
        elif form == 2:
            self.array()
        elif form == 3:  # nested
            depth = self.rng.choice([2, 5, 31, 32, 33, 40])
            for _ in range(depth):
                self.out += b"]"
            self.boolean()
            self.out += b"a" * depth
        else:
            self.value()

    def image(self) -> None:
        if self.chance(0.7):
            self.raw_bytes(b"\x89PNG" + self.rng.randbytes(self.rng.randrange(40)))
        elif self.chance(0.5):
            self.array()
        else:
            self.value(2)

    def bin_file(self) -> None:
        n = self.rng.randrange(4)
        self.tuple_of([lambda: self.list_of([self.image] * (2 * n)), self.flags])


def structured(rng: random.Random) -> bytes:
    protocol = rng.choice([0, 1, 2, 2, 3, 4, 4, 5, 5])
    writer = _Writer(rng, protocol)
    if protocol >= 2:
        writer.out += b"\x80" + bytes([protocol])
    frame_at = len(writer.out)
    if rng.random() < 0.8:
        writer.bin_file()
    else:
        writer.value()
    writer.out += b"."
    data = bytes(writer.out)
    if protocol >= 4 and rng.random() < 0.5:
        size = len(data) - frame_at if rng.random() < 0.95 else rng.choice(INTERESTING[5:])
        data = data[:frame_at] + b"\x95" + (size % 2**64).to_bytes(8, "little") + data[frame_at:]
    if rng.random() < 0.05:
        data = data[: rng.randrange(len(data) + 1)]
    return data


def valid_bin(rng: random.Random) -> bytes:
    """A valid ``.bin`` pickle of random contents and protocol."""
    n = rng.randrange(1, 4)
    images = [b"\x89PNG" + rng.randbytes(rng.randrange(30)) for _ in range(2 * n)]
    bins = [
        img if rng.random() < 0.6 else np.frombuffer(img, dtype=np.uint8).copy() for img in images
    ]
    flags = [rng.random() < 0.5 for _ in range(n)]
    issame = rng.choice([flags, [np.bool_(f) for f in flags], np.array(flags)])
    return pickle.dumps((bins, issame), protocol=rng.randrange(6))


def mutated(rng: random.Random) -> bytes:
    data = bytearray(valid_bin(rng))
    for _ in range(rng.choice([1, 1, 2, 3, 8])):
        where = rng.randrange(len(data))
        kind = rng.randrange(6)
        if kind == 0:
            data[where] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[where] = rng.randrange(256)
        elif kind == 2:
            data[where:where] = rng.randbytes(rng.randrange(1, 9))
        elif kind == 3:
            del data[where : where + rng.randrange(1, 9)]
        elif kind == 4:
            width = rng.choice([1, 2, 4, 8])
            value = rng.choice(INTERESTING) % 2 ** (8 * width)
            data[where : where + width] = value.to_bytes(width, "little")
        else:
            start = rng.randrange(len(data))
            data[where:where] = data[start : start + rng.randrange(1, 40)]
    return bytes(data)


def amplifier(rng: random.Random) -> bytes:
    """A larger file made to build far more than its size, if anything let it."""
    n = rng.choice([1000, 5000, 30_000])
    kind = rng.randrange(9)
    head = b"\x80\x04"
    if kind == 0:  # one text encoded n times through the memo
        text = ("\xe9" * rng.choice([100, 10_000])).encode()
        body = b"c_codecs\nencode\nq\x00X" + len(text).to_bytes(4, "little") + text
        body += b"q\x01X\x06\x00\x00\x00latin1q\x02](" + b"h\x00h\x01h\x02\x86R" * n + b"e"
    elif kind == 1:
        body = b"(" + b"]" * n + b"l"
    elif kind == 2:
        body = b"(" * n + b"N"
    elif kind == 3:
        body = b"(N" + b"2" * n + b"t"
    elif kind == 4:
        body = b"N" + b"\x94" * n
    elif kind == 5:
        body = b"(" + b"M\xff\xff" * n + b"t"
    elif kind == 6:  # one bytes object, n references, copied by bytearray() each time
        body = (b"C\xff" + b"x" * 255 + b"\x94c__builtin__\nbytearray\n\x94]("
                + b"h\x01h\x00\x85R" * n + b"e")  # fmt: skip
    elif kind == 7:  # memo indices skipping one slot each time
        body = b"N" + b"".join(b"r" + (2 * i + 1).to_bytes(4, "little") for i in range(n))
    else:  # n arrays viewing one buffer
        body = (b"\x8c\x13numpy._core.numeric\x8c\x0b_frombuffer\x93\x94C\x08abcdefgh\x94"
                b"\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02u1\x89\x88\x87R(K\x03\x8c\x01|NNNJ"
                b"\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x94K\x08\x85\x94\x8c\x01C\x94]("
                + b"h\x00(h\x01h\x02h\x03h\x04tR" * n + b"e")  # fmt: skip
    return head + body + b"."


def make_input(seed: int, index: int) -> bytes:
    """Input ``index`` of the run ``seed``: structured (55%), a mutated valid file (40%), an
    amplifier (5%)."""
    rng = random.Random(seed * 1_000_003 + index)
    pick = rng.random()
    if pick < 0.55:
        return structured(rng)
    if pick < 0.95:
        return mutated(rng)
    return amplifier(rng)
