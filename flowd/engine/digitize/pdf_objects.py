"""A PDF's objects read from its bytes: what an image looks like, named without rendering it.

Letterhead pictures are OCR'd once per process and remembered (:mod:`.pdf_ocr`), and the cheap way
to know a picture again is by the bytes that make it. PDFium gives an image's stream data but not
its dictionary, and the dictionary decides what the pixels look like too: a transparent logo is
often a stream of black pixels whose lettering lives in its ``/SMask`` alone, and a palette or a
``/Decode`` array changes every pixel. So the image stream is looked up in the file, and its digest
covers its dictionary and, through each ``N G R`` reference, the objects it refers to — by content,
not by number, so the same logo in another invoice matches however its objects are numbered.

The reading is deliberately plain — it expects the file layout that writers produce — and says
"unknown" (``None``) whenever the bytes are not unambiguous: the stream found with different
dictionaries, a reference into a compressed object stream, an object defined twice, an encrypted
file, a file saved incrementally that also has object streams (whose newer objects the plain reading
could not see). Callers then fall back to the rendered pixels, so a surprise costs time, never a
wrong picture.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
from typing import Any

import pypdfium2.raw as pdfium_c

MAX_DEPTH = 6
"""References are followed this deep (image → its mask → the mask's length, a palette → its data)."""

SEARCH_PREFIX = 256
"""An image stream is looked for by its first bytes, then compared whole."""

_S = rb"[ \t\r\n\f\x00]"  # PDF white-space
_REFERENCE = re.compile(rb"(?<![0-9.])([0-9]+)" + _S + rb"+([0-9]+)" + _S + rb"+R(?![A-Za-z0-9_])")
_IMAGE = re.compile(rb"/Subtype" + _S + rb"*/Image(?![A-Za-z0-9_])")
_LENGTH = re.compile(rb"/Length" + _S + rb"+([0-9]+)(?:" + _S + rb"+([0-9]+)" + _S + rb"+R)?")
_STREAM_END = re.compile(rb"(?:\r\n|\r|\n)?endstream")
_OBJ_HEADER = re.compile(rb"([0-9]+)" + _S + rb"+([0-9]+)" + _S + rb"+\Z")
"""The ``12 0`` before ``obj``, anchored at the end of a slice."""
_HEADER_ROOM = 24
_WHITE = b" \t\r\n\f\x00"
_AFTER_OBJ = _WHITE + b"<[(/"


def stream_data(image: Any) -> bytes:
    """The stream data of a PDFium image object as stored in the file (still encoded)."""
    get_raw = pdfium_c.FPDFImageObj_GetImageDataRaw
    size = get_raw(image, None, 0)
    if size <= 0:
        return b""
    buffer = ctypes.create_string_buffer(size)
    if get_raw(image, buffer, size) != size:
        return b""
    return buffer.raw


class PdfObjects:
    """The objects of one PDF file, its bytes ``data``; object digests are memoized per file.

    ``encrypted`` comes from PDFium, which knows it without a search.
    """

    def __init__(self, data: bytes, *, encrypted: bool) -> None:
        self.data = data
        self.encrypted = encrypted
        self._updated: bool | None = None
        self._starts: dict[tuple[int, int], list[int]] | None = None
        self._digests: dict[tuple[int, int], bytes | None] = {}
        self._resolving: set[tuple[int, int]] = set()

    def image_digest(self, raw: bytes) -> bytes | None:
        """A digest of the image XObject whose (still encoded) stream data is ``raw``.

        It covers the stream, its dictionary and everything the dictionary refers to; ``None``
        when the bytes do not tell that for sure.
        """
        if not raw or self.encrypted:
            return None
        data = self.data
        prefix = raw[:SEARCH_PREFIX]
        found: set[bytes] = set()
        at = data.find(prefix)
        while at >= 0:
            if data.startswith(raw, at):
                dictionary = self._stream_dictionary(at, len(raw))
                if dictionary is not None and _IMAGE.search(dictionary):
                    digest = self._resolved(dictionary, 0)
                    if digest is None:
                        return None
                    found.add(digest)
            at = data.find(prefix, at + 1)
        if len(found) != 1:  # not found (an inline image, a repaired file), or ambiguous
            return None
        return hashlib.sha256(found.pop() + hashlib.sha256(raw).digest()).digest()

    def _stream_dictionary(self, start: int, length: int) -> bytes | None:
        """The dictionary of the stream whose data is exactly ``data[start:start + length]``."""
        data = self.data
        if data.endswith(b"stream\r\n", 0, start):
            keyword = start - 8
        elif data.endswith((b"stream\n", b"stream\r"), 0, start):
            keyword = start - 7
        else:
            return None  # inside another stream, or in a content stream (an inline image)
        if not _STREAM_END.match(data, start + length):
            return None  # a longer stream that begins with the same bytes
        header = data.rfind(b"obj", 0, keyword)
        if self._header_at(header) is None:
            return None
        return data[header + 3 : keyword]

    def _header_at(self, at: int) -> tuple[int, int] | None:
        """The object number and generation if ``data[at:]`` is the ``obj`` of an object header."""
        data = self.data
        if at <= 0 or data[at - 1] not in _WHITE:
            return None  # not found, or ``endobj``, or part of a name
        if at + 3 < len(data) and data[at + 3] not in _AFTER_OBJ:
            return None
        match = _OBJ_HEADER.search(data, max(0, at - _HEADER_ROOM), at)
        if match is None or (match.start() > 0 and data[match.start() - 1] not in _WHITE):
            return None
        return int(match[1]), int(match[2])

    def _resolved(self, text: bytes, depth: int) -> bytes | None:
        """A digest of ``text`` with every reference replaced by the digest of its object."""
        if depth > MAX_DEPTH:
            return None
        parts: list[bytes] = []
        begin = 0
        for match in _REFERENCE.finditer(text):
            digest = self._object_digest((int(match[1]), int(match[2])), depth + 1)
            if digest is None:
                return None
            parts.append(text[begin : match.start()])
            parts.append(b"<ref " + digest.hex().encode("ascii") + b">")
            begin = match.end()
        parts.append(text[begin:])
        return hashlib.sha256(b"".join(parts)).digest()

    def _object_digest(self, key: tuple[int, int], depth: int) -> bytes | None:
        if key in self._digests:
            return self._digests[key]
        if key in self._resolving:  # a cycle: no image needs one
            return None
        self._resolving.add(key)
        try:
            digest = self._read_object(key, depth)
        finally:
            self._resolving.discard(key)
        self._digests[key] = digest
        return digest

    def _read_object(self, key: tuple[int, int], depth: int) -> bytes | None:
        """The digest of an object; ``None`` unless it is defined once, in plain sight."""
        starts = self._definitions(key)
        if len(starts) != 1:  # none: in a compressed object stream; several: updated
            return None
        return self._body_digest(starts[0], depth)

    def _definitions(self, key: tuple[int, int]) -> list[int]:
        """Where the bodies of the definitions of object ``key`` begin (just after ``obj``).

        A file saved once defines each object once, as ``12 0 obj`` (the spelling every writer
        uses): one search finds it, and another spelling is simply not found. A file updated
        since may define an object again, so then every object header is indexed, in one pass.
        """
        if self._was_updated():
            return self._index().get(key, [])
        data = self.data
        needle = b"%d %d obj" % key
        starts: list[int] = []
        at = data.find(needle)
        while at >= 0:
            if self._header_at(at + len(needle) - 3) == key:
                starts.append(at + len(needle))
            at = data.find(needle, at + 1)
        return starts

    def _was_updated(self) -> bool:
        """Whether the file was saved more than once: it then has several ``startxref``."""
        if self._updated is None:
            self._updated = self.data.find(b"startxref") != self.data.rfind(b"startxref")
        return self._updated

    def _index(self) -> dict[tuple[int, int], list[int]]:
        if self._starts is None:
            starts: dict[tuple[int, int], list[int]] = {}
            data = self.data
            if b"/ObjStm" in data:  # an update may have moved objects into object streams
                self._starts = starts
                return starts
            at = data.find(b"obj")
            while at >= 0:
                key = self._header_at(at)
                if key is not None:
                    starts.setdefault(key, []).append(at + 3)
                at = data.find(b"obj", at + 3)
            self._starts = starts
        return self._starts

    def _body_digest(self, start: int, depth: int) -> bytes | None:
        """The digest of the object whose body begins at ``start`` (just after ``obj``)."""
        data = self.data
        end = data.find(b"endobj", start)
        if end < 0:
            return None
        keyword = data.find(b"stream", start, end)
        if keyword < 0:
            return self._resolved(data[start:end], depth)
        dictionary = data[start:keyword]
        begin = keyword + 6
        if data.startswith(b"\r\n", begin):
            begin += 2
        elif data.startswith((b"\n", b"\r"), begin):
            begin += 1
        else:
            return None
        length = self._stream_length(dictionary)
        if length is None or not _STREAM_END.match(data, begin + length):
            return None
        resolved = self._resolved(dictionary, depth)
        if resolved is None:
            return None
        content = hashlib.sha256(data[begin : begin + length]).digest()
        return hashlib.sha256(resolved + content).digest()

    def _stream_length(self, dictionary: bytes) -> int | None:
        """The ``/Length`` of a stream dictionary, following a reference to an integer object."""
        match = _LENGTH.search(dictionary)
        if match is None:
            return None
        if match[2] is None:
            return int(match[1])
        starts = self._definitions((int(match[1]), int(match[2])))
        if len(starts) != 1:
            return None
        end = self.data.find(b"endobj", starts[0])
        body = self.data[starts[0] : end].strip() if end >= 0 else b""
        return int(body) if body.isdigit() else None
