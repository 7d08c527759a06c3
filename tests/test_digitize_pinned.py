"""The corpus PDFs read exactly as they did: a guard for work on the speed of digitization.

Each page's ``.ibdoc`` form (text, size, OCR flag, word boxes rounded as stored) is pinned by a
digest, taken from the implementation before it was optimized. A change of output is a change of
behaviour: if it is meant, review the new text and pin it again (the failure prints the page).

The OCR'd pages depend on Tesseract's version and models, so they are pinned only for the version
the digests were taken with; the text layer is Tesseract's business nowhere. They are read twice:
first seen (rendered and OCR'd), then recalled from the per-process memo of pictures.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from flowd.engine.digitize import DigitizeSettings, digitize
from flowd.engine.digitize.pdf_ocr import forget_pictures
from flowd.engine.document import Page

CORPUS = Path(__file__).resolve().parent / "fixtures" / "corpus"

NEVER_PAGES = {
    "AmazonWebServices.pdf": ("d1443208a57c3c491b82bd5ab334633c",),
    "NetpresseInvoice.pdf": ("63750519fca977b4250a8161367d1dab",),
    "QualityHosting.pdf": ("d88bfad9bf292d6437afaef2e77fa71a", "a4d297cdd67453938ba5552e1fbf5d21"),
    "coolblue1.pdf": ("ea1479afe9592bb6203c6c0759117721",),
    "free_fiber.pdf": ("4724e43665f6a1cf25d67c60db3a2172", "3b9a660a450b964fea9c6739a147d54c"),
}

PINNED_TESSERACT = "tesseract 5.3.0"
AUTO_PAGES = {
    "AmazonWebServices.pdf": ("9fc37b3b7943080df2af792783a0249b",),
    "NetpresseInvoice.pdf": ("7f98f0018eacb06b0817d457e8d04534",),
    "QualityHosting.pdf": ("1f69888ddd96b4c1c8083f7cb8c6a847", "d342859e206593549a0a9a7c56f54351"),
    "coolblue1.pdf": ("d6fee360a12724dacfac8aa672993092",),
    "free_fiber.pdf": ("4724e43665f6a1cf25d67c60db3a2172", "3b9a660a450b964fea9c6739a147d54c"),
}


def digest(page: Page) -> str:
    serialized = json.dumps(page.to_dict(), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(serialized.encode("utf-8")).hexdigest()[:32]


def check(name: str, settings: DigitizeSettings, expected: tuple[str, ...]) -> None:
    document = digitize(name, (CORPUS / name).read_bytes(), settings)
    assert len(document.pages) == len(expected)
    for page, pinned in zip(document.pages, expected, strict=True):
        assert digest(page) == pinned, f"page {page.number} of {name} changed:\n{page.text}"


def tesseract_version() -> str:
    if shutil.which("tesseract") is None:
        return ""
    result = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, timeout=30)
    lines = (result.stdout + result.stderr).splitlines()
    return lines[0].strip() if lines else ""


@pytest.mark.parametrize("name", sorted(NEVER_PAGES))
def test_the_text_layer_of_the_corpus_reads_as_pinned(name: str) -> None:
    check(name, DigitizeSettings(ocr="never"), NEVER_PAGES[name])


@pytest.mark.skipif(
    tesseract_version() != PINNED_TESSERACT, reason=f"OCR is pinned for {PINNED_TESSERACT}"
)
@pytest.mark.parametrize("name", sorted(AUTO_PAGES))
def test_the_corpus_with_its_pictures_reads_as_pinned(name: str) -> None:
    forget_pictures()
    check(name, DigitizeSettings(ocr="auto"), AUTO_PAGES[name])  # pictures first seen
    check(name, DigitizeSettings(ocr="auto"), AUTO_PAGES[name])  # and remembered
