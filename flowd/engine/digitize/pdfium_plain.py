"""PDFium functions for the loops that run per word or per page object, called the cheap way.

pypdfium2's bindings declare typed pointer arguments, and ctypes then spends more time converting
each argument than PDFium spends on a small call: a char box costs 1.3 µs through the binding,
0.2 µs through a function declared without argument types (measured on the corpus). The functions
here take their arguments as they come, so they must be given ctypes objects — a :class:`Handle`
(see :func:`handle`), a ``c_float`` array — and ``int`` only where C wants an ``int``: a Python
``int`` standing for a pointer would be passed as a 32-bit C ``int``.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pypdfium2.raw as pdfium_c


class Handle(ctypes.c_void_p):
    """A PDFium handle (text page, page, page object). Being a subclass of ``c_void_p``, it is
    what ctypes returns from a function returning one, not an ``int``."""


def handle(typed: Any) -> Handle:
    """A pypdfium2 typed handle (``page.raw``, ``textpage.raw``) as a :class:`Handle`."""
    return ctypes.cast(typed, Handle)


def typed(plain: Handle, pointer_type: Any) -> Any:
    """A :class:`Handle` as the typed pointer pypdfium2's bindings take, for the rare calls."""
    return ctypes.cast(plain, pointer_type)


def _plain(function: Any, restype: Any = ctypes.c_int, *argtypes: Any) -> Any:
    """``function`` (a pypdfium2 binding) declared with plain ``argtypes``, by default none."""
    address = ctypes.cast(function, ctypes.c_void_p).value
    if address is None:  # cannot happen with a loaded PDFium; says so rather than crash later
        raise RuntimeError(f"PDFium function {function!r} is not loaded")
    return ctypes.CFUNCTYPE(restype, *argtypes)(address)


LOOSE_CHAR_BOX = _plain(pdfium_c.FPDFText_GetLooseCharBox)
"""``(Handle textpage, int index, c_float[4] rect) -> int``; ``rect``: left, top, right, bottom."""
HAS_UNICODE_MAP_ERROR = _plain(pdfium_c.FPDFText_HasUnicodeMapError)
"""``(Handle textpage, int index) -> int``."""
PAGE_COUNT_OBJECTS = _plain(pdfium_c.FPDFPage_CountObjects)
"""``(Handle page) -> int``."""
PAGE_GET_OBJECT = _plain(pdfium_c.FPDFPage_GetObject, Handle)
"""``(Handle page, int index) -> Handle``."""
FORM_COUNT_OBJECTS = _plain(pdfium_c.FPDFFormObj_CountObjects)
"""``(Handle form) -> int``."""
FORM_GET_OBJECT = _plain(pdfium_c.FPDFFormObj_GetObject, Handle, ctypes.c_void_p, ctypes.c_ulong)
"""``(Handle form, int index) -> Handle``; declared, as C's ``index`` is an ``unsigned long``."""
OBJECT_TYPE = _plain(pdfium_c.FPDFPageObj_GetType)
"""``(Handle object) -> int``, one of ``FPDF_PAGEOBJ_*``."""
