"""Log lines as HTML: escaped text in ``<span class="...">`` runs, nothing else.

The log engine has already turned terminal escapes into style runs (see
native/include/prts/logengine.h); this module only chooses CSS classes for them. The only
markup it writes is ``<span class="ansi-...">`` with class names made from integers, so no
byte of a job's output can become an attribute, a tag or an ``hx-*`` instruction.

Colours map onto the 16 basic terminal colours, ``ansi-fg-0`` .. ``ansi-fg-15`` and
``ansi-bg-0`` .. ``ansi-bg-15``, whose shades the stylesheet picks (the "log viewer" part
of webapp/static/css/prts.css: one palette, readable on the log pane, which is dark in
both themes). A 256-palette index above 15 and a 24-bit RGB colour become the nearest
basic colour (Euclidean distance in the xterm palette's RGB space). Inverse swaps foreground and background; a default colour swapped in becomes
``ansi-fg-bg`` (text in the log's background colour) or ``ansi-bg-fg`` (background in
the log's text colour). Flags become ``ansi-bold``, ``ansi-dim``, ``ansi-italic``,
``ansi-underline``, ``ansi-strike``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from markupsafe import Markup, escape

from appliance._native import lib

COLOR_PALETTE = lib.PRTS_LOG_COLOR_PALETTE
COLOR_RGB = lib.PRTS_LOG_COLOR_RGB
BOLD, DIM, ITALIC = lib.PRTS_LOG_BOLD, lib.PRTS_LOG_DIM, lib.PRTS_LOG_ITALIC
UNDERLINE, INVERSE, STRIKE = lib.PRTS_LOG_UNDERLINE, lib.PRTS_LOG_INVERSE, lib.PRTS_LOG_STRIKE

_FLAG_CLASSES = ((BOLD, "ansi-bold"), (DIM, "ansi-dim"), (ITALIC, "ansi-italic"), (UNDERLINE, "ansi-underline"),
                 (STRIKE, "ansi-strike"))

# xterm's default RGB values of the 16 basic colours, only used to find the nearest one.
_BASIC_RGB = (
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205), (0, 205, 205), (229, 229, 229),
    (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0), (92, 92, 255), (255, 0, 255), (0, 255, 255),
    (255, 255, 255),
)
_CUBE = (0, 95, 135, 175, 215, 255)


def _palette_rgb(index: int) -> tuple[int, int, int]:
    if index < 16:
        return _BASIC_RGB[index]
    if index < 232:
        n = index - 16
        return _CUBE[n // 36], _CUBE[n // 6 % 6], _CUBE[n % 6]
    grey = 8 + 10 * (index - 232)
    return grey, grey, grey


@functools.lru_cache(maxsize=4096)
def nearest_basic(r: int, g: int, b: int) -> int:
    """The index (0..15) of the basic colour nearest to an RGB colour."""
    return min(range(16), key=lambda i: (_BASIC_RGB[i][0] - r) ** 2 + (_BASIC_RGB[i][1] - g) ** 2
               + (_BASIC_RGB[i][2] - b) ** 2)


PALETTE_TO_BASIC = tuple(i if i < 16 else nearest_basic(*_palette_rgb(i)) for i in range(256))


def basic_colour(value: int) -> int | None:
    """The basic colour index (0..15) a log engine colour is shown as; None for the default."""
    if value & COLOR_PALETTE:
        return PALETTE_TO_BASIC[value & 0xFF]
    if value & COLOR_RGB:
        return nearest_basic((value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF)
    return None


@functools.lru_cache(maxsize=4096)
def style_classes(fg: int, bg: int, flags: int) -> str:
    """The CSS classes of one style run, e.g. ``"ansi-fg-1 ansi-bold"``."""
    fg_class = bg_class = None
    fg_index, bg_index = basic_colour(fg), basic_colour(bg)
    if flags & INVERSE:
        fg_class = f"ansi-fg-{bg_index}" if bg_index is not None else "ansi-fg-bg"
        bg_class = f"ansi-bg-{fg_index}" if fg_index is not None else "ansi-bg-fg"
    else:
        if fg_index is not None:
            fg_class = f"ansi-fg-{fg_index}"
        if bg_index is not None:
            bg_class = f"ansi-bg-{bg_index}"
    classes = [c for c in (fg_class, bg_class) if c]
    classes += [name for flag, name in _FLAG_CLASSES if flags & flag]
    return " ".join(classes)


def render_line(text: str, runs: Iterable[Sequence[int]] = ()) -> Markup:
    """One log line as safe HTML: ``text`` escaped, each style run ``(start, length, fg, bg,
    flags)`` (in characters of ``text``, sorted, not overlapping) wrapped in a span."""
    out = []
    pos = 0
    size = len(text)
    for run in runs:
        start, length, fg, bg, flags = (int(v) for v in run[:5])
        start = max(start, pos)
        end = min(start + max(length, 0), size)
        if start >= end:
            continue
        classes = style_classes(fg, bg, flags)
        if start > pos:
            out.append(str(escape(text[pos:start])))
        if classes:
            out.append(f'<span class="{classes}">{escape(text[start:end])}</span>')
        else:
            out.append(str(escape(text[start:end])))
        pos = end
    if pos < size:
        out.append(str(escape(text[pos:])))
    return Markup("".join(out))
