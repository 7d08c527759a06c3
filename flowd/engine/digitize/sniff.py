"""Which reader a file goes to, and its MIME type: by magic bytes first, then by extension.

Magic wins because files are misnamed in the wild (a scanner writing ``scan.pdf`` that is a JPEG, an
export called ``.txt`` that is a PDF). Only magics that text cannot plausibly start with are trusted
against a text extension; the PDF header may follow up to 1 KiB of junk, as PDF readers allow, but
only in a file named ``.pdf``. Unknown extensions are read when the bytes look like text, so
``notes.log`` or ``README`` work; anything else is an unsupported file type.

This runs for every file, so the common case is one ``startswith`` and a dictionary lookup.
"""

from __future__ import annotations

import enum
import io
import os
import zipfile

from flowd.engine.digitize.text import looks_like_text
from flowd.errors import DocumentError


class Kind(enum.Enum):
    """The readers."""

    TEXT = "text"
    PDF = "pdf"
    IMAGE = "image"
    DOCX = "docx"


DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

TEXT_TYPES = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".json": "application/json",
    ".html": "text/html",
    ".htm": "text/html",
    ".xml": "application/xml",
}

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".webp": "image/webp",
}

_MAGIC: tuple[tuple[bytes, Kind, str], ...] = (
    (b"%PDF-", Kind.PDF, "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", Kind.IMAGE, "image/png"),
    (b"\xff\xd8\xff", Kind.IMAGE, "image/jpeg"),
    (b"II*\x00", Kind.IMAGE, "image/tiff"),
    (b"MM\x00*", Kind.IMAGE, "image/tiff"),
    (b"II+\x00", Kind.IMAGE, "image/tiff"),  # BigTIFF
    (b"MM\x00+", Kind.IMAGE, "image/tiff"),
    (b"GIF87a", Kind.IMAGE, "image/gif"),
    (b"GIF89a", Kind.IMAGE, "image/gif"),
)
_MAGIC_PREFIXES = tuple(magic for magic, _, _ in _MAGIC)

PDF_HEADER_WINDOW = 1024


def sniff(file_name: str, data: bytes) -> tuple[Kind, str]:
    """The reader for ``data`` and its MIME type; :class:`DocumentError` if none can read it."""
    if data.startswith(_MAGIC_PREFIXES):
        for magic, kind, magic_mime in _MAGIC:
            if data.startswith(magic):
                return kind, magic_mime
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return Kind.IMAGE, "image/webp"
    extension = os.path.splitext(file_name)[1].lower()
    text_mime = TEXT_TYPES.get(extension)
    if text_mime is not None:
        return Kind.TEXT, text_mime
    if extension == ".pdf":
        if b"%PDF-" in data[:PDF_HEADER_WINDOW]:
            return Kind.PDF, "application/pdf"
        raise DocumentError(file_name, "not a valid PDF: no %PDF header (is it really a PDF?)")
    image_mime = IMAGE_TYPES.get(extension)
    if image_mime is not None:
        return Kind.IMAGE, image_mime
    if extension == ".docx" or (data.startswith(b"PK\x03\x04") and _is_docx(data)):
        return Kind.DOCX, DOCX_MIME
    if looks_like_text(data):
        return Kind.TEXT, "text/plain"
    described = f"'{extension}'" if extension else "(no extension)"
    raise DocumentError(file_name, f"unsupported file type {described}")


def _is_docx(data: bytes) -> bool:
    """Whether a zip archive is a Word document (a ``.docx`` under another name)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
