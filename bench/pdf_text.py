"""Benchmark: PDF digitizing speed of flowd against its references.

Over the corpus PDFs, each repeated ``--repeat`` times, prints milliseconds per document and
documents per second for

- ``pypdfium2 get_text_range``: PDFium's plain text, the floor (no layout at all);
- ``flowd digitize (ocr=never)``: the layout-preserving text flowd stores, built from char boxes;
- ``flowd digitize (ocr=auto, warm)``: the same plus the letterhead pictures, every picture already
  read once by this process (the usual case: the same letterheads come on every invoice);
- ``flowd digitize (ocr=auto, cold)``: every picture seen for the first time, so rendered and read
  by Tesseract (``--cold-repeat`` passes; skipped without Tesseract);
- ``pdftotext -layout``: poppler's layout text, one process per file (if installed),

and the ratio of each to the floor. Every figure is the best of three runs in one process, after
one warm-up pass. Run: ``.venv/bin/python bench/pdf_text.py [--repeat N] [--cold-repeat N] [PDF…]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pypdfium2 as pdfium

from flowd.engine.digitize import DigitizeSettings, digitize
from flowd.engine.digitize.ocr import tesseract_path
from flowd.engine.digitize.pdf_ocr import forget_pictures

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "corpus"
SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "invoice2data"
NEVER = DigitizeSettings(ocr="never")
AUTO = DigitizeSettings(ocr="auto")

Files = list[tuple[Path, bytes]]


def plain_text(path: Path, data: bytes) -> None:
    pdf = pdfium.PdfDocument(data)
    try:
        for page in pdf:
            textpage = page.get_textpage()
            textpage.get_text_range()
            textpage.close()
            page.close()
    finally:
        pdf.close()


def flowd_layout(path: Path, data: bytes) -> None:
    digitize(path.name, data, NEVER)


def flowd_auto(path: Path, data: bytes) -> None:
    digitize(path.name, data, AUTO)


def flowd_auto_cold(path: Path, data: bytes) -> None:
    forget_pictures()  # costs nothing next to reading the pictures again
    digitize(path.name, data, AUTO)


def pdftotext(path: Path, data: bytes) -> None:
    subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, timeout=60
    )


def measure(read: Callable[[Path, bytes], None], files: Files, repeat: int) -> float:
    """Seconds per document of ``read`` over ``files`` read ``repeat`` times, best of three."""
    for path, data in files:  # warm-up: imports, fonts, the picture memo
        read(path, data)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            for path, data in files:
                read(path, data)
        best = min(best, time.perf_counter() - start)
    return best / (repeat * len(files))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="times each PDF is read (20)")
    parser.add_argument(
        "--cold-repeat", type=int, default=1, help="times each PDF is read with OCR (1)"
    )
    parser.add_argument("pdfs", nargs="*", type=Path, help="PDFs (default: the test corpus)")
    args = parser.parse_args(argv)
    paths = args.pdfs or sorted(CORPUS.glob("*.pdf")) or sorted(SHARED_CORPUS.glob("*.pdf"))
    if not paths:
        print("no PDFs found", file=sys.stderr)
        return 2
    files = [(path, path.read_bytes()) for path in paths]
    print(f"{len(files)} PDFs x {args.repeat} = {len(files) * args.repeat} documents")

    floor = measure(plain_text, files, args.repeat)
    rows = [
        ("pypdfium2 get_text_range", floor),
        ("flowd digitize (ocr=never)", measure(flowd_layout, files, args.repeat)),
        ("flowd digitize (ocr=auto, warm)", measure(flowd_auto, files, args.repeat)),
    ]
    if tesseract_path() is None:
        print("Tesseract not installed: auto reads no pictures, cold skipped (tesseract-ocr)")
    else:
        cold = measure(flowd_auto_cold, files, args.cold_repeat)
        rows.append(("flowd digitize (ocr=auto, cold)", cold))
    if shutil.which("pdftotext"):
        rows.append(("pdftotext -layout (process)", measure(pdftotext, files, args.repeat)))
    else:
        print("pdftotext not installed: skipped (Debian package poppler-utils)")
    for label, seconds in rows:
        print(
            f"{label:32} {seconds * 1000:8.2f} ms/doc {1 / seconds:9.1f} docs/s"
            f"   {seconds / floor:6.2f}x the time of get_text_range"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
