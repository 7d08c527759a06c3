"""Watched inboxes in a real ``flowd serve`` (SPEC §8, issue 4): real inotify observers on temporary
folders, real runs, real results.

One daemon per module serves a watch per test (each test has its own inbox and output folder, so
the tests do not depend on each other's order); the crash and reload tests start their own.
Waits poll a condition with a deadline; nothing sleeps to wait for work."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowd.errors import JobNotFoundError
from flowd.flows.compiler import compile_project
from flowd.flows.project import CompileSettings
from flowd.flows.specs import BinaryType
from flowd.jobs.states import TaskState
from flowd.jobs.store import JobStore
from tests.conftest import FLOWD, REFINER, flow, refiner_step, text_invoice, wait_for, write_json
from tests.daemon import DaemonProcess

SINGLE = CompileSettings(BinaryType.SINGLE_FLOW, flow_file="invoice.ibflow")

# Slows every file down by runtime_config "sleep_s".
SLOW_UDF = """\
import time


def f(record, context):
    time.sleep(context.config.get("sleep_s", 0))
    return record
"""

WATCHES: dict[str, str] = {
    "slow": "settle_s = 1.0\nbatch_window_s = 0",
    "rename": "settle_s = 30\nbatch_window_s = 0",
    "many": "settle_s = 0.5\nbatch_window_s = 0.5\nmax_batch = 500",
    "tree": "recursive = true\nsettle_s = 0.3\nbatch_window_s = 0",
    "guard": (
        "recursive = true\nsettle_s = 0.2\nbatch_window_s = 0\n"
        'patterns = ["*.txt", "*.pdf", "*.skip", "*.tmp", "*.part", "*.crdownload", "*.db", "*Store"]\n'
        'ignore = ["*.skip", "private/*"]'
    ),
    "keep": 'after = "keep"\nsettle_s = 0.2\nbatch_window_s = 0',
    "delete": 'after = "delete"\nsettle_s = 0.2\nbatch_window_s = 0',
    "mixed": "settle_s = 0.2\nbatch_window_s = 0.5",
    "counted": "settle_s = 0.2\nbatch_window_s = 0.5\nmax_batch = 2",
}


def watch_toml(name: str, binary: Path, keys: str = "") -> str:
    return (
        f'[[watches]]\nname = "{name}"\ninput_dir = "inbox/{name}"\n'
        f'binary_path = "{binary}"\noutput_dir = "out/{name}"\n{keys}\n\n'
    )


def compile_simple(root: Path, target: Path, *, udf: bool = False) -> Path:
    steps: list[dict[str, Any]] = [refiner_step()]
    if udf:
        steps.append({"step": "apply_udf", "settings": {"script": "u.py", "function": "f"}})
        (root / "u.py").parent.mkdir(parents=True, exist_ok=True)
        (root / "u.py").write_text(SLOW_UDF)
    write_json(root / "invoice.ibflow", flow(*steps))
    write_json(root / "modules" / "invoice.ibrefiner", REFINER)
    return compile_project(root, SINGLE, target).path


@pytest.fixture(scope="module")
def simple_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("simple")
    return compile_simple(root / "project", root / "simple.ibflowbin")


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory, simple_binary: Path) -> Iterator[DaemonProcess]:
    extra = "".join(watch_toml(n, simple_binary, keys) for n, keys in WATCHES.items())
    daemon = DaemonProcess(tmp_path_factory.mktemp("watchd"), workers=2, extra_toml=extra)
    with daemon:
        yield daemon


# -- helpers -------------------------------------------------------------------------------------
def inbox(proc: DaemonProcess, name: str) -> Path:
    return proc.root / "inbox" / name


def spooled(proc: DaemonProcess, name: str, kind: str) -> list[Path]:
    """Files (not error notes) under ``.flowd/<kind>/`` of watch ``name``, relative to it."""
    base = inbox(proc, name) / ".flowd" / kind
    return sorted(
        p.relative_to(base)
        for p in base.rglob("*")
        if p.is_file() and not p.name.endswith(".error.txt")
    )


def rows(proc: DaemonProcess, name: str) -> list[dict[str, Any]]:
    """Every row of every run's ``results.json`` of watch ``name``."""
    out: list[dict[str, Any]] = []
    for path in sorted((proc.root / "out" / name).glob("*/results.json")):
        out.extend(json.loads(path.read_text()))
    return out


def watch_status(proc: DaemonProcess, name: str) -> dict[str, Any]:
    r = proc.get("/api/v1/daemon/status")
    assert r.status_code == 200, r.text
    (found,) = [w for w in r.json()["watches"] if w["name"] == name]
    return found  # type: ignore[no-any-return]


def modified_events(proc: DaemonProcess) -> float:
    text = proc.get("/metrics").text
    found = re.search(r'^flowd_watcher_events_total\{kind="modified"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def nothing_processing(proc: DaemonProcess, name: str) -> bool:
    return not spooled(proc, name, "processing")


# -- when a file is taken -----------------------------------------------------------------------
def test_a_file_written_slowly_is_taken_once_and_only_when_complete(proc: DaemonProcess) -> None:
    settle_s = 1.0
    path = inbox(proc, "slow") / "slow.txt"
    full = text_invoice("SLOW-7", "77.25")
    head, tail = full[: full.index("Total")], full[full.index("Total") :]
    written = ""
    with open(path, "w") as fh:  # kept open all along: no close event, only the settle rule
        began = time.monotonic()
        chunk = 0
        while time.monotonic() - began < 1.5 * settle_s:  # longer than settle_s, never quiet
            piece = head if chunk == 0 else f"note {chunk}\n"
            before = modified_events(proc)
            fh.write(piece)
            fh.flush()
            written += piece
            chunk += 1
            wait_for(lambda b=before: modified_events(proc) > b, 10, "the daemon to see a write")
            assert watch_status(proc, "slow")["files_taken"] == 0, "taken while being written"
        fh.write(tail)
        fh.flush()
        written += tail
        wait_for(lambda: spooled(proc, "slow", "done"), 20, "the file to be done")
    assert chunk >= 3
    wait_for(lambda: rows(proc, "slow"), 10, "its result")
    (done,) = spooled(proc, "slow", "done")
    assert done.name == "slow.txt"
    assert (inbox(proc, "slow") / ".flowd" / "done" / done).read_text() == written
    (row,) = rows(proc, "slow")
    assert (row["file_name"], row["invoice_number"], row["total"]) == ("slow.txt", "SLOW-7", 77.25)
    status = watch_status(proc, "slow")
    assert (status["runs_started"], status["files_taken"]) == (1, 1)


def test_rename_into_the_inbox_is_taken_at_once(proc: DaemonProcess) -> None:
    root = inbox(proc, "rename")  # settle_s = 30: only the rename itself can make it quick
    began = time.monotonic()
    (root / ".inside.txt.part").write_text(text_invoice("IN-1", "1.25"))
    os.rename(root / ".inside.txt.part", root / "inside.txt")
    outside = proc.root / "elsewhere.txt"
    outside.write_text(text_invoice("OUT-1", "2.50"))
    os.rename(outside, root / "outside.txt")
    wait_for(lambda: len(spooled(proc, "rename", "done")) == 2, 10, "both files done")
    assert time.monotonic() - began < 10
    got = sorted((r["file_name"], r["invoice_number"], r["total"]) for r in rows(proc, "rename"))
    assert got == [("inside.txt", "IN-1", 1.25), ("outside.txt", "OUT-1", 2.5)]


def test_2000_files_dropped_at_once_are_all_processed_exactly_once(proc: DaemonProcess) -> None:
    root = inbox(proc, "many")
    names = [f"f{i:04}.txt" for i in range(2000)]
    for i, name in enumerate(names):
        (root / name).write_text(text_invoice(f"M-{i:04}", f"{i}.25"))
    wait_for(lambda: len(spooled(proc, "many", "done")) >= 2000, 120, "2,000 files done")
    wait_for(lambda: nothing_processing(proc, "many"), 10, "an empty processing/")
    done = spooled(proc, "many", "done")
    assert Counter(p.name for p in done) == Counter(names)
    run_ids = {p.parts[0] for p in done}
    assert len(run_ids) >= 4, "max_batch = 500 did not split the drop"
    assert all(len([p for p in done if p.parts[0] == r]) <= 500 for r in run_ids)
    outs = {p.parent.name for p in (proc.root / "out" / "many").glob("*/results.json")}
    assert outs == run_ids  # one output folder per run, named by its run id
    got = rows(proc, "many")
    assert Counter(r["file_name"] for r in got) == Counter(names)
    for r in got:
        i = int(r["file_name"][1:5])
        assert (r["invoice_number"], r["total"]) == (f"M-{i:04}", i + 0.25), r
    assert sorted(p.name for p in root.iterdir()) == [".flowd"]
    status = watch_status(proc, "many")
    assert (status["runs_started"], status["files_taken"]) == (len(run_ids), 2000)


def test_a_new_subfolder_of_a_recursive_watch_is_seen(proc: DaemonProcess) -> None:
    root = inbox(proc, "tree")
    (root / "new" / "deeper").mkdir(parents=True)
    (root / "new" / "deeper" / "a.txt").write_text(text_invoice("T-1", "1.00"))
    wait_for(lambda: len(spooled(proc, "tree", "done")) == 1, 15, "the file in a new subfolder")
    # A whole folder moved in: its files bring no events of their own.
    built = proc.root / "built"
    (built / "inner").mkdir(parents=True)
    (built / "b.txt").write_text(text_invoice("T-2", "2.00"))
    (built / "inner" / "c.txt").write_text(text_invoice("T-3", "3.00"))
    os.rename(built, root / "moved")
    wait_for(lambda: len(spooled(proc, "tree", "done")) == 3, 15, "the moved-in folder's files")
    wait_for(lambda: len(rows(proc, "tree")) == 3, 10, "three results")
    done = {"/".join(p.parts[1:]) for p in spooled(proc, "tree", "done")}
    assert done == {"new/deeper/a.txt", "moved/b.txt", "moved/inner/c.txt"}
    got = sorted((r["invoice_number"], r["total"]) for r in rows(proc, "tree"))
    assert got == [("T-1", 1.0), ("T-2", 2.0), ("T-3", 3.0)]


# -- what is never taken -------------------------------------------------------------------------
NEVER = (
    ".hidden.txt",
    "draft.tmp",
    "movie.part",
    "invoice.pdf.crdownload",
    ".DS_Store",
    "Thumbs.db",
    "@eaDir/thumb.txt",
    "@eaDir/SYNOFILE_THUMB_M.pdf",
    "notes.skip",
    "private/secret.txt",
    "data.csv",
)


def test_symlinks_and_ignored_names_are_never_taken(proc: DaemonProcess) -> None:
    root = inbox(proc, "guard")
    outside = proc.root / "outside"
    outside.mkdir()
    target = outside / "target.txt"
    target.write_text(text_invoice("LEAK-1", "9.99"))
    before = target.stat()
    (root / "link.txt").symlink_to(target)
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    for rel in NEVER:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text_invoice("NO-1", "1.00"))
    (root / "good.txt").write_text(text_invoice("YES-1", "1.00"))
    wait_for(lambda: spooled(proc, "guard", "done"), 15, "the good file")
    wait_for(lambda: rows(proc, "guard"), 10, "its result")
    # A second good file, later: everything dropped before it has been looked at by then.
    (root / "sub").mkdir()
    (root / "sub" / "later.txt").write_text(text_invoice("YES-2", "1.00"))
    wait_for(lambda: len(spooled(proc, "guard", "done")) == 2, 15, "the later file")
    wait_for(lambda: len(rows(proc, "guard")) == 2, 10, "its result")
    assert sorted(r["invoice_number"] for r in rows(proc, "guard")) == ["YES-1", "YES-2"]
    for rel in NEVER:
        assert (root / rel).is_file(), rel
    assert (root / "link.txt").is_symlink() and (root / "linkdir").is_symlink()
    assert target.read_text() == text_invoice("LEAK-1", "9.99")
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in outside.iterdir()) == ["target.txt"]
    assert watch_status(proc, "guard")["files_taken"] == 2


# -- after a run ---------------------------------------------------------------------------------
def test_after_delete_removes_done_files(proc: DaemonProcess) -> None:
    root = inbox(proc, "delete")
    (root / "a.txt").write_text(text_invoice("D-1", "4.00"))
    wait_for(lambda: rows(proc, "delete"), 15, "its result")
    wait_for(lambda: not list(root.rglob("a.txt")), 10, "the file to be deleted")
    assert [(r["file_name"], r["invoice_number"]) for r in rows(proc, "delete")] == [
        ("a.txt", "D-1")
    ]
    assert not spooled(proc, "delete", "done") and nothing_processing(proc, "delete")


def test_a_failed_file_goes_to_failed_with_an_error_file(proc: DaemonProcess) -> None:
    root = inbox(proc, "mixed")
    (root / "good.txt").write_text(text_invoice("G-1", "5.00"))
    (root / "bad.pdf").write_bytes(b"\x00\x01 not a pdf at all \xff" * 20)
    wait_for(lambda: spooled(proc, "mixed", "failed"), 15, "the failed file")
    wait_for(lambda: spooled(proc, "mixed", "done"), 10, "the good file")
    (failed,) = spooled(proc, "mixed", "failed")
    (done,) = spooled(proc, "mixed", "done")
    assert failed.name == "bad.pdf" and done.name == "good.txt"
    assert failed.parent == done.parent  # one run, one run id
    note = inbox(proc, "mixed") / ".flowd" / "failed" / failed.parent / "bad.pdf.error.txt"
    assert "bad.pdf" in note.read_text() and "PDF" in note.read_text()
    assert [r["file_name"] for r in rows(proc, "mixed")] == ["good.txt"]
    assert nothing_processing(proc, "mixed") and sorted(p.name for p in root.iterdir()) == [
        ".flowd"
    ]


def test_after_keep_leaves_the_file_and_a_restart_does_not_run_it_again(
    proc: DaemonProcess,
) -> None:
    root = inbox(proc, "keep")
    kept = proc.state / "kept" / "keep.sha256"
    (root / "a.txt").write_text(text_invoice("K-1", "6.00"))
    wait_for(lambda: kept.exists() and len(kept.read_text().split()) == 1, 15, "a.txt kept")
    wait_for(lambda: (root / "a.txt").exists(), 10, "a.txt back in the inbox")
    assert (root / "a.txt").read_text() == text_invoice("K-1", "6.00")
    assert nothing_processing(proc, "keep") and not spooled(proc, "keep", "done")
    proc.stop()
    proc.start()  # the start-up scan sees a.txt again
    (root / "b.txt").write_text(text_invoice("K-2", "7.00"))
    wait_for(lambda: len(kept.read_text().split()) == 2, 15, "b.txt kept")
    wait_for(lambda: (root / "b.txt").exists() and nothing_processing(proc, "keep"), 10, "b back")
    got = Counter(r["file_name"] for r in rows(proc, "keep"))
    assert got == Counter({"a.txt": 1, "b.txt": 1})
    assert watch_status(proc, "keep")["files_taken"] == 1  # b.txt only since the restart


# -- flowd status --------------------------------------------------------------------------------
def test_flowd_status_json_lists_the_watches_with_runs_and_files(proc: DaemonProcess) -> None:
    root = inbox(proc, "counted")
    for i in range(3):
        (root / f"c{i}.txt").write_text(text_invoice(f"C-{i}", "1.00"))
    wait_for(lambda: len(spooled(proc, "counted", "done")) == 3, 15, "three files done")
    out = subprocess.run(
        [*FLOWD, "status", "--json", "--config", str(proc.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    by_name = {w["name"]: w for w in info["watches"]}
    assert set(by_name) == set(WATCHES)
    counted = by_name["counted"]
    assert (counted["runs_started"], counted["files_taken"]) == (2, 3)  # max_batch = 2
    assert counted["input_dir"] == str(root) and counted["watching"] is True
    assert counted["last_run_id"] in {p.parts[0] for p in spooled(proc, "counted", "done")}


# -- crashes and reloads -------------------------------------------------------------------------
def test_kill9_in_the_middle_of_a_batch_leaves_every_file_with_one_result(
    tmp_path: Path,
) -> None:
    binary = compile_simple(tmp_path / "project", tmp_path / "slow.ibflowbin", udf=True)
    keys = (
        "settle_s = 0.2\nbatch_window_s = 0.3\nmax_batch = 10\n"
        "settings = { runtime_config = { sleep_s = 0.05 } }"
    )
    proc = DaemonProcess(tmp_path / "d", workers=2, extra_toml=watch_toml("crash", binary, keys))
    names = [f"k{i:02}.txt" for i in range(40)]
    with proc:
        root = inbox(proc, "crash")
        for i, name in enumerate(names):
            (root / name).write_text(text_invoice(f"K-{i:02}", f"{i}.50"))
        store = JobStore(proc.state / "jobs.sqlite3")
        try:
            processing = root / ".flowd" / "processing"

            def mid_batch(floor: int) -> bool:
                """A run with at least ``floor`` files done and more running."""
                for run in processing.iterdir():
                    try:
                        counts = store.job_counts(run.name).by_state
                    except JobNotFoundError:
                        continue  # taken, not yet submitted
                    done = counts.get(TaskState.DONE, 0)
                    if counts.get(TaskState.RUNNING, 0) and done >= floor:
                        return True
                return False

            for floor in (2, 5):
                wait_for(lambda f=floor: mid_batch(f), 60, f"a run with {floor} done and running")
                proc.kill9()
                # The store as the kill left it: a run was cut in the middle.
                assert mid_batch(floor), "the kill came after the run had ended"
                proc.start()
            wait_for(lambda: len(spooled(proc, "crash", "done")) == 40, 90, "every file done")
            wait_for(lambda: nothing_processing(proc, "crash"), 10, "an empty processing/")
        finally:
            store.close()
        got = rows(proc, "crash")
        assert Counter(r["file_name"] for r in got) == Counter(names)
        for r in got:
            i = int(r["file_name"][1:3])
            assert (r["invoice_number"], r["total"]) == (f"K-{i:02}", i + 0.5), r
        done = spooled(proc, "crash", "done")
        assert Counter(p.name for p in done) == Counter(names)
        assert not list((root / ".flowd" / "processing").iterdir())
        assert sorted(p.name for p in root.iterdir()) == [".flowd"]


def test_sighup_adds_and_removes_watches(tmp_path: Path, simple_binary: Path) -> None:
    proc = DaemonProcess(tmp_path / "d", extra_toml=watch_toml("first", simple_binary))
    with proc:
        assert proc.proc is not None

        def names() -> set[str]:
            return {w["name"] for w in proc.get("/api/v1/daemon/status").json()["watches"]}

        assert names() == {"first"}
        base = proc.config.read_text()
        proc.config.write_text(base + watch_toml("second", simple_binary))
        os.kill(proc.proc.pid, signal.SIGHUP)
        wait_for(lambda: names() == {"first", "second"}, 20, "the new watch")
        (inbox(proc, "second") / "a.txt").write_text(text_invoice("H-1", "1.00"))
        wait_for(lambda: rows(proc, "second"), 20, "a result from the new watch")
        assert rows(proc, "second")[0]["invoice_number"] == "H-1"

        # Remove "first": its folder is no longer watched.
        proc.config.write_text(base.split("[[watches]]")[0] + watch_toml("second", simple_binary))
        os.kill(proc.proc.pid, signal.SIGHUP)
        wait_for(lambda: names() == {"second"}, 20, "the watch removed")
        (inbox(proc, "first") / "x.txt").write_text(text_invoice("X-1", "1.00"))
        (inbox(proc, "second") / "b.txt").write_text(text_invoice("H-2", "1.00"))
        wait_for(lambda: len(rows(proc, "second")) == 2, 20, "b.txt in the remaining watch")
        assert (inbox(proc, "first") / "x.txt").exists()
        assert not spooled(proc, "first", "processing") and not rows(proc, "first")
        assert proc.proc.poll() is None
