"""Plain-Python reference of the log engine (native/src/logengine.c, multimatch.c).

Written from the contract in native/include/prts/logengine.h, not from the C code, and
slow on purpose: the whole input is decoded at once with Python's own UTF-8 decoder, each
code point goes through an explicit terminal state machine, a line is a bytearray with a
style per byte, and masking finds every occurrence of every pattern with bytes.find. The C
engine, fed the same bytes in any chunk split, must produce exactly the same text, line
starts and style runs. It lives in tests/ and is never imported by the product.
"""

from __future__ import annotations

MAX_SEQUENCE = 4096  # code points an escape sequence may take before it is abandoned
MASK = b"[MASKED]"
REPLACEMENT = "\ufffd"

PALETTE = 0x1000000
RGB = 0x2000000
BOLD, DIM, ITALIC, UNDERLINE, INVERSE, STRIKE = 1, 2, 4, 8, 16, 32

DEFAULT_STYLE = (0, 0, 0)  # (fg, bg, flags)

GROUND, ESCAPE, ESCAPE_INTERMEDIATE, CSI, OSC, STRING = range(6)

# A number too large for any SGR code or colour component; what a parameter that is not a
# plain number (it has sub-parameters) counts as where a plain number is needed.
NOT_A_NUMBER = 1 << 20


def sgr_number(text: str) -> int:
    """An SGR (sub-)parameter: empty is 0, digits saturate at 65535."""
    if ":" in text:
        return NOT_A_NUMBER
    digits = text.lstrip("0")
    if len(digits) > 5:
        return 65535
    return min(int(digits or "0"), 65535)


def apply_sgr(style: tuple[int, int, int], params: str) -> tuple[int, int, int]:
    """The style after ``CSI params m``; params holds only digits, ';' and ':'."""
    fg, bg, flags = style
    items = params.split(";")
    i = 0
    while i < len(items):
        item = items[i]
        if ":" in item:
            fg, bg, flags = _apply_colon(item.split(":"), fg, bg, flags)
            i += 1
            continue
        n = sgr_number(item)
        if n in (38, 48):
            selector = sgr_number(items[i + 1]) if i + 1 < len(items) else None
            if selector == 5:
                if i + 2 >= len(items):
                    break
                index = sgr_number(items[i + 2])
                if index <= 255:
                    fg, bg = (PALETTE | index, bg) if n == 38 else (fg, PALETTE | index)
                i += 3
            elif selector == 2:
                if i + 4 >= len(items):
                    break
                r, g, b = (sgr_number(x) for x in items[i + 2 : i + 5])
                if max(r, g, b) <= 255:
                    colour = RGB | r << 16 | g << 8 | b
                    fg, bg = (colour, bg) if n == 38 else (fg, colour)
                i += 5
            else:
                i += 1
            continue
        fg, bg, flags = _apply_code(n, fg, bg, flags)
        i += 1
    return fg, bg, flags


def _apply_code(n: int, fg: int, bg: int, flags: int) -> tuple[int, int, int]:
    if n == 0:
        return DEFAULT_STYLE
    on = {1: BOLD, 2: DIM, 3: ITALIC, 4: UNDERLINE, 7: INVERSE, 9: STRIKE}
    off = {22: BOLD | DIM, 23: ITALIC, 24: UNDERLINE, 27: INVERSE, 29: STRIKE}
    if n in on:
        flags |= on[n]
    elif n in off:
        flags &= ~off[n]
    elif 30 <= n <= 37:
        fg = PALETTE | (n - 30)
    elif 90 <= n <= 97:
        fg = PALETTE | (n - 90 + 8)
    elif n == 39:
        fg = 0
    elif 40 <= n <= 47:
        bg = PALETTE | (n - 40)
    elif 100 <= n <= 107:
        bg = PALETTE | (n - 100 + 8)
    elif n == 49:
        bg = 0
    return fg, bg, flags


def _apply_colon(subs: list[str], fg: int, bg: int, flags: int) -> tuple[int, int, int]:
    values = [sgr_number(s) for s in subs]
    first = values[0]
    if first in (38, 48) and len(values) >= 3:
        colour = None
        if values[1] == 5:
            if values[2] <= 255:
                colour = PALETTE | values[2]
        elif values[1] == 2 and len(values) >= 5:
            r, g, b = values[3:6] if len(values) >= 6 else values[2:5]
            if max(r, g, b) <= 255:
                colour = RGB | r << 16 | g << 8 | b
        if colour is not None:
            if first == 38:
                fg = colour
            else:
                bg = colour
    elif first == 4 and len(values) >= 2:
        if values[1] == 0:
            flags &= ~UNDERLINE
        elif 1 <= values[1] <= 5:
            flags |= UNDERLINE
    return fg, bg, flags


def is_visible(ch: str) -> bool:
    c = ord(ch)
    return ch == "\t" or (c >= 0x20 and not 0x7F <= c <= 0x9F)


class ReferenceLogEngine:
    """Run ``process(data)`` once; it returns (text, line_starts, runs)."""

    def __init__(self, patterns=(), max_line: int = 1 << 20) -> None:
        self.patterns = [bytes(p) for p in patterns]
        self.hold = max((len(p) for p in self.patterns), default=1) - 1
        self.max_line = max_line

    def process(self, data: bytes) -> tuple[bytes, list[int], list[tuple[int, int, int, int, int]]]:
        self.out = bytearray()
        self.starts: list[int] = []
        self.runs: list[list[int]] = []
        self.line = bytearray()
        self.styles: list[tuple[int, int, int]] = []  # one per byte of self.line
        self.premask = 0  # leading bytes of self.line known to be masked
        self.style = DEFAULT_STYLE
        self.state = GROUND
        self.seq_len = 0
        self.params = ""
        self.intermediate = False
        self.cr = False
        for ch in bytes(data).decode("utf-8", "replace"):
            self.char(ch)
        # At the end of the stream an unfinished escape sequence is dropped and a pending
        # '\r' erases nothing (a terminal would still show the text).
        if self.line:
            self.end_line()
        return bytes(self.out), self.starts, [tuple(r) for r in self.runs]

    # -- terminal ----------------------------------------------------------------------

    def char(self, ch: str) -> None:
        c = ord(ch)
        if self.state == GROUND:
            self.ground(ch)
            return
        if ch == "\x1b":
            self.state, self.seq_len = ESCAPE, 1
            return
        if self.state == ESCAPE:
            if ch == "[":
                self.state, self.params, self.intermediate = CSI, "", False
            elif ch == "]":
                self.state = OSC
            elif ch in "PX^_":
                self.state = STRING
            elif 0x20 <= c <= 0x2F:
                self.state = ESCAPE_INTERMEDIATE
            elif 0x30 <= c <= 0x7E:
                self.state = GROUND
                return
            else:
                self.abort(ch)
                return
        elif self.state == ESCAPE_INTERMEDIATE:
            if 0x30 <= c <= 0x7E:
                self.state = GROUND
                return
            if not 0x20 <= c <= 0x2F:
                self.abort(ch)
                return
        elif self.state == CSI:
            if 0x30 <= c <= 0x3F:
                if not self.intermediate:
                    self.params += ch
            elif 0x20 <= c <= 0x2F:
                self.intermediate = True
            elif 0x40 <= c <= 0x7E:
                self.state = GROUND
                if ch == "m" and not self.intermediate and not any(m in self.params for m in "<=>?"):
                    self.style = apply_sgr(self.style, self.params)
                return
            else:
                self.abort(ch)
                return
        else:  # OSC or STRING
            if ch == "\x07" and self.state == OSC:
                self.state = GROUND
                return
            if ch == "\n":
                self.abort(ch)
                return
        self.seq_len += 1
        if self.seq_len >= MAX_SEQUENCE:
            self.state = GROUND

    def abort(self, ch: str) -> None:
        """Drop the sequence so far and read ``ch`` as text."""
        self.state = GROUND
        self.ground(ch)

    def ground(self, ch: str) -> None:
        if ch == "\n":
            self.cr = False
            self.end_line()
            return
        if ch == "\r":
            self.cr = True
            return
        if self.cr:
            self.cr = False
            self.line.clear()
            self.styles.clear()
            self.premask = 0
        if ch == "\x1b":
            self.state, self.seq_len = ESCAPE, 1
        elif is_visible(ch):
            self.append(ch.encode())

    # -- lines -------------------------------------------------------------------------

    def append(self, encoded: bytes) -> None:
        if len(self.line) + len(encoded) > self.max_line:
            self.force_break()
        self.line += encoded
        self.styles += [self.style] * len(encoded)

    def masked(self) -> list[bool]:
        flags = [i < self.premask for i in range(len(self.line))]
        for pattern in self.patterns:
            at = self.line.find(pattern)
            while at >= 0:
                flags[at : at + len(pattern)] = [True] * len(pattern)
                at = self.line.find(pattern, at + 1)
        return flags

    def end_line(self) -> None:
        self.write_line(bytes(self.line), self.styles, self.masked())
        self.line.clear()
        self.styles.clear()
        self.premask = 0

    def force_break(self) -> None:
        """Emit all but the last ``hold`` bytes (a match may still start there), backed off
        to a code point boundary; a masked run the cut splits stays masked on both sides."""
        flags = self.masked()
        cut = len(self.line) - self.hold
        while 0 < cut < len(self.line) and self.line[cut] & 0xC0 == 0x80:
            cut -= 1
        carried = 0
        if 0 < cut and flags[cut - 1]:
            while cut + carried < len(self.line) and flags[cut + carried]:
                carried += 1
        self.write_line(bytes(self.line[:cut]), self.styles[:cut], flags[:cut])
        del self.line[:cut]
        del self.styles[:cut]
        self.premask = carried

    def write_line(self, text: bytes, styles: list, flags: list[bool]) -> None:
        self.starts.append(len(self.out))
        i = 0
        while i < len(text):
            if flags[i]:
                j = i
                while j < len(text) and flags[j]:
                    j += 1
                self.put(MASK, styles[i])
                i = j
            else:
                self.put(text[i : i + 1], styles[i])
                i += 1
        self.out += b"\n"

    def put(self, data: bytes, style: tuple[int, int, int]) -> None:
        start = len(self.out)
        self.out += data
        if style == DEFAULT_STYLE:
            return
        last = self.runs[-1] if self.runs else None
        if last and last[0] + last[1] == start and tuple(last[2:]) == style:
            last[1] += len(data)
        else:
            self.runs.append([start, len(data), *style])


def reference_process(data: bytes, patterns=(), max_line: int = 1 << 20):
    return ReferenceLogEngine(patterns, max_line).process(data)
