"""Throughput of ``flowd run`` on text invoices, against a plain-Python floor in the same run.

    python bench/throughput.py [--count 5000] [--workers 0] [--keep]

Generates N realistic text invoices (``bench/gen_invoices.py``), compiles the example invoice flow
(``examples/invoices``: refiner, UDF, checkpoint), and times:

- ``flowd run`` end to end (a real subprocess: start-up, digitizing, every step output, results);
- the *floor*: one Python loop that reads each file, applies the same kind of regexes and writes one
  JSON per file — the least any tool could do with these documents.

It prints docs/s for both and their ratio, and checks flowd's results against the generator's
expected values.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import compile_example, run, work_folder
from gen_invoices import generate

NUMBER = re.compile(r"(?i)invoice[ \t]*(?:no\.?|number|#)[ \t]*:?[ \t]*([A-Z0-9][A-Z0-9/-]{3,})")
DATE = re.compile(r"Date:?[ \t]*(.+?)(?:[ \t]{2,}|$)", re.M)
TOTAL = re.compile(r"Total:[ \t]*(.+?)(?:[ \t]{2,}|$)", re.M)
CURRENCY = re.compile(r"Currency:[ \t]*(\S+)")
ISSUER = re.compile(r"^\s*(\S+(?: \S+)*)")


def floor(inbox: Path, out: Path) -> float:
    """A plain loop: read, regex, write one JSON per file. Returns seconds."""
    out.mkdir(parents=True)
    started = time.perf_counter()
    for entry in os.scandir(inbox):
        if not entry.name.endswith(".txt"):
            continue
        with open(entry.path, encoding="utf-8") as fh:
            text = fh.read()
        found = {}
        for key, pattern in (
            ("invoice_number", NUMBER),
            ("date", DATE),
            ("total", TOTAL),
            ("currency", CURRENCY),
            ("issuer", ISSUER),
        ):
            m = pattern.search(text)
            found[key] = m.group(1) if m else None
        with open(out / (entry.name + ".json"), "w", encoding="utf-8") as fh:
            json.dump(found, fh)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--dir",
        help="where to make the work folder (default: the temp dir); "
        "/dev/shm measures the CPU, not the disk",
    )
    args = parser.parse_args()

    with work_folder("flowd-bench-", args.dir, args.keep) as work:
        inbox = work / "inbox"
        expected = generate(inbox, args.count)
        binary = compile_example(work)

        floor_s = floor(inbox, work / "floor")

        started = time.perf_counter()
        ran = run(binary, inbox, work / "out", args.workers)
        flowd_s = time.perf_counter() - started
        if ran.returncode != 0:
            sys.exit(f"flowd run exited {ran.returncode}:\n{ran.stderr[-2000:]}")

        rows = json.loads((work / "out" / "results.json").read_text())
        wrong = sum(1 for r in rows if any(r[k] != v for k, v in expected[r["file_name"]].items()))
        n = args.count
        print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
        print(f"documents: {n} text invoices, {len(rows)} results, {wrong} with a wrong field")
        print(f"floor (plain loop, 1 process): {n / floor_s:9.0f} docs/s  ({floor_s:.2f} s)")
        print(f"flowd run (end to end):        {n / flowd_s:9.0f} docs/s  ({flowd_s:.2f} s)")
        print(f"ratio flowd / floor:           {floor_s / flowd_s:9.2f}")


if __name__ == "__main__":
    main()
