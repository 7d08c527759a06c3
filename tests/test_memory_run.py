"""In-memory runs (for the sync API): same results as a folder run, nothing written to disk."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REFINER, flow, refiner_step, text_invoice

from flowd.engine.memory_run import MemoryRunSettings, run_documents
from flowd.engine.run import start_run
from flowd.engine.settings import RunSettings
from flowd.errors import RunSettingsError
from flowd.flows.binary import load_binary
from flowd.flows.compiler import compile_project
from flowd.flows.project import CompileSettings
from flowd.flows.specs import BinaryType

SINGLE = CompileSettings(BinaryType.SINGLE_FLOW, flow_file="invoice.ibflow")


def snapshot(root: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs}


def test_memory_run_matches_folder_run_and_writes_nothing(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_project(
        {
            "invoice.ibflow": flow(
                refiner_step(),
                {"step": "apply_checkpoint", "settings": {"validations": "v.ibvalidations"}},
            ),
            "modules/invoice.ibrefiner": REFINER,
            "v.ibvalidations": {
                "version": 1,
                "rules": [{"field": "total", "formula": "total > 0", "message": "no total"}],
            },
        }
    )
    binary_path = compile_project(root, SINGLE).path
    docs = [
        ("a.txt", text_invoice("M-1", "12.50").encode()),
        ("b.txt", text_invoice("M-2", "0").encode()),
        ("c.txt", b""),
    ]
    inbox = tmp_path / "in"
    inbox.mkdir()
    for name, data in docs:
        (inbox / name).write_bytes(data)
    folder = start_run(binary_path, inbox, RunSettings(workers=1))
    before = snapshot(tmp_path)
    memory = run_documents(load_binary(binary_path), docs, MemoryRunSettings())
    assert snapshot(tmp_path) == before
    assert [(r.file_name, r.status) for r in memory] == [
        ("a.txt", "COMPLETE"),
        ("b.txt", "STOPPED_AT_CHECKPOINT"),
        ("c.txt", "FAILED"),
    ]
    by_name = {f.file_name: f for f in folder.files}
    for result in memory:
        assert result.records == by_name[result.file_name].records
        assert result.error == by_name[result.file_name].error


def test_memory_run_rejects_bad_names(simple_project: Path) -> None:
    binary = load_binary(compile_project(simple_project, SINGLE).path)
    with pytest.raises(RunSettingsError, match="unique"):
        run_documents(binary, [("a.txt", b"x"), ("a.txt", b"y")])
    with pytest.raises(RunSettingsError, match="plain relative name"):
        run_documents(binary, [("../a.txt", b"x")])
