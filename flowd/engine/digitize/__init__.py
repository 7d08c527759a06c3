"""Digitization: one input file's bytes → a :class:`~flowd.engine.document.Document`.

This is the ``process_files`` step (SPEC §2.1)::

    from flowd.engine.digitize import digitize, DigitizeSettings
    document = digitize("invoice.pdf", data, DigitizeSettings(ocr="auto", languages=("eng",)))

Readers, chosen by magic bytes then extension (:mod:`.sniff`): plain text (:mod:`.text`), PDF
(:mod:`.pdf`: text layer laid out like ``pdftotext -layout``, OCR by policy), images through OCR
(:mod:`.image`), Word ``.docx`` (:mod:`.docx_reader`). Page text keeps the printed layout
(:mod:`.layout`); word boxes are in points from the page's top-left corner.

Every problem of the file itself is a :class:`~flowd.errors.DocumentError` (permanent: retrying will
not help); a missing Tesseract for a file that needs OCR is a
:class:`~flowd.errors.MissingDependencyError` naming the Debian package to install. ``file_name`` is
used for messages, the extension and the metadata only; size, SHA-256 and MIME type come from
``data``.

``digitize`` is on the hot path (thousands of small text files a second), so everything is imported
up front and the text path does no more than decode and split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from flowd.engine.digitize.docx_reader import read_docx
from flowd.engine.digitize.image import read_image
from flowd.engine.digitize.pdf import read_pdf
from flowd.engine.digitize.settings import DigitizeSettings, OcrPolicy
from flowd.engine.digitize.sniff import Kind, sniff
from flowd.engine.digitize.text import read_text
from flowd.engine.document import Document, Page
from flowd.errors import DocumentError

__all__ = ["DigitizeSettings", "OcrPolicy", "digitize"]

_DEFAULT = DigitizeSettings()

_READERS: dict[Kind, Callable[[str, bytes, DigitizeSettings], tuple[Page, ...]]] = {
    Kind.TEXT: lambda name, data, _settings: read_text(name, data),
    Kind.PDF: read_pdf,
    Kind.IMAGE: read_image,
    Kind.DOCX: lambda name, data, _settings: read_docx(name, data),
}


def digitize(file_name: str, data: bytes, settings: DigitizeSettings = _DEFAULT) -> Document:
    """Read one file into a document; :class:`DocumentError` when it cannot be read."""
    if not data:
        raise DocumentError(file_name, "empty file (0 bytes)")
    kind, mime_type = sniff(file_name, data)
    pages = _READERS[kind](file_name, data, settings)
    return Document(
        file_name=file_name,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        mime_type=mime_type,
        pages=pages,
    )
