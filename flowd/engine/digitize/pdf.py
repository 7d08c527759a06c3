"""PDF → pages, through PDFium (pypdfium2): the text layer laid out, OCR where it is needed.

Per page, by ``settings.ocr``:

- ``never``: the text layer only; a page without one (or with only glyphs that have no Unicode
  meaning) has empty text;
- ``auto``: the text layer, plus the words of its pictures (:func:`pdf_ocr.ocr_pictures`); a page
  without a text layer, or whose text layer is glyph numbers without Unicode meaning, is rendered
  and OCR'd whole. Only that last case *needs* Tesseract: pictures on a text page are a bonus,
  skipped when Tesseract is not installed, so text PDFs keep working without it;
- ``always``: every page rendered and OCR'd, the text layer ignored (for PDFs whose text layer is
  garbage, such as fonts without a Unicode map).

Damaged, encrypted and empty PDFs are :class:`~flowd.errors.DocumentError` with the cause in words.
"""

from __future__ import annotations

import re

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from flowd.engine.digitize.frame import PageFrame
from flowd.engine.digitize.layout import Box, layout_page
from flowd.engine.digitize.ocr import require_tesseract, tesseract_path
from flowd.engine.digitize.pdf_objects import PdfObjects
from flowd.engine.digitize.pdf_ocr import ocr_page, ocr_pictures
from flowd.engine.digitize.pdf_text import text_layer, turn_boxes
from flowd.engine.digitize.settings import DigitizeSettings
from flowd.engine.document import Page
from flowd.errors import DocumentError

_OPEN_ERRORS = {
    pdfium_c.FPDF_ERR_PASSWORD: "PDF is encrypted (password protected)",
    pdfium_c.FPDF_ERR_SECURITY: "PDF is encrypted with an unsupported security handler",
    pdfium_c.FPDF_ERR_FORMAT: "not a valid PDF: the file is damaged or truncated",
    pdfium_c.FPDF_ERR_FILE: "not a valid PDF: the file cannot be read",
}


_EMPTY_PAGE_TREE = re.compile(rb"/Count\s*0\b")
_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?!s)")


def read_pdf(file_name: str, data: bytes, settings: DigitizeSettings) -> tuple[Page, ...]:
    """Digitize every page of the PDF in ``data``."""
    pdf = open_pdf(file_name, data)
    try:
        count = len(pdf)
        if count == 0:
            raise DocumentError(file_name, "PDF has no pages")
        reader = _PageReader(file_name, data, pdf, settings)
        return tuple(reader.read(index) for index in range(count))
    finally:
        pdf.close()


def open_pdf(file_name: str, data: bytes) -> pdfium.PdfDocument:
    """Open ``data`` with PDFium, turning its error codes into a :class:`DocumentError`."""
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise DocumentError(file_name, _open_failure(data, exc.err_code or 0)) from exc


def _open_failure(data: bytes, code: int) -> str:
    """Why PDFium could not open ``data``, in words.

    PDFium's last-error code is per thread and some failures leave it untouched, so a code can be
    stale — left by an earlier file (seen: an empty page tree reported as "password protected"
    after an encrypted file). Claims about encryption are therefore checked against the bytes.
    """
    encrypted = b"/Encrypt" in data
    if code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY) and encrypted:
        return _OPEN_ERRORS[code]
    if not encrypted and _EMPTY_PAGE_TREE.search(data) and not _PAGE_OBJECT.search(data):
        return "PDF has no pages"
    if code in (pdfium_c.FPDF_ERR_FORMAT, pdfium_c.FPDF_ERR_FILE):
        return _OPEN_ERRORS[code]
    return _OPEN_ERRORS[pdfium_c.FPDF_ERR_FORMAT]


class _PageReader:
    """Reads the pages of one open PDF; asks for Tesseract at most once, when first needed."""

    def __init__(
        self, file_name: str, data: bytes, pdf: pdfium.PdfDocument, settings: DigitizeSettings
    ):
        self.file_name = file_name
        self.data = data
        self.pdf = pdf
        self.settings = settings
        self._objects: PdfObjects | None = None
        self._lang: str | None = None
        self._has_tesseract = settings.ocr == "auto" and tesseract_path() is not None

    def lang(self) -> str:
        """Tesseract's ``lang`` argument; raises when Tesseract or a language is missing."""
        if self._lang is None:
            self._lang = require_tesseract(self.file_name, self.settings.languages)
        return self._lang

    def objects(self) -> PdfObjects:
        """The file's objects, by which its pictures are known again (made when first needed)."""
        if self._objects is None:
            self._objects = PdfObjects(
                self.data,
                encrypted=pdfium_c.FPDF_GetSecurityHandlerRevision(self.pdf.raw) != -1,
            )
        return self._objects

    def read(self, index: int) -> Page:
        try:
            page = self.pdf[index]
        except pdfium.PdfiumError as exc:
            raise DocumentError(self.file_name, f"page {index + 1} cannot be read: {exc}") from exc
        try:
            return self._read(index + 1, page)
        finally:
            page.close()

    def _read(self, number: int, page: pdfium.PdfPage) -> Page:
        left, bottom, right, top = page.get_bbox()
        frame = PageFrame(left, bottom, right, top, page.get_rotation() % 360)
        policy = self.settings.ocr
        if pdfium_c.FPDFPage_CountObjects(page.raw) == 0:  # a blank page: nothing to read or OCR
            return _page(number, frame, [], 0, ocr=False)
        if policy == "always":
            boxes = ocr_page(page, frame, file_name=self.file_name, lang=self.lang())
            return _page(number, frame, boxes, 0, ocr=True)
        try:
            textpage = page.get_textpage()
        except pdfium.PdfiumError as exc:
            raise DocumentError(
                self.file_name, f"page {number} has unreadable text: {exc}"
            ) from exc
        try:
            boxes, turn, _ = text_layer(textpage.raw, frame)  # garbled text comes back empty
            if policy == "never":
                return _page(number, frame, boxes, turn, ocr=False)
            if not boxes:  # a scan, or glyphs without meaning
                scanned = ocr_page(page, frame, file_name=self.file_name, lang=self.lang())
                return _page(number, frame, scanned, 0, ocr=True)
            if not self._has_tesseract:
                return _page(number, frame, boxes, turn, ocr=False)
            extra = ocr_pictures(
                self.pdf,
                page,
                frame,
                boxes,
                textpage.raw,
                objects=self.objects(),
                file_name=self.file_name,
                lang=self.lang(),
            )
            return _page(number, frame, boxes + extra, turn, ocr=bool(extra))
        finally:
            textpage.close()


def _page(number: int, frame: PageFrame, boxes: list[Box], turn: int, *, ocr: bool) -> Page:
    width, height = frame.width, frame.height
    if turn:
        boxes = turn_boxes(boxes, width, height, turn)
        width, height = height, width
    text, words = layout_page(boxes)
    return Page(number=number, text=text, width=width, height=height, words=words, ocr=ocr)
