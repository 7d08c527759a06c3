"""Word ``.docx`` → one page of text, through python-docx.

(Named ``docx_reader`` so that it does not shadow the ``docx`` package.)

A ``.docx`` has no fixed layout — pages are made by whatever program opens it — so the document is
one page: header paragraphs, then body paragraphs and tables in document order, then footer
paragraphs. A table row is one line, its cells padded to the column's widest cell and kept apart by
runs of spaces, so ``scan_right`` finds a value right of its label cell and ``scan_below`` a value
under its header cell. A cell spanning several grid columns, or continuing a vertical merge, is
written once.

Words get boxes on a nominal character grid (6 points a column, 12 points a line): layout functions
work on every document, and positions keep their order and alignment, even if no printer agrees.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph

from flowd.engine.document import Page, Word
from flowd.errors import DocumentError

COLUMN_PT = 6.0
LINE_PT = 12.0
CELL_GAP = "   "

_BLANKS = re.compile(r"\s+")
_WORD = re.compile(r"\S+")


def read_docx(file_name: str, data: bytes) -> tuple[Page, ...]:
    """The text of a ``.docx`` as one page with grid word boxes."""
    try:
        document = docx.Document(io.BytesIO(data))
        lines = list(_document_lines(document))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise DocumentError(file_name, f"not a valid .docx: {exc}") from exc
    except Exception as exc:  # python-docx lets lxml's XML syntax errors through unwrapped
        if type(exc).__module__.startswith("lxml"):
            raise DocumentError(file_name, f"not a valid .docx: {exc}") from exc
        raise
    return (_grid_page(lines),)


def _document_lines(document: Any) -> Iterator[str]:
    headers: list[str] = []
    footers: list[str] = []
    for section in document.sections:
        for part, into in ((section.header, headers), (section.footer, footers)):
            if part.is_linked_to_previous:
                continue
            for line in _block_lines(part.iter_inner_content()):
                if line not in into:
                    into.append(line)
    yield from headers
    yield from _block_lines(document.iter_inner_content())
    yield from footers


def _block_lines(blocks: Iterator[Paragraph | Table]) -> Iterator[str]:
    for block in blocks:
        if isinstance(block, Paragraph):
            yield from block.text.replace("\r", "\n").split("\n")
        else:
            yield from _table_lines(block)


def _table_lines(table: Table) -> Iterator[str]:
    """One line per row, one slot per grid column, padded to the column's widest cell."""
    rows: list[list[str]] = []
    above: list[Any] = []
    for row in table.rows:
        cells = row.cells
        grid = [cell._tc for cell in cells]  # a merged cell repeats in each column it spans
        texts: list[str] = []
        for index, (element, cell) in enumerate(zip(grid, cells, strict=True)):
            spanned = index > 0 and grid[index - 1] is element
            continued = index < len(above) and above[index] is element  # vertical merge
            texts.append("" if spanned or continued else _BLANKS.sub(" ", cell.text).strip())
        above = grid
        rows.append(texts)
    widths = [0] * max((len(texts) for texts in rows), default=0)
    for texts in rows:
        for index, text in enumerate(texts):
            widths[index] = max(widths[index], len(text))
    for texts in rows:  # columns that are empty in every row (all spanned) take no room
        slots = [text.ljust(widths[index]) for index, text in enumerate(texts) if widths[index]]
        yield CELL_GAP.join(slots).rstrip()


def _grid_page(lines: list[str]) -> Page:
    words: list[Word] = []
    for row, line in enumerate(lines):
        y0 = row * LINE_PT
        for match in _WORD.finditer(line):
            start, end = match.span()
            words.append(Word(match.group(), start * COLUMN_PT, y0, end * COLUMN_PT, y0 + LINE_PT))
    width = max((len(line) for line in lines), default=0) * COLUMN_PT
    return Page(
        number=1,
        text="\n".join(lines),
        width=width,
        height=len(lines) * LINE_PT,
        words=tuple(words),
    )
