"""OCR through the Tesseract engine: an image → words with pixel boxes.

Tesseract is a system program (Debian package ``tesseract-ocr``, one more package per language), so
it may be missing where flowd runs. :func:`require_tesseract` is asked before any OCR and turns that
into a :class:`~flowd.errors.MissingDependencyError` (the file can be retried once the package is
installed) or, for a language without its traineddata, a :class:`~flowd.errors.DocumentError` naming
the package to install. Files that need no OCR never ask, so they keep working without Tesseract.

Images are handed over as 8-bit grey: Tesseract binarizes them itself, and grey halves the bytes
pytesseract writes to its temporary file. Transparent images are flattened onto white first, since a
logo's letters are often drawn by its alpha mask alone.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from typing import NamedTuple

import pytesseract
from PIL import Image

from flowd.engine.digitize.layout import Box
from flowd.errors import DocumentError, MissingDependencyError

TESSERACT_PACKAGE = "tesseract-ocr"

MISSING_TESSERACT = (
    "this file needs OCR, but the Tesseract OCR engine is not installed: "
    f"install the Debian package '{TESSERACT_PACKAGE}' (apt-get install {TESSERACT_PACKAGE})"
)

LIST_LANGS_TIMEOUT_S = 30.0

MIN_PAGE_CONF = 30.0
"""Tesseract's confidence below which a word on a page is dropped, unless it has letters or digits:
specks and rules come back as low-confidence ``|``, ``~`` or ``—``."""


class OcrWord(NamedTuple):
    """A recognized word: text, box in pixels of the image Tesseract read, confidence 0-100."""

    text: str
    left: float
    top: float
    right: float
    bottom: float
    conf: float


_found: dict[tuple[str, str], str] = {}
"""``(command, PATH)`` → where the program is, found once per process (:func:`tesseract_path`)."""


def tesseract_path() -> str | None:
    """Where the ``tesseract`` program pytesseract would run is, or ``None`` when it is missing.

    Asked for every PDF under ``ocr = "auto"``, and a search of ``PATH`` costs a ``stat`` per
    folder, so a program found is remembered for its command and ``PATH``. A missing one is looked
    for again each time: installing the package must heal a retry without restarting the workers.
    """
    command: str = pytesseract.pytesseract.tesseract_cmd
    key = (command, os.environ.get("PATH", ""))
    path = _found.get(key)
    if path is None:
        path = shutil.which(command)
        if path is not None:
            _found[key] = path
    return path


def forget_tesseract() -> None:
    """Forget where Tesseract was found: the next :func:`tesseract_path` searches again."""
    _found.clear()


def require_tesseract(file_name: str, languages: tuple[str, ...]) -> str:
    """Check that Tesseract and every language are installed; return the ``lang`` argument.

    Raises :class:`MissingDependencyError` when the program is missing and :class:`DocumentError`
    naming the Debian package of the first language whose traineddata is not installed.
    """
    path = tesseract_path()
    if path is None:
        raise MissingDependencyError(file_name, MISSING_TESSERACT)
    installed = _installed_languages(path)
    if not installed.issuperset(languages):  # installed since the list was cached?
        _installed_languages.cache_clear()
        installed = _installed_languages(path)
    for language in languages:
        if language not in installed:
            package = f"{TESSERACT_PACKAGE}-{language.lower().replace('_', '-')}"
            raise DocumentError(
                file_name,
                f"OCR language '{language}' is not installed for Tesseract: "
                f"install the Debian package '{package}'",
            )
    return "+".join(languages)


@functools.lru_cache(maxsize=8)
def _installed_languages(path: str) -> frozenset[str]:
    """The languages ``tesseract --list-langs`` reports (cached per program: it costs a process)."""
    try:
        result = subprocess.run(
            [path, "--list-langs"],
            capture_output=True,
            timeout=LIST_LANGS_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    lines = (result.stdout + result.stderr).decode("utf-8", "replace").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and " " not in line.strip())


def grey(image: Image.Image) -> Image.Image:
    """An 8-bit grey copy of ``image``; transparency is flattened onto white."""
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit and float scans: scale to 8 bits instead of clipping everything above 255 to white
        extrema = image.getextrema()
        low, high = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]
        span = high - low or 1.0
        return image.convert("F").point(lambda v: (v - low) * 255.0 / span).convert("L")
    return image.convert("L")


PAGE_PSM = 4
"""Tesseract's page segmentation for pages: 4 reads the page as one column of lines of varying
size. The automatic mode 3 looks for text blocks and, on invoices, drops whole right-hand columns
of amounts it takes for non-text (seen on a scanned invoice); flowd lays the words out itself, so
Tesseract's block structure is not needed."""


def recognize(
    image: Image.Image, *, file_name: str, lang: str, dpi: float, psm: int = PAGE_PSM
) -> list[OcrWord]:
    """Run Tesseract on ``image`` (already grey) and return its words, in pixels of ``image``.

    ``psm`` is Tesseract's page segmentation mode: :data:`PAGE_PSM` for pages, 11 (sparse text)
    for logos and letterheads, where there are no lines to follow.
    """
    try:
        data = pytesseract.image_to_data(
            image,
            lang=lang,
            config=f"--psm {psm} --dpi {round(dpi)}",
            output_type=pytesseract.Output.DICT,
        )
    except pytesseract.TesseractNotFoundError as exc:
        forget_tesseract()  # uninstalled since it was found: look again next time
        raise MissingDependencyError(file_name, MISSING_TESSERACT) from exc
    except pytesseract.TesseractError as exc:
        raise DocumentError(file_name, f"OCR failed: {exc.message}") from exc
    words: list[OcrWord] = []
    for text, level, left, top, width, height, conf in zip(
        data["text"],
        data["level"],
        data["left"],
        data["top"],
        data["width"],
        data["height"],
        data["conf"],
        strict=True,
    ):
        text = str(text).strip()
        if int(level) != 5 or not text:
            continue
        x, y = float(left), float(top)
        words.append(OcrWord(text, x, y, x + float(width), y + float(height), float(conf)))
    return words


def page_boxes(words: list[OcrWord], points_per_px: float, left: float, top: float) -> list[Box]:
    """Words of an OCR'd page → boxes in points, offset by ``(left, top)``; noise dropped."""
    k = points_per_px
    return [
        (w.text, left + w.left * k, top + w.top * k, left + w.right * k, top + w.bottom * k)
        for w in words
        if w.conf >= MIN_PAGE_CONF or (w.conf >= 0 and any(c.isalnum() for c in w.text))
    ]
