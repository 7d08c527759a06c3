"""What the benchmarks share: running the ``flowd`` CLI and compiling the example invoice flow."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
