"""Benchmark: PDF text extraction speed of flowd's layout text against its references.

Over the corpus PDFs, each repeated ``--repeat`` times, prints documents per second for

- ``pypdfium2 get_text_range``: PDFium's plain text, the floor (no layout at all);
- ``flowd digitize (ocr=never)``: the layout-preserving text flowd stores, built from char boxes;
- ``pdftotext -layout``: poppler's layout text, one process per file (if installed),

and the ratio of each to the floor. Run: ``.venv/bin/python bench/pdf_text.py [--repeat N] [PDF…]``.
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

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "corpus"
SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "invoice2data"
NEVER = DigitizeSettings(ocr="never")


def plain_text(name: str, data: bytes) -> None:
    pdf = pdfium.PdfDocument(data)
    try:
        for page in pdf:
            textpage = page.get_textpage()
            textpage.get_text_range()
            textpage.close()
            page.close()
    finally:
        pdf.close()


def flowd_layout(name: str, data: bytes) -> None:
    digitize(name, data, NEVER)


def pdftotext(path: Path) -> None:
    subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, timeout=60
    )


def measure(run: Callable[[], None], documents: int) -> float:
    """Documents per second of ``run`` (which handles ``documents`` documents), best of three."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return documents / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="times each PDF is read (20)")
    parser.add_argument("pdfs", nargs="*", type=Path, help="PDFs (default: the test corpus)")
    args = parser.parse_args(argv)
    paths = args.pdfs or sorted(CORPUS.glob("*.pdf")) or sorted(SHARED_CORPUS.glob("*.pdf"))
    if not paths:
        print("no PDFs found", file=sys.stderr)
        return 2
    files = [(path, path.read_bytes()) for path in paths]
    documents = len(files) * args.repeat
    print(f"{len(files)} PDFs x {args.repeat} = {documents} documents")

    def over_all(read: Callable[[str, bytes], None]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(args.repeat):
                for path, data in files:
                    read(path.name, data)

        return run

    floor = measure(over_all(plain_text), documents)
    rows = [("pypdfium2 get_text_range", floor)]
    rows.append(("flowd digitize (ocr=never)", measure(over_all(flowd_layout), documents)))
    if shutil.which("pdftotext"):

        def poppler() -> None:
            for _ in range(args.repeat):
                for path, _data in files:
                    pdftotext(path)

        rows.append(("pdftotext -layout (process)", measure(poppler, documents)))
    else:
        print("pdftotext not installed: skipped (Debian package poppler-utils)")
    for label, rate in rows:
        print(f"{label:30} {rate:9.1f} docs/s   {floor / rate:5.2f}x the time of get_text_range")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
