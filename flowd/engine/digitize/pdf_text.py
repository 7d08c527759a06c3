"""A PDF page's text layer → word boxes, built in-process from PDFium's character boxes.

Why not PDFium's plain text: it follows the content stream, which on real invoices puts the footer
first and glues a label to the value printed far to its right. Why not ``pdftotext -layout``: one
process per file is too slow for the hot path. So the words are cut here from the page's characters
and laid out by :mod:`flowd.engine.digitize.layout`.

Speed is the point of this module (it runs for every PDF page). The page text is fetched with one
call; words are the runs of non-blank characters in it (PDFium already inserts a space or line break
wherever glyphs are apart), and a run normally needs only the "loose" boxes (font ascent to descent,
so every glyph on a line has the same height) of its first and last character. Only a run whose two
ends disagree — a jump in height, a backward step, glyphs spread out, vertical text — is measured
char by char. PDFium is called through :mod:`.pdfium_plain` (typed ctypes bindings cost more than
the call), the rectangle buffer is bound once per page, and the loop spells out what it would
otherwise call per word (:meth:`PageFrame.to_display` and :meth:`PageFrame.contains`), with the
same arithmetic, so the boxes are the same to the last bit.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import pypdfium2.raw as pdfium_c

from flowd.engine.digitize import pdfium_plain as plain
from flowd.engine.digitize.frame import PageFrame
from flowd.engine.digitize.layout import Box

_WORD = re.compile(r"[^\s\x00-\x1f\x7f\ufffe\uffff]+")
"""A run of printable characters, a word candidate: blanks and PDFium's control marks split runs."""

_LIGATURES = {
    0xFB00: "ff",
    0xFB01: "fi",
    0xFB02: "fl",
    0xFB03: "ffi",
    0xFB04: "ffl",
    0xFB05: "st",
    0xFB06: "st",
}
"""Typographic ligatures are spelled out, so a formula looking for ``"Profit"`` finds it."""
_HAS_LIGATURE = re.compile("[\ufb00-\ufb06]")


class TextLayer(NamedTuple):
    """A page's words (displayed points, see :class:`PageFrame`) and how the page reads.

    ``turn`` is 0 when the text reads left to right, ``DOWNWARD`` or ``UPWARD`` when most of it runs
    vertically (a landscape table printed sideways on a portrait page without ``/Rotate``): then
    :func:`turn_boxes` turns the page so that it reads left to right. ``garbled`` says most of the
    characters have no Unicode meaning (fonts embedded without a ``/ToUnicode`` map): the text
    layer is glyph numbers, not text, and the page is better read by OCR.
    """

    boxes: list[Box]
    turn: int
    garbled: bool = False


DOWNWARD = 1
UPWARD = 2


def text_layer(textpage: Any, frame: PageFrame) -> TextLayer:
    """The words of one page's text layer; ``textpage`` is a PDFium text page handle."""
    count = pdfium_c.FPDFText_CountChars(textpage)
    if count <= 0:
        return TextLayer([], 0)
    chars = _page_chars(textpage, count)
    if _garbled(textpage, chars):
        return TextLayer([], 0, garbled=True)
    ligatures = _HAS_LIGATURE.search(chars) is not None
    char_box = _char_boxes(textpage, frame)  # for irregular runs; the usual two boxes inline:
    handle = plain.handle(textpage)
    rect = (ctypes.c_float * 4)()  # FS_RECTF: left, top, right, bottom
    values = memoryview(rect).cast("B").cast("f")
    get_box = plain.LOOSE_CHAR_BOX
    upright = frame.rotation == 0
    page_left, page_top, to_display = frame.left, frame.top, frame.to_display
    # frame.contains, spelled out: twice the centre of a box lies within twice the page
    width2, height2 = 2 * frame.width, 2 * frame.height
    boxes: list[Box] = []
    weight = [0, 0, 0]  # characters in horizontal, downward and upward runs (index: turn)
    regular = 0  # characters of the runs measured at their ends, added to weight[0] at the end

    for match in _WORD.finditer(chars):
        start, end = match.span()
        text = match[0]
        if ligatures:
            text = text.translate(_LIGATURES)
        get_box(handle, start, rect)
        left, top, right, bottom = values
        if upright:  # frame.to_display, spelled out for the usual page
            x0 = left - page_left
            y0 = page_top - top
            x1 = right - page_left
            y1 = page_top - bottom
        else:
            x0, y0, x1, y1 = to_display(left, bottom, right, top)
        height = y1 - y0
        if height < 0.01:  # a font without ascent/descent metrics (some Type 3 fonts)
            height = pdfium_c.FPDFText_GetFontSize(textpage, start) or 10.0
            y0 = y1 - height
        if end - start > 1:
            get_box(handle, end - 1, rect)
            left, top, right, bottom = values
            if upright:
                u0 = left - page_left
                v0 = page_top - top
                u1 = right - page_left
                v1 = page_top - bottom
            else:
                u0, v0, u1, v1 = to_display(left, bottom, right, top)
            if (
                u0 < x0 - 0.25 * height  # steps backwards
                or abs(v1 - y1) > 0.3 * height  # ends on another baseline: superscript, vertical
                or u1 - x0 > 1.2 * height * (end - start)  # glyphs spread out without a blank
            ):
                for word in _measured_run(char_box, start, end, text, weight):
                    if 0.0 <= word[1] + word[3] <= width2 and 0.0 <= word[2] + word[4] <= height2:
                        boxes.append(word)
                continue
            regular += end - start
            x1 = u1
            if v0 < y0:
                y0 = v0
            if v1 > y1:
                y1 = v1
        if 0.0 <= x0 + x1 <= width2 and 0.0 <= y0 + y1 <= height2:
            boxes.append((text, x0, y0, x1, y1))

    weight[0] += regular
    if max(weight[DOWNWARD], weight[UPWARD]) > weight[0]:
        return TextLayer(boxes, DOWNWARD if weight[DOWNWARD] >= weight[UPWARD] else UPWARD)
    return TextLayer(boxes, 0)


CharBox = Callable[[int], tuple[float, float, float, float]]
"""A char index → its loose box as displayed ``(x0, y0, x1, y1)``."""


def _char_boxes(textpage: Any, frame: PageFrame) -> CharBox:
    """The loose box of a char of ``textpage``, as displayed (see :class:`PageFrame`)."""
    handle = plain.handle(textpage)
    rect = (ctypes.c_float * 4)()  # FS_RECTF: left, top, right, bottom
    values = memoryview(rect).cast("B").cast("f")
    get_box, to_display = plain.LOOSE_CHAR_BOX, frame.to_display

    def char_box(index: int) -> tuple[float, float, float, float]:
        get_box(handle, index, rect)
        left, top, right, bottom = values
        return to_display(left, bottom, right, top)

    return char_box


def _garbled(textpage: Any, chars: str, samples: int = 32) -> bool:
    """Whether most characters (a sample of them) are glyphs PDFium could not map to Unicode."""
    has_error, handle = plain.HAS_UNICODE_MAP_ERROR, plain.handle(textpage)
    seen = errors = 0
    for index in range(0, len(chars), max(1, len(chars) // samples)):
        if chars[index].isspace():
            continue
        seen += 1
        errors += has_error(handle, index) == 1
    return seen > 0 and errors > 0.5 * seen


def _page_chars(textpage: Any, count: int) -> str:
    """The page's characters, one per PDFium char index.

    One ``FPDFText_GetText`` call is enough when its output lines up with the char indices, which is
    the rule; characters outside the BMP (surrogate pairs) or chars PDFium leaves out of its text
    break that, and then each char is asked for on its own.
    """
    buffer = (ctypes.c_ushort * (count + 1))()
    written = pdfium_c.FPDFText_GetText(textpage, 0, count, buffer)
    text = ctypes.string_at(buffer, max(written - 1, 0) * 2).decode("utf-16-le", "replace")
    if len(text) == count:
        return text
    get_unicode = pdfium_c.FPDFText_GetUnicode
    return "".join(_char(get_unicode(textpage, i)) for i in range(count))


def _char(code: int) -> str:
    if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
        return "\ufffd"
    return chr(code)


def _measured_run(
    char_box: CharBox, start: int, end: int, text: str, weight: list[int]
) -> list[Box]:
    """Cut one irregular run into words from the box of each of its characters."""
    cells = [char_box(index) for index in range(start, end)]
    if len(text) != len(cells):  # a ligature was spelled out: keep the run whole
        return [_union(text, cells)]
    first, last = cells[0], cells[-1]
    dx = (last[0] + last[2]) - (first[0] + first[2])
    dy = (last[1] + last[3]) - (first[1] + first[3])
    if abs(dy) > abs(dx):  # vertical text: one word in reading order, placed where it is printed
        weight[DOWNWARD if dy > 0 else UPWARD] += len(cells)
        return [_union(text, cells)]
    weight[0] += len(cells)
    words: list[Box] = []
    begin = 0
    for i in range(1, len(cells)):
        prev, cell = cells[i - 1], cells[i]
        height = max(prev[3] - prev[1], cell[3] - cell[1])
        centre_shift = abs((cell[1] + cell[3]) - (prev[1] + prev[3])) / 2
        if (
            cell[0] - prev[2] > 0.25 * height
            or cell[0] < prev[0] - 0.25 * height
            or centre_shift > 0.6 * height
        ):
            words.append(_union(text[begin:i], cells[begin:i]))
            begin = i
    words.append(_union(text[begin:], cells[begin:]))
    return words


def _union(text: str, cells: list[tuple[float, float, float, float]]) -> Box:
    return (
        text,
        min(c[0] for c in cells),
        min(c[1] for c in cells),
        max(c[2] for c in cells),
        max(c[3] for c in cells),
    )


def turn_boxes(boxes: list[Box], width: float, height: float, turn: int) -> list[Box]:
    """Turn a ``width`` × ``height`` page a quarter so that its vertical text reads left to right.

    Text running downwards (printed turned clockwise) is turned back counter-clockwise, text running
    upwards the other way; the turned page is ``height`` wide and ``width`` high.
    """
    if turn == DOWNWARD:  # (x, y) -> (y, width - x)
        return [(t, y0, width - x1, y1, width - x0) for t, x0, y0, x1, y1 in boxes]
    if turn == UPWARD:  # (x, y) -> (height - y, x)
        return [(t, height - y1, x0, height - y0, x1) for t, x0, y0, x1, y1 in boxes]
    return boxes
