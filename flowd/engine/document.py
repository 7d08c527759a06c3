"""The digitized document (``.ibdoc``): pages of layout-preserving text plus word boxes.

A :class:`Document` is what ``process_files`` makes of one input file and what every later step
reads. Page text keeps the printed layout (lines top to bottom, words left to right, columns kept
apart by runs of spaces) so that label/value formulas such as ``scan_right`` work on it.

Word boxes are in PDF points with the origin at the page's top-left corner (``y`` grows downwards),
for PDFs, images (pixels scaled to points at the OCR resolution) and ``.docx`` alike. Plain-text
sources carry no word boxes: their character grid *is* the layout, so a word's box is implied by
its line and column, and storing it would only cost time and space.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

PAGE_SEPARATOR = "\f"


class Word(NamedTuple):
    """One word and its box on its page (points, top-left origin).

    A named tuple rather than a dataclass: PDFs carry thousands of words, and building tuples is
    several times cheaper.
    """

    text: str
    x0: float
    y0: float
    x1: float
    y1: float

    def to_list(self) -> list[Any]:
        return [
            self.text,
            round(self.x0, 2),
            round(self.y0, 2),
            round(self.x1, 2),
            round(self.y1, 2),
        ]

    @classmethod
    def from_list(cls, item: list[Any]) -> Word:
        text, x0, y0, x1, y1 = item
        return cls(str(text), float(x0), float(y0), float(x1), float(y1))


@dataclass(frozen=True, slots=True)
class Page:
    """One page: its 1-based number, size in points, layout text, words, and how it was read."""

    number: int
    text: str
    width: float = 0.0
    height: float = 0.0
    words: tuple[Word, ...] = ()
    ocr: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "width": round(self.width, 2),
            "height": round(self.height, 2),
            "ocr": self.ocr,
            "text": self.text,
            "words": [w.to_list() for w in self.words],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Page:
        return cls(
            number=int(data["number"]),
            text=str(data["text"]),
            width=float(data.get("width", 0.0)),
            height=float(data.get("height", 0.0)),
            words=tuple(Word.from_list(w) for w in data.get("words", ())),
            ocr=bool(data.get("ocr", False)),
        )


@dataclass(frozen=True, slots=True)
class Document:
    """A digitized input file: metadata plus pages."""

    file_name: str
    size: int
    sha256: str
    mime_type: str
    pages: tuple[Page, ...] = field(default_factory=tuple)

    @property
    def page_count(self) -> int:
        return len(self.pages)

    @property
    def text(self) -> str:
        """The whole document's text, pages joined by form feeds."""
        return PAGE_SEPARATOR.join(p.text for p in self.pages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "ibdoc",
            "version": 1,
            "metadata": {
                "file_name": self.file_name,
                "size": self.size,
                "sha256": self.sha256,
                "mime_type": self.mime_type,
                "page_count": self.page_count,
            },
            "pages": [p.to_dict() for p in self.pages],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Document:
        meta = data["metadata"]
        return cls(
            file_name=str(meta["file_name"]),
            size=int(meta["size"]),
            sha256=str(meta["sha256"]),
            mime_type=str(meta["mime_type"]),
            pages=tuple(Page.from_dict(p) for p in data["pages"]),
        )
