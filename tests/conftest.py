"""Shared fixtures: small real projects written into temporary folders."""

from __future__ import annotations

import io
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CORPUS = REPO / "tests" / "fixtures" / "corpus"
FLOWD = [sys.executable, "-m", "flowd.cli"]

REFINER = {
    "version": 1,
    "fields": [
        {
            "name": "invoice_number",
            "formula": "regex_get(INPUT_COL, 'Invoice No:\\s*(\\S+)')",
            "type": "TEXT",
        },
        {"name": "__raw_total", "formula": "scan_right(INPUT_COL, 'Total:')"},
        {"name": "total", "formula": "to_number(__raw_total)", "type": "FLOAT"},
    ],
}


def wait_for(
    condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s``. (Waiting for work by polling
    a condition with a deadline, never by sleeping a fixed time.)"""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def flow(
    *steps: dict[str, Any], name: str = "test flow", patterns: list[str] | None = None
) -> dict[str, Any]:
    return {
        "version": 1,
        "name": name,
        "input": {"patterns": patterns or ["*"]},
        "steps": [{"step": "process_files", "settings": {"ocr": "never"}}, *steps],
    }


def refiner_step(path: str = "modules/invoice.ibrefiner") -> dict[str, Any]:
    return {"step": "apply_refiner", "settings": {"program": path}}


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    """Write a project: ``make_project({"a.ibflow": {...}, "modules/x.py": "text"})``."""

    def make(files: dict[str, Any], root: Path | None = None) -> Path:
        root = root or tmp_path / "project"
        for rel, content in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, (dict, list)):
                write_json(path, content)
            else:
                path.write_text(content, encoding="utf-8")
        return root

    return make


RANK_UDF = (
    "def rank(records, context):\n"
    "    ordered = sorted(records, key=lambda r: r['fields']['total'])\n"
    "    for i, r in enumerate(ordered):\n"
    "        r['fields']['rank'] = i + 1\n"
    "        r['fields']['count'] = len(records)\n"
    "    return ordered\n"
)


def ranked_project(make_project: Callable[..., Path], fields: list[str]) -> Path:
    """A flow with a reduce UDF (``rank``: every record's rank by total among all files, and
    their count) between the invoice refiner and a refiner that reads ``rank``."""
    return make_project(
        {
            "invoice.ibflow": flow(
                refiner_step(),
                {
                    "step": "apply_udf",
                    "settings": {
                        "script": "u.py",
                        "function": "rank",
                        "kind": "reduce",
                        "fields": fields,
                    },
                },
                {"step": "apply_refiner", "settings": {"program": "after.ibrefiner"}},
            ),
            "modules/invoice.ibrefiner": REFINER,
            "u.py": RANK_UDF,
            "after.ibrefiner": {
                "version": 1,
                "fields": [{"name": "label", "formula": "concat('#', rank)"}],
            },
        }
    )


@pytest.fixture
def simple_project(make_project: Callable[..., Path]) -> Path:
    return make_project(
        {"invoice.ibflow": flow(refiner_step()), "modules/invoice.ibrefiner": REFINER}
    )


def text_invoice(number: str, total: str) -> str:
    return f"ACME Ltd            INVOICE\nInvoice No: {number}\n\n          Total:     {total}\n"


@pytest.fixture
def copy_example(tmp_path: Path) -> Callable[[str], Path]:
    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("build", "out"))
        return target

    return copy


def on_rotated_page(landscape: bytes) -> bytes:
    """A landscape page drawn turned on a portrait sheet with ``/Rotate 90``, as scanners and
    print drivers make landscape pages: viewers turn it back, so it displays as ``landscape``."""
    source = pdfium.PdfDocument(landscape)
    target = pdfium.PdfDocument.new()
    width, height = source[0].get_size()
    form = source.page_as_xobject(0, target).as_pageobject()
    form.set_matrix(pdfium.PdfMatrix(0, 1, -1, 0, height, 0))  # (x, y) -> (height - y, x)
    page = target.new_page(height, width)
    page.insert_obj(form)
    page.gen_content()
    page.set_rotation(90)
    buffer = io.BytesIO()
    target.save(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def invoice_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example invoice flow, compiled once per test session (a fresh copy, outside the repo)."""
    from flowd.flows.compiler import compile_project
    from flowd.flows.project import CompileSettings

    root = tmp_path_factory.mktemp("example") / "invoices"
    shutil.copytree(EXAMPLES / "invoices", root, ignore=shutil.ignore_patterns("build", "out"))
    return compile_project(root, CompileSettings(flow_file="invoice.ibflow")).path


@pytest.fixture
def daemon(tmp_path: Path, invoice_binary: Path) -> Any:
    """A running ``flowd serve`` (2 workers) whose ``data_root`` holds ``invoice.ibflowbin`` and
    the example invoices in ``in/``; stopped at the end of the test."""
    from tests.daemon import DaemonProcess

    proc = DaemonProcess(tmp_path / "d")
    shutil.copy(invoice_binary, proc.data / "invoice.ibflowbin")
    shutil.copytree(EXAMPLES / "samples" / "invoices", proc.data / "in")
    with proc:
        yield proc
