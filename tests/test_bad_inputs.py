"""Bad input never breaks a run: each bad file fails alone, with a message naming it and the cause,
every other file is processed, and the outputs stay well-formed (SPEC §5, issue 2)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REFINER, flow, refiner_step, text_invoice
from fpdf import FPDF

from flowd.engine.run import start_run
from flowd.engine.settings import RunOutcome, RunSettings
from flowd.flows.compiler import compile_project
from flowd.flows.project import CompileSettings
from flowd.flows.specs import BinaryType

SINGLE = CompileSettings(BinaryType.SINGLE_FLOW, flow_file="invoice.ibflow")


def pdf_bytes(text: str, password: str | None = None) -> bytes:
    pdf = FPDF()
    if password:
        pdf.set_encryption(owner_password="owner", user_password=password)
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text=text)
    return bytes(pdf.output())


def errors_by_file(outcome: RunOutcome) -> dict[str, str]:
    return {f.file_name: f.error or "" for f in outcome.files if f.status == "FAILED"}


def check_well_formed(out: Path) -> None:
    batch = json.loads((out / "batch.ibflowresults").read_text())
    json.loads((out / "results.json").read_text())
    (out / "results.csv").read_text()
    assert batch["status"] in ("COMPLETE", "FAILED")
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name], "temporary files left behind"


def test_bad_files_fail_alone(simple_project: Path, tmp_path: Path) -> None:
    binary = compile_project(simple_project, SINGLE).path
    docs = tmp_path / "input"
    docs.mkdir()
    good = pdf_bytes("Invoice No: PDF-7   Total: 12.00")
    (docs / "good.txt").write_text(text_invoice("T-1", "1.00"))
    (docs / "good.pdf").write_bytes(good)
    (docs / "empty.txt").write_bytes(b"")
    (docs / "junk.txt").write_bytes(bytes(range(256)) * 40)
    (docs / "data.xyz").write_bytes(b"\x00\x01\x02binary")
    (docs / "truncated.pdf").write_bytes(good[: len(good) // 2])
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2000))
    (docs / "locked.pdf").write_bytes(pdf_bytes("secret", password="pw"))
    (docs / "zero.pdf").write_bytes(b"")
    with open(docs / "huge.txt", "wb") as fh:  # a sparse 100 MB file
        fh.truncate(100 * 1024 * 1024)
    outside = tmp_path / "secret.txt"
    outside.write_text(text_invoice("LEAK", "9"))
    (docs / "link.txt").symlink_to(outside)
    os.mkdir(os.fsencode(docs) + b"/sub")
    with open(os.fsencode(docs) + b"/sub/caf\xe9-latin1.txt", "wb") as fh:
        fh.write(text_invoice("NON-UTF8", "3.00").encode())

    outcome = start_run(binary, docs, RunSettings(workers=2))
    errors = errors_by_file(outcome)
    completed = {f.file_name for f in outcome.files if f.status == "COMPLETE"}
    assert completed == {"good.txt", "good.pdf", "sub/caf\ufffd-latin1.txt"}
    expected = {
        "empty.txt": "empty file",
        "junk.txt": "binary data",
        "data.xyz": "unsupported",
        "truncated.pdf": "PDF",
        "corrupt.pdf": "PDF",
        "locked.pdf": "encrypted",
        "zero.pdf": "empty file",
        "huge.txt": "larger than the limit of 50 MB",
        "link.txt": "outside the input folder (not followed)",
    }
    assert set(errors) == set(expected)
    for name, cause in expected.items():
        assert name in errors[name], errors[name]
        assert cause.lower() in errors[name].lower(), (name, errors[name])
    check_well_formed(outcome.output_folder)
    rows = json.loads((outcome.output_folder / "results.json").read_text())
    assert "LEAK" not in json.dumps(rows)
    numbers = {r["file_name"]: r["invoice_number"] for r in rows}
    assert numbers == {
        "good.txt": "T-1",
        "good.pdf": "PDF-7",
        "sub/caf\ufffd-latin1.txt": "NON-UTF8",
    }
    assert outcome.status == "FAILED" and outcome.exit_code == 1
    # the step outputs of the non-UTF-8 name live under its real (byte) name
    assert os.path.exists(
        os.fsencode(outcome.output_folder) + b"/s1_process_files/sub/caf\xe9-latin1.txt.ibdoc"
    )


def test_catastrophic_regex_fails_the_field_not_the_worker(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    refiner = {
        "version": 1,
        "fields": [
            {"name": "slow", "formula": "regex_get(INPUT_COL, '(a+)+$')"},
            {"name": "fine", "formula": "len(INPUT_COL)"},
        ],
    }
    root = make_project(
        {"invoice.ibflow": flow(refiner_step("r.ibrefiner")), "r.ibrefiner": refiner}
    )
    docs = tmp_path / "input"
    docs.mkdir()
    (docs / "evil.txt").write_text("a" * 40000 + "b")
    outcome = start_run(compile_project(root, SINGLE).path, docs, RunSettings(workers=1))
    rec = outcome.files[0].records[0]
    values = {f.key: f for f in rec.fields}
    assert values["slow"].value == "ERROR" and "time" in (values["slow"].error_msg or "").lower()
    assert values["fine"].value == 40001


UDFS = {
    "raises": "def f(record, context):\n    raise ValueError('vendor table is empty')\n",
    "exits": "import sys\ndef f(record, context):\n    sys.exit(3)\n",
    "returns_none": "def f(record, context):\n    return None\n",
    "loops": "def f(record, context):\n    while True:\n        pass\n",
    "sleeps": "import time\ndef f(record, context):\n    time.sleep(3600)\n",
    "swallows": (
        "def f(record, context):\n"
        "    while True:\n"
        "        try:\n"
        "            while True:\n"
        "                pass\n"
        "        except BaseException:\n"
        "            pass\n"
    ),
    "blocks_signals": (
        "import signal\n"
        "def f(record, context):\n"
        "    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])\n"
        "    while True:\n"
        "        pass\n"
    ),
}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("kind", sorted(UDFS))
def test_udf_that_raises_or_never_returns(
    make_project: Callable[..., Path], tmp_path: Path, kind: str, workers: int
) -> None:
    root = make_project(
        {
            "invoice.ibflow": flow(
                refiner_step(),
                {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}},
                name="udf",
            ),
            "modules/invoice.ibrefiner": REFINER,
            "u.py": "import os\n_bad = os.environ.get('NOPE')\n"
            + UDFS[kind].replace(
                "def f(record, context):\n",
                "def f(record, context):\n    if 'bad' not in record['file_name']:\n        return record\n",
            ),
        }
    )
    docs = tmp_path / "input"
    docs.mkdir()
    for i in range(4):
        (docs / f"ok{i}.txt").write_text(text_invoice(f"N-{i}", "1.00"))
    (docs / "bad.txt").write_text(text_invoice("X", "1.00"))
    outcome = start_run(
        compile_project(root, SINGLE).path, docs, RunSettings(workers=workers, step_timeout_s=0.5)
    )
    errors = errors_by_file(outcome)
    assert set(errors) == {"bad.txt"}
    assert "bad.txt" in errors["bad.txt"]
    if kind == "raises":
        assert "ValueError: vendor table is empty" in errors["bad.txt"]
        assert "u.py:f" in errors["bad.txt"]
    elif kind == "exits":
        assert "u.py:f raised SystemExit: 3" in errors["bad.txt"]
    elif kind == "returns_none":
        assert "u.py:f returned NoneType, not the record dict" in errors["bad.txt"]
    else:
        assert "timed out" in errors["bad.txt"]
    assert sum(f.status == "COMPLETE" for f in outcome.files) == 4
    check_well_formed(outcome.output_folder)


def test_killed_run_leaves_no_worker_behind(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    from conftest import wait_for

    root = make_project(
        {
            "invoice.ibflow": flow(
                {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}}
            ),
            "u.py": "def f(record, context):\n    while True:\n        pass\n",
        }
    )
    binary = compile_project(root, SINGLE).path
    docs = tmp_path / "input"
    docs.mkdir()
    for i in range(2):
        (docs / f"{i}.txt").write_text("spin")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowd.cli", "run", str(binary), str(docs), "--workers", "2"],
        stderr=subprocess.DEVNULL,
    )

    def workers() -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    wait_for(lambda: len(workers()) == 2, what="two workers")
    children = workers()
    wait_for(
        lambda: any((tmp_path / "out" / "s1_process_files").glob("*.ibdoc")),
        what="a worker busy in its UDF",
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    def gone() -> bool:
        return all(
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
            for pid in children
        )

    wait_for(gone, timeout_s=30, what="the workers to die with their parent")


def test_udf_that_cannot_import_where_it_runs(
    make_project: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    udf = (
        "import os\n"
        "if os.environ.get('FLOWD_TEST_NO_VENDORLIB'):\n"
        "    raise ImportError('No module named vendorlib')\n"
        "def f(record, context):\n"
        "    return record\n"
    )
    root = make_project(
        {
            "invoice.ibflow": flow(
                {"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}}
            ),
            "u.py": udf,
        }
    )
    binary = compile_project(root, SINGLE).path  # imports fine here
    docs = tmp_path / "input"
    docs.mkdir()
    for i in range(3):
        (docs / f"{i}.txt").write_text("text")
    monkeypatch.setenv("FLOWD_TEST_NO_VENDORLIB", "1")  # ...but not on the "machine" that runs it
    outcome = start_run(binary, docs, RunSettings(workers=2))
    errors = errors_by_file(outcome)
    assert sorted(errors) == ["0.txt", "1.txt", "2.txt"]
    for name, error in errors.items():
        assert error.startswith(f"{name}: cannot load the binary in a worker: BinaryError")
        assert (
            "u.py:3:1: UDF script fails on import: ImportError: No module named vendorlib" in error
        )
    check_well_formed(outcome.output_folder)
