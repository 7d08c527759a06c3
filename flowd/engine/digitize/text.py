"""Plain text files → pages: any encoding, never a crash, but binary junk is refused.

This is the hot path of flowd (most documents are small text files), so it does the least that is
correct: no word boxes (a text file's character grid *is* its layout), no charset guessing library,
and every scan over the bytes is a single C-level call.

Decoding, in order:

1. a byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE);
2. NUL bytes mean binary — unless they fall on every other byte the way UTF-16 without a BOM puts
   them (as Windows tools write it) — and so does a head with more than 5 % control characters;
   this is how ``git`` and ``file`` tell text from binary, and it keeps a ``.txt`` that is really a
   zip or an image from becoming a page of mojibake;
3. strict UTF-8;
4. when that fails: UTF-8 with replacement characters if the file has more valid multi-byte
   sequences than bad bytes (a UTF-8 file with a few damaged bytes), else Windows-1252, the usual
   encoding of legacy Western text (its five undefined bytes are replaced).

Line ends become ``\\n``; a form feed starts a new page (a trailing one opens no empty page).
"""

from __future__ import annotations

import codecs

from flowd.engine.document import PAGE_SEPARATOR, Page
from flowd.errors import DocumentError

NOT_TEXT = "not a text file: it contains binary data"

HEAD_BYTES = 65536
"""Control characters are counted in this much of the head (NUL bytes in the whole file)."""

MAX_CONTROL_SHARE = 0.05

_CONTROL = bytes([*range(0, 9), 0x0B, *range(0x0E, 0x1A), *range(0x1C, 0x20), 0x7F])
"""Bytes that do not occur in text: C0 controls except tab, LF, CR, form feed and the DOS
end-of-file mark 0x1A, plus DEL."""

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_BOM_STARTS = frozenset(bom[0] for bom, _ in _BOMS)


def read_text(file_name: str, data: bytes) -> tuple[Page, ...]:
    """The pages of a text file; :class:`DocumentError` when the bytes are not text."""
    text = decode(data)
    if text is None:
        raise DocumentError(file_name, NOT_TEXT)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if PAGE_SEPARATOR not in text:
        return (Page(1, text),)
    parts = text.split(PAGE_SEPARATOR)
    if len(parts) > 1 and not parts[-1].strip():
        parts.pop()
    return tuple(Page(number, part) for number, part in enumerate(parts, start=1))


def looks_like_text(data: bytes) -> bool:
    """Whether ``data`` decodes as text (see :func:`decode`); used to sniff unknown extensions."""
    return decode(data) is not None


def decode(data: bytes) -> str | None:
    """``data`` as a string, or ``None`` when it is binary."""
    if data[:1] and data[0] in _BOM_STARTS:
        for bom, encoding in _BOMS:
            if data.startswith(bom):
                return data[len(bom) :].decode(encoding, "replace")
    if b"\x00" in data:
        utf16 = _bomless_utf16(data)
        return data.decode(utf16, "replace") if utf16 else None
    head = data[:HEAD_BYTES]
    controls = len(head) - len(head.translate(None, _CONTROL))
    if controls > MAX_CONTROL_SHARE * len(head):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    if len(data) - len(text) > bad:  # each valid multi-byte character saves at least one byte
        return text
    return data.decode("cp1252", "replace")


def _bomless_utf16(data: bytes) -> str | None:
    """``utf-16-le``/``-be`` when the NUL bytes sit where UTF-16 puts them for Latin text."""
    head = data[: HEAD_BYTES - HEAD_BYTES % 2]
    half = len(head) // 2
    if half == 0:
        return None
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if odd >= 0.6 * half and even == 0:
        return "utf-16-le"
    if even >= 0.6 * half and odd == 0:
        return "utf-16-be"
    return None
