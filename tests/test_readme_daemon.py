"""The README's main path: ``flowd serve --config config/flowd.toml``, drop the sample invoices
into ``var/inbox/invoices``, find their results in ``var/out/invoices/<run_id>/`` — run on a copy
of the repository's layout (config/, examples/, var/), with the API on a free port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from conftest import EXAMPLES, REPO, wait_for

SAMPLES = EXAMPLES / "samples"
HEADER = ("invoice_number", "invoice_date", "total", "currency", "issuer")
NEEDS_OCR = {"oyo.png", "scanned-invoice.pdf"}


def test_the_shipped_config_serves_the_examples(tmp_path: Path) -> None:
    shutil.copytree(REPO / "config", tmp_path / "config")
    shutil.copytree(
        EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("build", "out")
    )
    env = {**os.environ, "FLOWD_API__PORT": "0", "FLOWD_WORKERS": "2"}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowd.cli", "serve", "--config", "config/flowd.toml"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        inbox = tmp_path / "var" / "inbox" / "invoices"
        wait_for(lambda: (tmp_path / "var/state/daemon.json").exists(), 120, "the daemon")
        wait_for(inbox.is_dir, 60, "the inbox to be created")
        samples = sorted(p.name for p in (SAMPLES / "invoices").iterdir())
        if shutil.which("tesseract") is None:  # only then: CI installs it
            samples = [s for s in samples if s not in NEEDS_OCR]
        for name in samples:
            shutil.copy(SAMPLES / "invoices" / name, inbox / name)
        out = tmp_path / "var" / "out" / "invoices"

        def rows() -> dict[str, dict[str, object]]:
            found: dict[str, dict[str, object]] = {}
            for results in out.glob("*/results.json"):
                found.update({r["file_name"]: r for r in json.loads(results.read_text())})
            return found

        wait_for(lambda: len(rows()) == len(samples), 180, "every sample's result")
        expected = json.loads((SAMPLES / "expected.json").read_text())
        for name, row in rows().items():
            assert {k: row[k] for k in HEADER} == {k: expected[name][k] for k in HEADER}
        done = tmp_path / "var/inbox/invoices/.flowd/done"
        wait_for(lambda: sorted(p.name for p in done.glob("*/*")) == samples, 60, "archiving")
        assert (tmp_path / "examples/invoices/build/bin/invoice.ibflowbin").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, (tmp_path / "serve.log").read_text()[-3000:]
        log.close()
