"""Watched flow projects (SPEC §8 "Projects"): start-up builds, debounced rebuilds on change, the
previous binary kept when a build fails, and a rescan that heals lost events. Real folders, real
watchdog observers; waits poll a condition with a deadline."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, wait_for
from structlog.testing import capture_logs
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

import flowd.daemon.projects as projects_module
from flowd.config.projects import ProjectConfig
from flowd.daemon.projects import ProjectBuilder, ProjectStatus, is_ignored, is_source_change
from flowd.flows.binary import load_binary
from flowd.flows.compiler import CompileResult, compile_project
from flowd.flows.project import CompileSettings
from flowd.flows.specs import BinaryType

REFINER_FILE = "modules/invoice.ibrefiner"
DEBOUNCE_S = 0.2


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of examples/invoices, without its build/ (so it has no binary yet)."""
    root = tmp_path / "invoices"
    shutil.copytree(EXAMPLES / "invoices", root, ignore=shutil.ignore_patterns("build", "out"))
    return root


def config(root: Path, **changes: object) -> ProjectConfig:
    return ProjectConfig(name="invoices", root=root, flow_file="invoice.ibflow", **changes)


class Built:
    """An ``on_built`` listener that keeps every status it was given."""

    def __init__(self) -> None:
        self.calls: list[ProjectStatus] = []
        self._lock = threading.Lock()

    def __call__(self, status: ProjectStatus) -> None:
        with self._lock:
            self.calls.append(status)

    def __len__(self) -> int:
        with self._lock:
            return len(self.calls)


@pytest.fixture
def run_builder() -> Iterator[Callable[..., ProjectBuilder]]:
    """Start a builder; every builder started is stopped at the end of the test."""
    started: list[ProjectBuilder] = []

    def run(*configs: ProjectConfig, **options: object) -> ProjectBuilder:
        options.setdefault("debounce_s", DEBOUNCE_S)
        builder = ProjectBuilder(configs, **options)  # type: ignore[arg-type]
        started.append(builder)
        builder.start()
        return builder

    yield run
    for builder in started:
        builder.stop()


def set_marker(root: Path, value: str) -> None:
    """A valid edit of the refiner: a field whose formula is the text ``value``."""
    path = root / REFINER_FILE
    refiner = json.loads(path.read_text(encoding="utf-8"))
    refiner["fields"] = [f for f in refiner["fields"] if f["name"] != "marker"]
    refiner["fields"].append({"name": "marker", "type": "TEXT", "formula": f"'{value}'"})
    path.write_text(json.dumps(refiner, indent=2), encoding="utf-8")


def expected_sha(root: Path, tmp_path: Path) -> str:
    """The content hash the project's current sources compile to (compiled in a copy)."""
    copy = tmp_path / "expected"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("build"))
    return compile_project(copy, CompileSettings(flow_file="invoice.ibflow")).content_sha256


def stays_false(condition: Callable[[], bool], for_s: float) -> bool:
    """True when ``condition`` stayed false for ``for_s`` (checking that nothing happens)."""
    deadline = time.monotonic() + for_s
    while time.monotonic() < deadline:
        if condition():
            return False
        time.sleep(0.02)
    return True


def test_start_up_builds_a_missing_binary_keeps_a_current_one_and_rebuilds_a_stale_one(
    project: Path, run_builder: Callable[..., ProjectBuilder]
) -> None:
    built = Built()
    first = run_builder(config(project), on_built=built)
    status = first.get("invoices")
    binary = project / "build" / "bin" / "invoice.ibflowbin"
    assert (status.state, status.written, status.binary_path) == ("ok", True, binary)
    assert status.content_sha256 == load_binary(binary).content_sha256
    assert first.binary_for("invoices") == binary
    assert [s.state for s in built.calls] == ["ok"]
    first.stop()

    before = binary.stat()
    again = run_builder(config(project)).get("invoices")
    assert (again.state, again.written, again.content_sha256) == (
        "ok",
        False,
        status.content_sha256,
    )
    assert binary.stat().st_mtime_ns == before.st_mtime_ns
    assert binary.stat().st_ino == before.st_ino

    set_marker(project, "edited while the daemon was down")
    stale = run_builder(config(project)).get("invoices")
    assert stale.written is True
    assert stale.content_sha256 != status.content_sha256
    assert load_binary(binary).content_sha256 == stale.content_sha256


def test_an_edit_yields_a_new_binary_and_calls_on_built(
    project: Path, tmp_path: Path, run_builder: Callable[..., ProjectBuilder]
) -> None:
    built = Built()
    builder = run_builder(config(project), on_built=built)
    old = builder.get("invoices").content_sha256

    set_marker(project, "v2")
    want = expected_sha(project, tmp_path)
    wait_for(lambda: builder.get("invoices").content_sha256 == want, 10, "the new binary")
    status = builder.get("invoices")
    assert want != old
    assert (status.state, status.written, status.problems) == ("ok", True, ())
    assert status.last_success_at is not None
    assert load_binary(status.binary_path).content_sha256 == want
    wait_for(lambda: built.calls[-1].content_sha256 == want, 5, "on_built with the new binary")


def test_a_broken_edit_keeps_the_old_binary_and_a_fix_rebuilds(
    project: Path, tmp_path: Path, run_builder: Callable[..., ProjectBuilder]
) -> None:
    builder = run_builder(config(project))
    good = builder.get("invoices")
    binary_bytes = good.binary_path.read_bytes()
    refiner = (project / REFINER_FILE).read_text(encoding="utf-8")

    with capture_logs() as logs:
        (project / REFINER_FILE).write_text("{ broken", encoding="utf-8")
        wait_for(lambda: builder.get("invoices").state == "failed", 10, "the failed compile")
    failed = builder.get("invoices")
    assert good.binary_path.read_bytes() == binary_bytes  # still in service, byte for byte
    assert failed.content_sha256 == good.content_sha256
    assert failed.written is False
    assert failed.last_success_at == good.last_success_at
    assert any(p.startswith(f"{REFINER_FILE}:1:3: invalid JSON") for p in failed.problems)
    logged = [e for e in logs if e["event"] == "project_compile_failed"]
    assert logged
    assert logged[0]["project"] == "invoices"
    assert logged[0]["problems"] == list(failed.problems)

    (project / REFINER_FILE).write_text(refiner, encoding="utf-8")
    set_marker(project, "fixed")
    want = expected_sha(project, tmp_path)
    wait_for(lambda: builder.get("invoices").content_sha256 == want, 10, "the fixed binary")
    fixed = builder.get("invoices")
    assert (fixed.state, fixed.problems, fixed.written) == ("ok", (), True)


def test_a_burst_of_saves_compiles_at_most_twice(
    project: Path, tmp_path: Path, run_builder: Callable[..., ProjectBuilder]
) -> None:
    built = Built()
    builder = run_builder(config(project), on_built=built, debounce_s=0.5)
    assert len(built) == 1  # the start-up compile

    for i in range(20):
        set_marker(project, f"save {i}")
    want = expected_sha(project, tmp_path)
    wait_for(lambda: builder.get("invoices").content_sha256 == want, 10, "the last save's binary")
    assert stays_false(lambda: len(built) > 3, 1.0)
    assert len(built) - 1 <= 2


def test_build_output_hidden_and_editor_temporary_files_compile_nothing(
    project: Path, run_builder: Callable[..., ProjectBuilder]
) -> None:
    built = Built()
    # A short rescan too: the fingerprint must ignore these files as well as the events do.
    run_builder(config(project), on_built=built, debounce_s=0.1, rescan_s=0.2)
    noise = [
        "build/scratch.txt",
        "build/bin/other.ibflowbin",
        "out/elsewhere.ibflowbin",
        "out/elsewhere.ibflowbin.tmp-123-456",
        "modules/.invoice.ibrefiner.swp",
        "modules/invoice.ibrefiner~",
        "modules/#invoice.ibrefiner#",
        "modules/4913",
        ".#invoice.ibflow",
        "scratch.tmp",
        ".git/HEAD",
        "modules/__pycache__/normalize.cpython-311.pyc",
    ]
    for rel in noise:
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("noise", encoding="utf-8")
    (project / "modules" / "invoice.ibrefiner~").unlink()
    assert stays_false(lambda: len(built) > 1, 1.0), [s.written for s in built.calls]

    (project / "notes.txt").write_text("a real file in the project", encoding="utf-8")
    wait_for(lambda: len(built) == 2, 10, "a compile after a real change")


def test_lost_events_are_healed_by_the_rescan(
    project: Path,
    tmp_path: Path,
    run_builder: Callable[..., ProjectBuilder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def deaf() -> BaseObserver:  # a real observer that would report its first change in an hour
        return PollingObserver(timeout=3600)

    monkeypatch.setattr(projects_module, "Observer", deaf)
    builder = run_builder(config(project), rescan_s=0.3)

    with capture_logs() as logs:
        set_marker(project, "nobody told us")
        want = expected_sha(project, tmp_path)
        wait_for(lambda: builder.get("invoices").content_sha256 == want, 10, "the rescan")
    assert any(e["event"] == "project_change_missed" for e in logs)


def test_a_deleted_root_is_a_failed_status_and_its_return_rebuilds(
    project: Path, tmp_path: Path, run_builder: Callable[..., ProjectBuilder]
) -> None:
    builder = run_builder(config(project), rescan_s=0.3)
    with capture_logs() as logs:
        shutil.rmtree(project)
        wait_for(lambda: builder.get("invoices").state == "failed", 10, "the failed status")
        wait_for(lambda: any(e["event"] == "project_watch_lost" for e in logs), 10, "the rescan")
    status = builder.get("invoices")
    assert status.content_sha256 is None  # its binary lived in the deleted build/
    assert any("does not exist" in p for p in status.problems), status.problems

    shutil.copytree(EXAMPLES / "invoices", project, ignore=shutil.ignore_patterns("build", "out"))
    wait_for(lambda: builder.get("invoices").state == "ok", 10, "the rebuilt project")
    assert builder.binary_for("invoices").is_file()

    # Watched again: an edit is seen (by its event or, at worst, by the next rescan).
    set_marker(project, "after the return")
    want = expected_sha(project, tmp_path)
    wait_for(lambda: builder.get("invoices").content_sha256 == want, 10, "the edit after return")


def test_a_change_during_a_compile_compiles_once_more(
    project: Path,
    tmp_path: Path,
    run_builder: Callable[..., ProjectBuilder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = projects_module.compile_project
    edits: list[str] = []

    def compile_then_edit(root: Path, *args: Any) -> CompileResult:
        result = real(root, *args)
        if edits == ["first"]:  # the compile of the first edit is over: edit again "during" it
            edits.append("second")
            set_marker(project, "second")
        return result

    monkeypatch.setattr(projects_module, "compile_project", compile_then_edit)
    builder = run_builder(config(project))  # the default rescan (30 s) cannot be what heals it
    edits.append("first")
    set_marker(project, "first")
    wait_for(lambda: edits == ["first", "second"], 10, "the compile of the first edit")
    want = expected_sha(project, tmp_path)
    wait_for(lambda: builder.get("invoices").content_sha256 == want, 10, "the second edit built")


def test_projects_without_auto_compile_wait_for_compile_now(
    project: Path, run_builder: Callable[..., ProjectBuilder]
) -> None:
    documents = ProjectConfig(
        name="documents",
        root=project,
        binary_type=BinaryType.METAFLOW,
        flows_dir="flows",
        metaflow_file="documents.ibmetaflow",
        classifier_file="modules/documents.ibclassifier",
        auto_compile=False,
    )
    builder = run_builder(config(project), documents)
    assert [s.name for s in builder.status()] == ["invoices", "documents"]
    waiting = builder.get("documents")
    assert (waiting.state, waiting.content_sha256, waiting.auto_compile) == ("never", None, False)
    assert not builder.binary_for("documents").exists()

    done = builder.compile_now("documents")
    assert (done.state, done.written) == ("ok", True)
    assert builder.get("documents") == done
    assert load_binary(builder.binary_for("documents")).content_sha256 == done.content_sha256
    with pytest.raises(KeyError):
        builder.get("nope")


@pytest.mark.parametrize(
    ("relative", "ignored"),
    [
        ("invoice.ibflow", False),
        ("modules/invoice.ibrefiner", False),
        ("modules/normalize.py", False),
        ("flows/build/x.ibflow", False),  # only the root's build/
        ("build/bin/invoice.ibflowbin", True),
        ("build/anything", True),
        ("out/invoice.ibflowbin", True),
        ("out/invoice.ibflowbin.tmp-12-34", True),
        ("modules/x.json.tmp-12-34", True),
        (".git/config", True),
        ("modules/.invoice.ibrefiner.swp", True),
        ("modules/invoice.ibrefiner~", True),
        ("modules/#invoice.ibrefiner#", True),
        (".#invoice.ibflow", True),
        ("4913", True),
        ("draft.tmp", True),
        ("modules/__pycache__/normalize.cpython-311.pyc", True),
    ],
)
def test_source_filter(relative: str, ignored: bool) -> None:
    assert is_ignored(relative) is ignored


@pytest.mark.parametrize(
    ("event", "counts"),
    [
        (FileModifiedEvent("/p/modules/invoice.ibrefiner"), True),
        (FileClosedEvent("/p/invoice.ibflow"), True),
        (FileCreatedEvent("/p/notes.txt"), True),
        (FileDeletedEvent("/p/invoice.ibflow"), True),
        (FileMovedEvent("/p/.invoice.ibflow.swx", "/p/invoice.ibflow"), True),  # an editor's save
        (FileMovedEvent("/p/invoice.ibflow", "/p/invoice.ibflow~"), True),  # a source went away
        (DirDeletedEvent("/p/modules"), True),
        (DirDeletedEvent("/p"), True),  # the root itself
        (DirMovedEvent("/p/modules", "/p/old"), True),
        # What the compiler itself causes by reading sources and writing the binary:
        (FileOpenedEvent("/p/invoice.ibflow"), False),
        (FileClosedNoWriteEvent("/p/invoice.ibflow"), False),
        (DirCreatedEvent("/p/out"), False),
        (DirModifiedEvent("/p"), False),
        (FileMovedEvent("/p/out/a.ibflowbin.tmp-1-2", "/p/out/a.ibflowbin"), False),
        (FileModifiedEvent("/p/build/bin/invoice.ibflowbin"), False),
        (FileModifiedEvent("/elsewhere/invoice.ibflow"), False),
    ],
)
def test_which_events_are_source_changes(event: FileSystemEvent, counts: bool) -> None:
    assert is_source_change(event, "/p") is counts
