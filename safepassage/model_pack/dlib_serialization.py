"""A reader of dlib's serialization format (dlib/serialize.h, dlib/float_details.h).

Pure Python over a bytes buffer; every read advances a cursor, so a parser can
prove it consumed the whole file (`Reader.expect_end`).

- integers of every width: a control byte (low 4 bits = byte count N, bit 0x80
  = negative), then N bytes of magnitude, little-endian; zero is ``01 00``;
- strings: an integer length, then the bytes;
- bool: one ASCII byte, ``'1'`` or ``'0'``;
- float/double: mantissa (int64) then exponent (int16), both dlib integers;
  value = mantissa * 2**exponent; exponents 32000/32001/32002 mean +inf, -inf, NaN;
- matrix<T>: int -rows, int -columns (stored negated), then elements;
- resizable_tensor: int version (2), n, k, nr, nc, then raw little-endian float32;
- alias_tensor: int version (1), n, k, nr, nc (no data: a view into a params tensor).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from safepassage.model_pack.errors import ModelFormatError

_SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


class Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data = memoryview(data)
        self.name = name
        self.position = 0

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.name}: {what} at byte {self.position}")

    def take(self, count: int) -> memoryview:
        if count < 0 or self.position + count > len(self.data):
            raise self.fail(f"needs {count} more bytes, the file ends")
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def integer(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def expect_integer(self, expected: int, what: str) -> None:
        found = self.integer()
        if found != expected:
            raise self.fail(f"{what} is {found}, expected {expected}")

    def boolean(self) -> bool:
        byte = bytes(self.take(1))
        if byte not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {byte!r}")
        return byte == b"1"

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        if exponent in _SPECIAL_EXPONENTS:
            return _SPECIAL_EXPONENTS[exponent]
        return math.ldexp(float(mantissa), exponent)

    def string(self) -> str:
        length = self.integer()
        return bytes(self.take(length)).decode("latin-1")

    def expect_string(self, expected: str) -> None:
        found = self.string()
        if found != expected:
            raise self.fail(f"found {found!r}, expected {expected!r}")

    def float32_block(self, count: int) -> npt.NDArray[np.float32]:
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32)

    def tensor(self) -> npt.NDArray[np.float32]:
        """resizable_tensor: version 2, n, k, nr, nc, then n*k*nr*nc float32 (NCHW)."""
        self.expect_integer(2, "tensor version")
        shape = tuple(self.integer() for _ in range(4))
        if any(s < 0 for s in shape):
            raise self.fail(f"negative tensor shape {shape}")
        return self.float32_block(int(np.prod(shape))).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """alias_tensor: version 1, then n, k, nr, nc: the shape of a view into a layer's params."""
        self.expect_integer(1, "alias_tensor version")
        shape = (self.integer(), self.integer(), self.integer(), self.integer())
        if any(s < 0 for s in shape):
            raise self.fail(f"negative alias_tensor shape {shape}")
        return shape

    def matrix(self) -> npt.NDArray[np.float64]:
        """matrix<float or double>: -rows, -columns, then elements as dlib reals, row-major."""
        rows, columns = -self.integer(), -self.integer()
        if rows < 0 or columns < 0:
            raise self.fail(f"bad matrix size {rows}x{columns}")
        return np.array([self.real() for _ in range(rows * columns)], dtype=np.float64).reshape(rows, columns)

    def integers(self, count: int) -> list[int]:
        """`count` consecutive dlib integers, decoded in one tight loop (for bulk data)."""
        data = self.data
        end = len(data)
        position = self.position
        if count < 0 or count > end - position:  # every integer takes at least one byte
            raise self.fail(f"needs {count} more integers, the file ends")
        values = [0] * count
        for i in range(count):
            if position >= end:
                self.position = position
                raise self.fail("needs 1 more byte, the file ends")
            control = data[position]
            size = control & 0x0F
            if size > 8 or control & 0x70:
                self.position = position
                raise self.fail(f"bad integer control byte 0x{control:02x}")
            start = position + 1
            position = start + size
            if position > end:
                self.position = start
                raise self.fail(f"needs {size} more bytes, the file ends")
            value = data[start] if size == 1 else int.from_bytes(data[start:position], "little")
            values[i] = -value if control & 0x80 else value
        self.position = position
        return values

    def peek_integer(self) -> int:
        """The next dlib integer, without consuming it."""
        position = self.position
        try:
            return self.integer()
        finally:
            self.position = position

    def expect_end(self) -> None:
        if self.position != len(self.data):
            raise self.fail(f"{len(self.data) - self.position} bytes left unread")
