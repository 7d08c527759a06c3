"""What the benchmarks share: running the ``flowd`` CLI and compiling the example invoice flow."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def flowd(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``flowd ARGS`` as a real subprocess of this Python."""
    return subprocess.run(
        [sys.executable, "-m", "flowd.cli", *args], capture_output=True, text=True
    )


def compile_example(work: Path) -> str:
    """Copy ``examples/invoices`` into ``work`` and compile it; the binary's path."""
    project = work / "invoices"
    shutil.copytree(REPO / "examples" / "invoices", project, ignore=shutil.ignore_patterns("build"))
    compiled = flowd("compile", str(project))
    if compiled.returncode != 0:
        sys.exit(f"compile failed:\n{compiled.stderr}")
    return compiled.stdout.strip().splitlines()[-1]


def run(binary: str, inbox: Path, out: Path, workers: int) -> subprocess.CompletedProcess[str]:
    """``flowd run`` of ``binary`` over ``inbox`` into ``out``."""
    return flowd("run", binary, str(inbox), "--output-dir", str(out), "--workers", str(workers))


@contextmanager
def work_folder(prefix: str, where: str | None, keep: bool) -> Iterator[Path]:
    """A fresh folder for a benchmark's files (in ``where``, default the temp folder), removed
    afterwards unless ``keep``, when its path is printed instead."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    try:
        yield work
    finally:
        if keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
