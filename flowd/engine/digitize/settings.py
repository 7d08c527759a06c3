"""How ``process_files`` digitizes: the OCR policy and the OCR languages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

OcrPolicy = Literal["auto", "always", "never"]

_LANGUAGE = re.compile(r"[A-Za-z0-9_]+\Z")


@dataclass(frozen=True, slots=True)
class DigitizeSettings:
    """The ``process_files`` step's settings.

    ``ocr``: ``"auto"`` OCRs PDF pages without a text layer, images, and the pictures on text pages
    that are large enough to hold text (letterheads, pasted scans); ``"always"`` OCRs every page and
    ignores text layers; ``"never"`` reads text layers only (an image file is then an error).
    ``languages``: Tesseract language codes (``"eng"``, ``"deu"``, ``"chi_sim"``), used together.
    """

    ocr: OcrPolicy = "auto"
    languages: tuple[str, ...] = ("eng",)

    def __post_init__(self) -> None:
        # a list from JSON settings is accepted, and kept as a tuple so the value stays hashable
        object.__setattr__(self, "languages", tuple(self.languages))
        if self.ocr not in ("auto", "always", "never"):
            raise ValueError(f"ocr must be 'auto', 'always' or 'never', not {self.ocr!r}")
        if not self.languages:
            raise ValueError("languages must name at least one Tesseract language")
        for language in self.languages:
            if not isinstance(language, str) or not _LANGUAGE.match(language):
                raise ValueError(f"not a Tesseract language code: {language!r}")
