"""Reading CFF (PostScript-flavoured OpenType) outlines straight from the font's bytes.

One job: answer "does this CFF glyph have a path?" without fontTools: ``CffIndex`` walks a CFF
INDEX, ``cff_dict_charstrings`` finds the CharStrings in the Top DICT, and ``t2_draws`` scans a
Type 2 charstring for a drawing operator.
"""

from __future__ import annotations

import mmap
import struct

# Type 2 charstring operators that draw (lines, curves, flex) or may draw (subroutine calls).
_T2_DRAW = frozenset({5, 6, 7, 8, 10, 24, 25, 26, 27, 29, 30, 31})
_T2_STEMS = frozenset({1, 3, 18, 23})


def t2_draws(cs: bytes) -> bool:
    """Whether a Type 2 charstring has a path (an empty glyph is just ``[width] endchar``)."""
    i, n, stack, stems = 0, len(cs), 0, 0
    while i < n:
        b = cs[i]
        if b >= 32 or b == 28:
            i += 1 if b <= 246 else 2 if b <= 254 else 5
            i += 2 if b == 28 else 0
            stack += 1
            continue
        i += 1
        if b == 12:  # two-byte operators: flex draws, the rest are arithmetic
            if i < n and cs[i] in (34, 35, 36, 37):
                return True
            i += 1
            stack = 0
        elif b in _T2_DRAW:
            return True
        elif b in _T2_STEMS:
            stems += stack // 2
            stack = 0
        elif b in (19, 20):  # hintmask/cntrmask: pending args are an implicit vstem, then mask bytes
            stems += stack // 2
            i += (stems + 7) // 8
            stack = 0
        elif b == 14:  # endchar; 4 arguments (5 with a width) = seac, an accented composite
            return stack >= 4
        else:
            stack = 0
    return False


def cff_dict_charstrings(d: bytes) -> int | None:
    """The CharStrings offset (operator 17) of a CFF Top DICT."""
    i, operands = 0, list[float]()
    while i < len(d):
        b = d[i]
        if b <= 21:
            op = (1200 + d[i + 1]) if b == 12 else b
            i += 2 if b == 12 else 1
            if op == 17 and operands:
                return int(operands[-1])
            operands = []
            continue
        value, i = _dict_operand(d, i)
        if value is not None:
            operands.append(value)
    return None


def _dict_operand(d: bytes, i: int) -> tuple[float | None, int]:
    """The DICT operand starting at ``d[i]`` (None for a reserved byte) and where the next starts."""
    b = d[i]
    if b == 28:
        return struct.unpack_from(">h", d, i + 1)[0], i + 3
    if b == 29:
        return struct.unpack_from(">i", d, i + 1)[0], i + 5
    if b == 30:  # real number: skip nibbles up to the 0xf terminator
        i += 1
        while i < len(d) and (d[i] & 0x0F) != 0x0F and (d[i] >> 4) != 0x0F:
            i += 1
        return 0, i + 1
    if 32 <= b <= 246:
        return b - 139, i + 1
    if 247 <= b <= 250:
        return (b - 247) * 256 + d[i + 1] + 108, i + 2
    if 251 <= b <= 254:
        return -(b - 251) * 256 - d[i + 1] - 108, i + 2
    return None, i + 1


class CffIndex:
    """A CFF INDEX: count, then the byte range of entry ``k``."""

    def __init__(self, buf: mmap.mmap | bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.count = struct.unpack_from(">H", buf, pos)[0]
        self.off_size = buf[pos + 2] if self.count else 0
        self.data = pos + 3 + (self.count + 1) * self.off_size - 1  # offsets are 1-based

    def _off(self, k: int) -> int:
        p = self.pos + 3 + k * self.off_size
        return int.from_bytes(self.buf[p:p + self.off_size], "big")

    def item(self, k: int) -> tuple[int, int]:
        return self.data + self._off(k), self.data + self._off(k + 1)

    def end(self) -> int:
        return self.pos + 2 if not self.count else self.data + self._off(self.count)
