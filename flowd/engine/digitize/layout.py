"""Word boxes → layout-preserving page text, like ``pdftotext -layout``.

Shared by the PDF text layer and OCR, so a scanned invoice and a born-digital one read the same way
to a refiner formula.

Contract of :func:`layout_page`:

- lines run top to bottom, words left to right;
- words whose boxes overlap vertically by at least half of the smaller height share a line, so small
  baseline jitter, superscripts and mixed font sizes stay on their line — but a line's band is fixed
  by the word that opened it, so one tall word cannot chain two lines into one (see
  :func:`_group_lines`);
- words closer than about one character, one and a half of the page's usual word spaces, or half
  their height are a *phrase* joined by single spaces, so prose stays prose;
  every phrase starts at the text column of its left edge on a grid of the page's median character
  width, at least two spaces after the previous phrase. So a label and the value printed to its
  right stay on one line apart by a run of spaces, and a value printed under a label starts in the
  label's column;
- vertical gaps of one and a half lines or more become (at most two) empty lines, to keep blocks
  visibly apart;
- the words come back in that reading order as :class:`~flowd.engine.document.Word` values.

Boxes are ``(text, x0, y0, x1, y1)`` in points with a top-left origin. This is the per-page hot path
of PDF digitization, so it works on plain tuples and lists, not objects.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Sequence

from flowd.engine.document import Word

Box = tuple[str, float, float, float, float]
"""A word before layout: text and box (points, top-left origin)."""

MIN_OVERLAP = 0.5
"""Share of the smaller height two boxes must overlap vertically to be on one line."""

SURE_OVERLAP = 0.85
"""A box overlapping its line less than this may belong to the next line: it is looked at again."""

SMALL_SHARE = 0.7
"""Boxes lower than this share of the median height are placed after the lines are formed."""

LOOKBACK_LINES = 6
"""How many of the most recent lines a word may join (words arrive sorted by vertical centre)."""

MAX_COLUMNS = 400
"""The grid never gets wider than this: tiny or hidden text must not make kilometre-long lines."""

MAX_BLANK_LINES = 2

PHRASE_COLUMNS = 1.3
"""Words closer than this many grid columns are one phrase. A word space is about half a column
in PDF boxes (which include the glyphs' side bearings) but nearly a whole one between the ink-tight
boxes of OCR; gaps between columns of a form or table are two columns and more."""

WORD_SPACES = 1.5
"""Words closer than this many of the page's usual word spaces are one phrase too, up to
:data:`MAX_PHRASE_COLUMNS`. A typewriter font's space is a whole advance, so between OCR's
ink-tight boxes it measures up to 1.6 columns: the threshold follows the page, not only the grid."""

MAX_PHRASE_COLUMNS = 2.0
"""Never more: on a page that is all table, the usual gap may be a column gap."""

MIN_GAPS = 8
"""Fewer gaps than this on a page say nothing about its usual word space."""

PHRASE_GAP = 0.5
"""Words closer than this share of their height are one phrase too: a large title's word spaces
are wider than the body text's columns but must not split the title apart."""


def layout_page(boxes: Sequence[Box]) -> tuple[str, tuple[Word, ...]]:
    """Lay ``boxes`` out as text; return the text and the words in reading order."""
    if not boxes:
        return "", ()
    lines = _group_lines(boxes)
    left = min(map(_x0, boxes))
    right = max(map(_x1, boxes))
    char_w = max(_char_width(boxes), (right - left) / MAX_COLUMNS, 1e-3)
    line_h = _median([ln[1] - ln[0] for ln in lines]) or 1.0
    for line in lines:
        line[2].sort(key=_x0)
    usual = min(WORD_SPACES * _word_space(lines, char_w), MAX_PHRASE_COLUMNS * char_w)
    phrase_gap = max(PHRASE_COLUMNS * char_w, usual)
    out: list[str] = []
    ordered: list[Box] = []
    prev_bottom: float | None = None
    for top, bottom, members in lines:
        if prev_bottom is not None:
            blank = int((top - prev_bottom) / line_h - 0.5)  # a gap of 1.5 lines shows as one
            if blank > 0:
                out.extend([""] * min(MAX_BLANK_LINES, blank))
        prev_bottom = bottom
        out.append(_render_line(members, left, char_w, phrase_gap, ordered))
    # Word objects are made once, at the end: a frozen dataclass is slow to build word by word
    return "\n".join(out), tuple(itertools.starmap(Word, ordered))


def _word_space(lines: list[tuple[float, float, list[Box]]], char_w: float) -> float:
    """The page's usual gap between neighbouring words, 0 when there are too few to tell."""
    gaps: list[float] = []
    widest = 3 * char_w
    for _, _, members in lines:
        for before, after in itertools.pairwise(members):
            gap = after[1] - before[3]
            if 0 < gap < widest:
                gaps.append(gap)
    return _median(gaps) if len(gaps) >= MIN_GAPS else 0.0


_x0 = operator.itemgetter(1)
"""A box's left edge (a C-level key: sorting and scanning by it runs for every word)."""
_x1 = operator.itemgetter(3)


def _centre2(box: Box) -> float:
    return box[2] + box[4]


def _group_lines(boxes: Sequence[Box]) -> list[tuple[float, float, list[Box]]]:
    """Group boxes into lines: ``(top, bottom, members)`` ordered top to bottom.

    Lines are formed from the boxes of ordinary height first; the low ones (superscripts, footnote
    marks, fine print) then join the line they overlap most. Opening a line, a raised superscript
    would give it a band that the rest of its line does not fit.
    """
    heights = sorted([b[4] - b[2] for b in boxes])
    low = SMALL_SHARE * heights[len(heights) // 2]
    main = [b for b in boxes if b[4] - b[2] >= low]
    lines = _greedy_lines(main)
    if len(main) < len(boxes):
        centres = [ln[0] + ln[1] for ln in lines]
        rest = [b for b in boxes if b[4] - b[2] < low and not _join_best(b, lines, centres)]
        if rest:
            lines.extend(_greedy_lines(rest))
            lines.sort(key=lambda line: line[0] + line[1])
    return lines


def _greedy_lines(boxes: Sequence[Box]) -> list[tuple[float, float, list[Box]]]:
    """Boxes join the first recent line they overlap enough, in the order of their centres.

    A box that joined only narrowly (a bullet from a symbol font with a tall box, centred between
    two lines) is afterwards moved to the neighbouring line it overlaps clearly better, which may
    not have existed yet when it was placed.
    """
    lines: list[tuple[float, float, list[Box]]] = []
    doubtful: list[tuple[Box, int, float]] = []
    min_overlap, sure_overlap, lookback = MIN_OVERLAP, SURE_OVERLAP, LOOKBACK_LINES
    last = -1  # the index of the last line
    for box in sorted(boxes, key=_centre2):
        top = box[2]
        bottom = box[4]
        height = bottom - top
        # min() and max() spelled out: this loop runs for every word of every PDF page
        j = last
        while j >= 0 and j > last - lookback:
            l_top, l_bottom, members = lines[j]
            overlap = (bottom if bottom < l_bottom else l_bottom) - (top if top > l_top else l_top)
            l_height = l_bottom - l_top
            smaller = height if height < l_height else l_height
            if overlap >= 0 and overlap >= min_overlap * smaller:
                members.append(box)
                if overlap < sure_overlap * smaller:
                    doubtful.append((box, j, overlap / smaller))
                break
            j -= 1
        else:
            lines.append((top, bottom, [box]))
            last += 1
    for box, j, ratio in doubtful:
        best, best_ratio = j, ratio + 0.1
        for k in (j - 1, j + 1):
            if 0 <= k < len(lines):
                k_ratio = _overlap_ratio(box, lines[k][0], lines[k][1])
                if k_ratio > best_ratio:
                    best, best_ratio = k, k_ratio
        if best != j:
            lines[j][2].remove(box)
            lines[best][2].append(box)
    return lines


def _join_best(box: Box, lines: list[tuple[float, float, list[Box]]], centres: list[float]) -> bool:
    """Add a low box to the nearby line it overlaps most (``centres``: the lines' sorted centres)."""
    at = bisect.bisect_left(centres, box[2] + box[4])
    best, best_ratio = -1, MIN_OVERLAP
    for k in range(max(0, at - 2), min(len(lines), at + 2)):
        ratio = _overlap_ratio(box, lines[k][0], lines[k][1])
        if ratio >= best_ratio:
            best, best_ratio = k, ratio
    if best < 0:
        return False
    lines[best][2].append(box)
    return True


def _overlap_ratio(box: Box, top: float, bottom: float) -> float:
    smaller = min(box[4] - box[2], bottom - top)
    overlap = min(box[4], bottom) - max(box[2], top)
    return overlap / smaller if smaller > 0 else 0.0


def _render_line(
    members: list[Box], left: float, char_w: float, phrase_gap: float, ordered: list[Box]
) -> str:
    """One line of text: phrases placed on the character grid; appends the line's words."""
    if not members:
        return ""
    boxes = iter(members)
    first = next(boxes)
    text = first[0]
    col = int((first[1] - left) / char_w + 0.5)
    parts = [" " * col, text] if col > 0 else [text]
    cursor = (col if col > 0 else 0) + len(text)  # length of the text built so far
    ordered.append(first)
    same_word = 0.2 * char_w + 0.5  # closer than this, the same word is a repeat
    prev_text, prev_x0, prev_x1 = text, first[1], first[3]
    prev_height = first[4] - first[2]
    for box in boxes:
        text, x0, y0, x1, y1 = box
        if text == prev_text and abs(x0 - prev_x0) < same_word:
            continue  # the same word painted twice, slightly offset ("fake bold")
        gap = x0 - prev_x1
        height = y1 - y0
        if gap < phrase_gap or gap < PHRASE_GAP * (prev_height if prev_height > height else height):
            parts.append(" ")
            cursor += 1
        else:
            col = int((x0 - left) / char_w + 0.5)
            if col < cursor + 2:
                col = cursor + 2
            parts.append(" " * (col - cursor))
            cursor = col
        parts.append(text)
        cursor += len(text)
        ordered.append(box)
        prev_text = text
        prev_x0 = x0
        prev_x1 = x1
        prev_height = height
    return "".join(parts)


def _char_width(boxes: Sequence[Box]) -> float:
    """The page's median character width: the width of one text column."""
    return _median([(b[3] - b[1]) / len(b[0]) for b in boxes if b[0]])


def _median(values: list[float]) -> float:
    if not values:
        return 0.0
    values.sort()
    return values[len(values) // 2]
