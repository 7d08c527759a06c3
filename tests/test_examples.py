"""The shipped examples extract the expected header fields from the sample documents (SPEC §11).

Expected values for the invoice2data corpus come from that project's own JSON files (MIT); the
others from the generator that made them. OCR samples need Debian's ``tesseract-ocr``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import EXAMPLES, FLOWD

SAMPLES = EXAMPLES / "samples"
HEADER = ("invoice_number", "invoice_date", "total", "currency", "issuer")
NEEDS_OCR = {"oyo.png", "scanned-invoice.pdf"}
HAVE_TESSERACT = shutil.which("tesseract") is not None


def flowd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWD, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def invoice_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    work = tmp_path_factory.mktemp("examples")
    project = work / "invoices"
    shutil.copytree(EXAMPLES / "invoices", project, ignore=shutil.ignore_patterns("build"))
    inbox = work / "inbox"
    shutil.copytree(SAMPLES / "invoices", inbox)
    if not HAVE_TESSERACT:
        for name in NEEDS_OCR:
            (inbox / name).unlink()
    compiled = flowd("compile", str(project))
    assert compiled.returncode == 0, compiled.stderr
    binary = compiled.stdout.strip().splitlines()[-1]
    ran = flowd("run", binary, str(inbox), "--output-dir", str(work / "out"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == str(work / "out")
    rows = json.loads((work / "out" / "results.json").read_text())
    return {row["file_name"]: row for row in rows}


EXPECTED = json.loads((SAMPLES / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invoice_flow_extracts_expected_headers(
    invoice_results: dict[str, dict[str, object]], name: str
) -> None:
    if name in NEEDS_OCR and not HAVE_TESSERACT:
        pytest.skip("Debian package tesseract-ocr is not installed: OCR samples cannot be read")
    row = invoice_results[name]
    expected = EXPECTED[name]
    assert {k: row[k] for k in HEADER} == {k: expected[k] for k in HEADER}


def test_metaflow_routes_invoices_and_receipts(tmp_path: Path) -> None:
    project = tmp_path / "invoices"
    shutil.copytree(EXAMPLES / "invoices", project, ignore=shutil.ignore_patterns("build"))
    compiled = flowd(
        "compile",
        str(project),
        "--binary-type",
        "Metaflow",
        "--flows-dir",
        "flows",
        "--metaflow-file",
        "documents.ibmetaflow",
        "--classifier-file",
        "modules/documents.ibclassifier",
    )
    assert compiled.returncode == 0, compiled.stderr
    binary = compiled.stdout.strip().splitlines()[-1]
    assert binary.endswith("build/bin/documents.ibflowbin")
    ran = flowd("run", binary, str(SAMPLES / "mixed"), "--output-dir", str(tmp_path / "out"))
    assert ran.returncode == 0, ran.stderr
    rows = {r["file_name"]: r for r in json.loads((tmp_path / "out" / "results.json").read_text())}
    assert {n: (r["class_label"], r["status"]) for n, r in rows.items()} == {
        "coolblue1.pdf": ("invoice", "OK"),
        "inv-000001.txt": ("invoice", "OK"),
        "inv-000002.txt": ("invoice", "OK"),
        "letter.txt": ("other", "UNROUTED"),
        "receipt-corner-cafe.txt": ("receipt", "OK"),
        "receipt-hardware.txt": ("receipt", "OK"),
    }
    assert rows["coolblue1.pdf"]["total"] == 717.97
    assert rows["receipt-hardware.txt"]["total"] == 19.3
    assert rows["receipt-corner-cafe.txt"]["merchant"] == "Corner Cafe"
