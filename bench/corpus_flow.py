"""The example invoice flow over the corpus PDFs, beside raw text extraction of the same files.

    python bench/corpus_flow.py [--copies 40] [--workers 0] [--dir /dev/shm]

Copies the invoice2data corpus PDFs ``--copies`` times into an inbox, compiles
``examples/invoices`` (OCR ``auto``: pages without text are OCR'd, and so are letterhead images on
pages with text) and times ``flowd run`` end to end. On the same files, in the same run, it times
pypdfium2's plain text extraction (no layout; one process) and ``pdftotext -layout`` (a process per
file). For reference, the public invoice2data tool, which extracts the same fields with regex
templates, does about 100 docs/s in-process on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import REPO, compile_example, run
from pdf_text import pdftotext, plain_text

CORPUS = REPO / "examples" / "samples" / "invoices"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--dir", help="where to make the work folder (default: the temp dir)")
    args = parser.parse_args()
    pdfs = sorted(p for p in CORPUS.glob("*.pdf") if p.name != "scanned-invoice.pdf")
    work = Path(tempfile.mkdtemp(prefix="flowd-corpus-", dir=args.dir))
    try:
        inbox = work / "inbox"
        inbox.mkdir()
        for i in range(args.copies):
            for pdf in pdfs:
                shutil.copyfile(pdf, inbox / f"{pdf.stem}-{i:04d}.pdf")
        files = sorted(inbox.iterdir())
        n = len(files)
        binary = compile_example(work)

        started = time.perf_counter()
        for path in files:
            plain_text(path, path.read_bytes())
        raw_s = time.perf_counter() - started

        layout_s = None
        if shutil.which("pdftotext"):
            started = time.perf_counter()
            for path in files:
                pdftotext(path, b"")
            layout_s = time.perf_counter() - started

        started = time.perf_counter()
        ran = run(binary, inbox, work / "out", args.workers)
        flowd_s = time.perf_counter() - started
        rows = (
            json.loads((work / "out" / "results.json").read_text())
            if ran.returncode in (0, 3)
            else []
        )
        complete = sum(1 for r in rows if r.get("total") is not None)

        print(
            f"machine: {os.cpu_count()} cores; {n} PDFs ({len(pdfs)} corpus invoices x {args.copies})"
        )
        print(f"pypdfium2 plain text (1 process):   {n / raw_s:8.1f} docs/s")
        if layout_s is not None:
            print(f"pdftotext -layout (process/file):   {n / layout_s:8.1f} docs/s")
        print(
            f"flowd run, example flow, end to end: {n / flowd_s:8.1f} docs/s "
            f"(exit {ran.returncode}, {complete} with a total)"
        )
        print(f"flowd / invoice2data reference (100 docs/s): {n / flowd_s / 100:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
