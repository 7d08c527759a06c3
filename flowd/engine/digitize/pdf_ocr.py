"""OCR inside PDFs: whole scanned pages, and the pictures on pages that have a text layer.

A scanned page has no text layer: it is rendered at 300 dpi and read as a page. On a page that does
have text, invoices still hide words in pictures — the issuer's name in a letterhead logo, a pasted
scan of a delivery note — so under ``ocr = "auto"`` every picture large enough to hold text (at
least 1 inch by 0.3 inch) is rendered on its own (with its transparency mask, which often *is* the
lettering) and read; its words join the page at the picture's place, except those lying on words
the text layer already has (text printed over a picture).

Two shortcuts keep this affordable: a picture that covers most of a page whose text is invisible is
a scan that some OCR program already gave a text layer, so it is not read again; and the words of a
picture are remembered, because the same letterhead comes on every invoice of an issuer (and often
on every page). A picture is known again by what makes it — its stream, dictionary and mask, read
from the file (:class:`~.pdf_objects.PdfObjects`), and the size and turn it is rendered at — so a
remembered picture costs a hash instead of a rendering; only a picture that the file's bytes do not
name for sure (an inline image, an encrypted file) is rendered first and known by its pixels.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import threading
from collections import OrderedDict
from typing import Any, NamedTuple

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from flowd.engine.digitize import pdfium_plain as plain
from flowd.engine.digitize.frame import PageFrame
from flowd.engine.digitize.layout import Box
from flowd.engine.digitize.ocr import PAGE_PSM, OcrWord, grey, page_boxes, recognize
from flowd.engine.digitize.pdf_objects import PdfObjects, stream_data
from flowd.errors import DocumentError

RENDER_DPI = 300.0
MAX_RENDER_PIXELS = 40_000_000
"""A page or picture is rendered at a lower resolution rather than above this many pixels."""

MIN_PICTURE_W_PT = 72.0
MIN_PICTURE_H_PT = 21.6
MIN_PICTURE_PX = 8
"""Pictures narrower than this many pixels are stretched fills or rules, not text."""

SCAN_SHARE = 0.5
"""A picture covering this share of the page is a scan, read like a page."""

PICTURE_PSM = 11
MIN_PICTURE_CONF = 60.0
"""Logos are read as sparse text; a word is kept only when Tesseract is fairly sure of it and it
has two letters or digits: artwork comes back as confident-looking ``)``, ``—`` or ``8)``."""

MAX_FORM_DEPTH = 8
CACHE_SIZE = 256
"""Pictures remembered per process (a few words each), the least recently used forgotten first."""

_TRANSPOSE = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}
"""PIL's transposition that turns a picture clockwise by so many degrees, as ``/Rotate`` does."""

Matrix = tuple[float, float, float, float, float, float]
_IDENTITY: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)

_cache_lock = threading.Lock()
_cache: OrderedDict[tuple[object, ...], tuple[int, list[OcrWord]]] = OrderedDict()
"""Picture → the width in pixels it was read at and its words."""


class Picture(NamedTuple):
    """An image object of a page: its handle, its box as displayed, and how the form XObjects it
    sits in scale it and turn it (counter-clockwise, degrees, a multiple of 90)."""

    handle: Any
    box: tuple[float, float, float, float]
    container_scale: float
    container_turn: int = 0


def ocr_page(page: pdfium.PdfPage, frame: PageFrame, *, file_name: str, lang: str) -> list[Box]:
    """Render the whole page at 300 dpi and OCR it; boxes in displayed points."""
    scale = _render_scale(frame.width, frame.height, RENDER_DPI / 72.0)
    try:
        bitmap = page.render(scale=scale)
    except pdfium.PdfiumError as exc:
        raise DocumentError(file_name, f"page cannot be rendered for OCR: {exc}") from exc
    picture = grey(bitmap.to_pil())  # a copy: the bitmap's buffer is freed with the last reference
    words = recognize(picture, file_name=file_name, lang=lang, dpi=72.0 * scale)
    return page_boxes(words, frame.width / picture.width, 0.0, 0.0)


def ocr_pictures(
    pdf: pdfium.PdfDocument,
    page: pdfium.PdfPage,
    frame: PageFrame,
    text: list[Box],
    textpage: Any,
    *,
    objects: PdfObjects,
    file_name: str,
    lang: str,
) -> list[Box]:
    """The words of the page's pictures that the text layer ``text`` does not already have.

    ``objects`` are the PDF's bytes, by which pictures seen before are known again.
    """
    page_area = max(frame.width * frame.height, 1.0)
    found: list[Box] = []
    for picture in pictures(page, frame):
        x0, y0, x1, y1 = picture.box
        if x1 - x0 < MIN_PICTURE_W_PT or y1 - y0 < MIN_PICTURE_H_PT:
            continue
        scan = (x1 - x0) * (y1 - y0) >= SCAN_SHARE * page_area
        if scan and text and _text_is_invisible(textpage):
            continue
        read = _picture_words(
            pdf, page, picture, frame.rotation, objects, file_name=file_name, lang=lang, scan=scan
        )
        if read is None:
            continue
        width, words = read
        k = (x1 - x0) / width
        if scan:
            boxes = page_boxes(words, k, x0, y0)
        else:
            boxes = [
                (w.text, x0 + w.left * k, y0 + w.top * k, x0 + w.right * k, y0 + w.bottom * k)
                for w in words
                if w.conf >= MIN_PICTURE_CONF and sum(c.isalnum() for c in w.text) >= 2
            ]
        below = [b for b in text if b[1] < x1 and b[3] > x0 and b[2] < y1 and b[4] > y0]
        found.extend(b for b in boxes if not _covered(b, below))
    return found


def forget_pictures() -> None:
    """Forget every remembered picture (the next sight of each is OCR'd again)."""
    with _cache_lock:
        _cache.clear()


def pictures(page: pdfium.PdfPage, frame: PageFrame) -> list[Picture]:
    """Every image object of the page, also inside form XObjects, with its displayed box."""
    found: list[Picture] = []
    count, get = plain.PAGE_COUNT_OBJECTS, plain.PAGE_GET_OBJECT
    _walk(plain.handle(page.raw), count, get, _IDENTITY, 0, frame, found)
    return found


def _walk(
    container: plain.Handle,
    count: Any,
    get: Any,
    matrix: Matrix,
    depth: int,
    frame: PageFrame,
    found: list[Picture],
) -> None:
    # every text run of a page is an object too: the plain calls keep this walk cheap
    get_type, image, form = (
        plain.OBJECT_TYPE,
        pdfium_c.FPDF_PAGEOBJ_IMAGE,
        pdfium_c.FPDF_PAGEOBJ_FORM,
    )
    left, bottom = ctypes.c_float(), ctypes.c_float()
    right, top = ctypes.c_float(), ctypes.c_float()
    for index in range(count(container)):
        obj = get(container, index)
        kind = get_type(obj)
        if kind == image:
            handle = plain.typed(obj, pdfium_c.FPDF_PAGEOBJECT)
            if not pdfium_c.FPDFPageObj_GetBounds(handle, left, bottom, right, top):
                continue
            box = _transform_box(matrix, left.value, bottom.value, right.value, top.value)
            shown = frame.to_display(*box)
            scale = math.hypot(matrix[0], matrix[1]) or 1.0
            turn = round(math.degrees(math.atan2(matrix[1], matrix[0])) / 90) * 90 % 360
            found.append(Picture(handle, shown, scale, turn))
        elif kind == form and depth < MAX_FORM_DEPTH:
            fs = pdfium_c.FS_MATRIX()
            if not pdfium_c.FPDFPageObj_GetMatrix(plain.typed(obj, pdfium_c.FPDF_PAGEOBJECT), fs):
                continue
            inner = _compose((fs.a, fs.b, fs.c, fs.d, fs.e, fs.f), matrix)
            count_in, get_in = plain.FORM_COUNT_OBJECTS, plain.FORM_GET_OBJECT
            _walk(obj, count_in, get_in, inner, depth + 1, frame, found)


def _compose(child: Matrix, parent: Matrix) -> Matrix:
    """The matrix applying ``child`` first, then ``parent`` (PDF ``a b c d e f`` order)."""
    a, b, c, d, e, f = child
    pa, pb, pc, pd, pe, pf = parent
    return (
        a * pa + b * pc,
        a * pb + b * pd,
        c * pa + d * pc,
        c * pb + d * pd,
        e * pa + f * pc + pe,
        e * pb + f * pd + pf,
    )


def _transform_box(
    m: Matrix, left: float, bottom: float, right: float, top: float
) -> tuple[float, float, float, float]:
    if m == _IDENTITY:
        return left, bottom, right, top
    xs: list[float] = []
    ys: list[float] = []
    for x, y in ((left, bottom), (left, top), (right, bottom), (right, top)):
        xs.append(m[0] * x + m[2] * y + m[4])
        ys.append(m[1] * x + m[3] * y + m[5])
    return min(xs), min(ys), max(xs), max(ys)


def _render_scale(width_pt: float, height_pt: float, scale: float) -> float:
    pixels = width_pt * height_pt * scale * scale
    if pixels > MAX_RENDER_PIXELS:
        scale *= (MAX_RENDER_PIXELS / pixels) ** 0.5
    return scale


def _picture_words(
    pdf: pdfium.PdfDocument,
    page: pdfium.PdfPage,
    picture: Picture,
    rotation: int,
    objects: PdfObjects,
    *,
    file_name: str,
    lang: str,
    scan: bool,
) -> tuple[int, list[OcrWord]] | None:
    """The width in pixels the picture is read at and its words; ``None``: not a readable picture.

    Remembered per process (:data:`CACHE_SIZE` pictures) by what the picture is made of and how
    it is rendered, or, when the file does not tell what it is made of, by its rendered pixels.
    """
    target = _render_target(picture)
    if target is None:
        return None
    original, scaled = target
    handle = picture.handle
    # PDFium applies the image's own matrix, not its forms': turn what is left to see it as shown
    turn = (rotation - picture.container_turn) % 360
    psm = PAGE_PSM if scan else PICTURE_PSM
    key: tuple[object, ...] | None = None
    source = objects.image_digest(stream_data(handle))
    if source is not None:
        matrix = (scaled.a, scaled.b, scaled.c, scaled.d, scaled.e, scaled.f)
        key = ("source", source, matrix, turn, _fill_color(handle), lang, psm)
        remembered = _recall(key)
        if remembered is not None:
            return remembered
    image = _render_picture(pdf, page, handle, original, scaled, turn)
    if image is None:
        return None
    if key is None:
        pixels = hashlib.blake2b(image.tobytes(), digest_size=16).digest()
        key = ("pixels", pixels, image.size, lang, psm)
        remembered = _recall(key)
        if remembered is not None:
            return remembered
    words = recognize(image, file_name=file_name, lang=lang, dpi=RENDER_DPI, psm=psm)
    _remember(key, (image.width, words))
    return image.width, words


def _render_target(picture: Picture) -> tuple[pdfium_c.FS_MATRIX, pdfium_c.FS_MATRIX] | None:
    """The picture's matrix and the one that renders it at about 300 dpi; ``None``: too small.

    PDFium renders an image object at one pixel per unit of its matrix, so the matrix is scaled
    for the rendering.
    """
    handle = picture.handle
    width_px, height_px = ctypes.c_uint(), ctypes.c_uint()
    if not pdfium_c.FPDFImageObj_GetImagePixelSize(handle, width_px, height_px):
        return None
    if min(width_px.value, height_px.value) < MIN_PICTURE_PX:
        return None
    original = pdfium_c.FS_MATRIX()
    if not pdfium_c.FPDFPageObj_GetMatrix(handle, original):
        return None
    x0, y0, x1, y1 = picture.box
    k = _render_scale(x1 - x0, y1 - y0, RENDER_DPI / 72.0) / picture.container_scale
    scaled = pdfium_c.FS_MATRIX(
        original.a * k, original.b * k, original.c * k, original.d * k, original.e, original.f
    )
    return original, scaled


def _fill_color(handle: Any) -> tuple[int, ...]:
    """The colour a stencil mask is painted in, and the alpha every image is painted with."""
    r, g, b, a = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
    if not pdfium_c.FPDFPageObj_GetFillColor(handle, r, g, b, a):
        return ()
    return r.value, g.value, b.value, a.value


def _render_picture(
    pdf: pdfium.PdfDocument,
    page: pdfium.PdfPage,
    handle: Any,
    original: pdfium_c.FS_MATRIX,
    scaled: pdfium_c.FS_MATRIX,
    turn: int,
) -> Image.Image | None:
    """The picture alone (mask applied, on white, turned by ``turn``) at the ``scaled`` matrix."""
    pdfium_c.FPDFPageObj_SetMatrix(handle, scaled)
    try:
        raw = pdfium_c.FPDFImageObj_GetRenderedBitmap(pdf.raw, page.raw, handle)
    finally:
        pdfium_c.FPDFPageObj_SetMatrix(handle, original)
    if not raw:
        return None
    image = grey(pdfium.PdfBitmap.from_raw(raw).to_pil())  # a copy; the bitmap is freed with it
    if turn in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[turn])
    return image


def _recall(key: tuple[object, ...]) -> tuple[int, list[OcrWord]] | None:
    with _cache_lock:
        remembered = _cache.get(key)
        if remembered is not None:
            _cache.move_to_end(key)
        return remembered


def _remember(key: tuple[object, ...], read: tuple[int, list[OcrWord]]) -> None:
    with _cache_lock:
        _cache[key] = read
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def _covered(box: Box, text: list[Box]) -> bool:
    """Whether a recognized word mostly lies on a word of the text layer."""
    _, x0, y0, x1, y1 = box
    area = max((x1 - x0) * (y1 - y0), 1e-6)
    for _, u0, v0, u1, v1 in text:
        w = min(x1, u1) - max(x0, u0)
        h = min(y1, v1) - max(y0, v0)
        if w > 0 and h > 0 and w * h > 0.3 * area:
            return True
    return False


def _text_is_invisible(textpage: Any, samples: int = 24) -> bool:
    """Whether the page's text is mostly invisible (render mode 3): an OCR'd scan's text layer."""
    count = pdfium_c.FPDFText_CountChars(textpage)
    seen = invisible = 0
    for index in range(0, count, max(1, count // samples)):
        obj = pdfium_c.FPDFText_GetTextObject(textpage, index)
        if not obj:
            continue
        seen += 1
        if pdfium_c.FPDFTextObj_GetTextRenderMode(obj) == pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE:
            invisible += 1
    return seen > 0 and invisible >= 0.8 * seen
