"""Image files (PNG, JPEG, TIFF, …) → pages, through OCR.

An image has no text layer, so it always needs OCR; with ``ocr = "never"`` it is an error rather
than an empty document, because an empty result would look like success. A multi-page TIFF (fax,
scanner batch) gives one page per frame. Phone photos are first turned upright by their EXIF
orientation.

Pages are measured in points like PDF pages: pixels × 72 / the image's resolution (300 dpi when it
does not say, or says something absurd). Small images are enlarged before OCR — Tesseract reads best
when capital letters are 20-30 pixels tall, and a screenshot or a small scan has them at 10 — and
the boxes are scaled back.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator

from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from flowd.engine.digitize.layout import layout_page
from flowd.engine.digitize.ocr import grey, page_boxes, recognize, require_tesseract
from flowd.engine.digitize.settings import DigitizeSettings
from flowd.engine.document import Page
from flowd.errors import DocumentError

DEFAULT_DPI = 300.0
MIN_SANE_DPI = 50.0
MAX_SANE_DPI = 1200.0

SMALL_IMAGE_PX = 2000
"""Images whose longer side is shorter than this are enlarged towards it before OCR."""
MAX_UPSCALE = 3.0


def read_image(file_name: str, data: bytes, settings: DigitizeSettings) -> tuple[Page, ...]:
    """OCR every frame of the image in ``data``."""
    if settings.ocr == "never":
        raise DocumentError(file_name, "image needs OCR but ocr is 'never'")
    image = _open(file_name, data)
    lang = require_tesseract(file_name, settings.languages)
    pages: list[Page] = []
    try:
        for number, (frame, dpi) in enumerate(_frames(file_name, image), start=1):
            pages.append(_ocr_frame(file_name, number, frame, dpi, lang))
    finally:
        image.close()
    return tuple(pages)


def _open(file_name: str, data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DocumentError(file_name, f"image is too large to OCR: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise DocumentError(file_name, "not a valid image: unknown or corrupt image data") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or damaged data
        raise DocumentError(file_name, f"not a valid image: {exc}") from exc
    return image


def _frames(file_name: str, image: Image.Image) -> Iterator[tuple[Image.Image, float]]:
    """The pages of a (multi-page) TIFF, else the image itself, turned upright by EXIF, each with
    its resolution."""
    frames = ImageSequence.Iterator(image) if image.format == "TIFF" else iter((image,))
    try:
        for frame in frames:
            frame.load()
            yield ImageOps.exif_transpose(frame), _dpi(frame)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DocumentError(file_name, f"not a valid image: {exc}") from exc


def _dpi(image: Image.Image) -> float:
    dpi = image.info.get("dpi")
    try:
        value = float(dpi[0]) if dpi else 0.0
    except (TypeError, ValueError, IndexError):
        value = 0.0
    return value if MIN_SANE_DPI <= value <= MAX_SANE_DPI else DEFAULT_DPI


def _ocr_frame(file_name: str, number: int, frame: Image.Image, dpi: float, lang: str) -> Page:
    picture = grey(frame)
    width_px, height_px = picture.size
    scale = min(MAX_UPSCALE, SMALL_IMAGE_PX / max(width_px, height_px, 1))
    if scale > 1.25:
        size = (round(width_px * scale), round(height_px * scale))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    else:
        scale = 1.0
    words = recognize(picture, file_name=file_name, lang=lang, dpi=dpi * scale)
    points_per_px = 72.0 / (dpi * scale)
    boxes = page_boxes(words, points_per_px, 0.0, 0.0)
    text, ordered = layout_page(boxes)
    return Page(
        number=number,
        text=text,
        width=width_px * 72.0 / dpi,
        height=height_px * 72.0 / dpi,
        words=ordered,
        ocr=True,
    )
