"""One watched inbox in-process (SPEC §8, ``flowd.daemon.inbox``): real ``watchdog`` observers on
temporary folders, with a recording ``submit`` in place of the job store.

What is checked: a slow writer is taken once and only when complete (settle rule); a close or a
rename into the folder is taken at once; lost events are healed by the rescan; a new subfolder of a
recursive watch (or a whole folder moved in) is scanned at once; ``max_batch`` splits a drop into
runs and no file is queued twice; names that are never taken; symlinks never followed; what
``after`` does with done and failed files; the spool recovered at start-up.

Waits poll a condition with a deadline (``wait_for``); nothing sleeps to wait for work."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import flowd.daemon.inbox as inbox_module
from flowd.config import WatchConfig
from flowd.daemon.inbox import DONE, FAILED, PROCESSING, Inbox, RunState, spool
from flowd.errors import FlowdError
from tests.conftest import text_invoice, wait_for


class Runs:
    """A recording ``submit``/``lookup`` pair: what each run got, read at submission time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, dict[str, bytes]] = {}
        self.order: list[str] = []
        self.refuse = False  # submit raises (a binary not built yet)

    def submit(self, watch: WatchConfig, run_id: str, folder: Path, files: list[str]) -> None:
        assert folder == spool(watch, PROCESSING, run_id)
        if self.refuse:
            raise FlowdError("the binary is not built yet")
        got = {f: (folder / f).read_bytes() for f in files}
        with self.lock:
            assert run_id not in self.runs, f"run {run_id} submitted twice"
            self.runs[run_id] = got
            self.order.append(run_id)

    def lookup(self, run_id: str) -> RunState:
        with self.lock:
            return RunState(run_id in self.runs)

    def files(self) -> Counter[str]:
        with self.lock:
            return Counter(f for run in self.runs.values() for f in run)

    def count(self) -> int:
        with self.lock:
            return len(self.runs)


@pytest.fixture
def runs() -> Runs:
    return Runs()


@pytest.fixture
def make_inbox(tmp_path: Path, runs: Runs) -> Iterator[Callable[..., Inbox]]:
    """``make_inbox(settle_s=…, …)``: a started :class:`Inbox` on ``tmp_path/in`` (stopped at the
    end of the test); ``rescan_s`` and ``kept_hashes`` go to the inbox, the rest to the watch."""
    started: list[Inbox] = []

    def make(
        *, rescan_s: float = 300.0, kept_hashes: Path | None = None, start: bool = True, **keys: Any
    ) -> Inbox:
        keys = {"batch_window_s": 0.0, **keys}
        watch = WatchConfig(
            name="w",
            input_dir=tmp_path / "in",
            binary_path=tmp_path / "flow.ibflowbin",
            output_dir=tmp_path / "out",
            **keys,
        )
        watch.input_dir.mkdir(exist_ok=True)
        inbox = Inbox(watch, runs.submit, runs.lookup, kept_hashes=kept_hashes, rescan_s=rescan_s)
        if start:
            inbox.start()
            started.append(inbox)
        return inbox

    yield make
    for inbox in started:
        inbox.stop()


def finish_all(inbox: Inbox, runs: Runs, state: str = "DONE") -> None:
    with runs.lock:
        done = {r: list(files) for r, files in runs.runs.items()}
    for run_id, files in done.items():
        inbox.finish(run_id, [(f, state, None) for f in files])


def candidate_size(inbox: Inbox, rel: str) -> int | None:
    with inbox._lock:
        found = inbox._candidates.get(rel)
        return None if found is None else found.size


# -- when a file is taken -----------------------------------------------------------------------
def test_a_file_written_slowly_is_taken_once_and_only_when_complete(
    make_inbox: Callable[..., Inbox], runs: Runs
) -> None:
    settle_s = 1.0
    inbox = make_inbox(settle_s=settle_s)
    path = inbox.watch.input_dir / "slow.txt"
    head = text_invoice("SLOW-1", "12.50").encode()
    body, tail = head[: head.index(b"Total")], head[head.index(b"Total") :]
    with open(path, "wb") as fh:  # a writer that keeps the file open all along
        written = 0
        began = time.monotonic()
        chunk = 0
        while time.monotonic() - began < 1.5 * settle_s:  # longer than settle_s, never quiet
            piece = body if chunk == 0 else f"note line {chunk}\n".encode()
            fh.write(piece)
            fh.flush()
            written += len(piece)
            chunk += 1
            # The inbox has looked at the file as it is now, and has not taken it.
            wait_for(lambda n=written: candidate_size(inbox, "slow.txt") == n, 10, "a look")
            assert runs.count() == 0, "taken while it was still being written"
        assert chunk >= 3
        fh.write(tail)
        fh.flush()
        written += len(tail)
        last_write = time.monotonic()
        # Still open: only the settle rule can take it.
        wait_for(lambda: runs.count() == 1, 10, "the settled file to be taken")
        assert time.monotonic() - last_write >= settle_s * 0.9
    (only,) = runs.runs.values()
    assert list(only) == ["slow.txt"]
    assert len(only["slow.txt"]) == written and only["slow.txt"].endswith(tail)
    wait_for(lambda: inbox.status().candidates == 0, 5, "the candidate list to empty")
    assert runs.files() == Counter({"slow.txt": 1})


def test_a_close_or_a_rename_into_the_inbox_is_taken_at_once(
    make_inbox: Callable[..., Inbox], runs: Runs, tmp_path: Path
) -> None:
    inbox = make_inbox(settle_s=30.0)  # the settle rule would take 30 s
    root = inbox.watch.input_dir
    began = time.monotonic()
    (root / ".in-progress.txt.part").write_text(text_invoice("R-1", "1.00"))  # never taken
    os.rename(root / ".in-progress.txt.part", root / "renamed-inside.txt")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text(text_invoice("R-2", "2.00"))
    os.rename(outside, root / "renamed-in.txt")
    (root / "closed.txt").write_text(text_invoice("R-3", "3.00"))
    wait_for(lambda: sum(runs.files().values()) == 3, 10, "three files taken")
    assert time.monotonic() - began < 10  # nowhere near settle_s
    assert runs.files() == Counter({"renamed-inside.txt": 1, "renamed-in.txt": 1, "closed.txt": 1})


def test_events_lost_are_healed_by_the_rescan(make_inbox: Callable[..., Inbox], runs: Runs) -> None:
    inbox = make_inbox(settle_s=0.2, rescan_s=0.5)
    inbox._observer.stop()  # from now on no event arrives (an overflowed queue, a network share)
    inbox._observer.join(10)
    assert not inbox.status().watching
    root = inbox.watch.input_dir
    for i in range(20):
        (root / f"quiet{i}.txt").write_text(text_invoice(f"Q-{i}", "1.00"))
    wait_for(lambda: sum(runs.files().values()) == 20, 15, "the rescan to find the files")
    assert runs.files() == Counter({f"quiet{i}.txt": 1 for i in range(20)})
    assert not list(root.glob("quiet*"))


def test_a_polling_watch_takes_a_file_once_it_has_settled(
    make_inbox: Callable[..., Inbox], runs: Runs
) -> None:
    """``polling = true`` (network shares): no close or rename events to trust, only the settle
    rule - even a file written and closed at once waits ``settle_s``."""
    settle_s = 1.0
    inbox = make_inbox(polling=True, settle_s=settle_s)
    wrote = time.monotonic()
    (inbox.watch.input_dir / "share.txt").write_text(text_invoice("P-1", "1.00"))
    wait_for(lambda: runs.count() == 1, 15, "the polled file")
    assert time.monotonic() - wrote >= settle_s
    assert runs.files() == Counter({"share.txt": 1})


def test_a_new_subfolder_of_a_recursive_watch_is_seen_and_a_folder_moved_in_too(
    make_inbox: Callable[..., Inbox], runs: Runs, tmp_path: Path
) -> None:
    inbox = make_inbox(recursive=True, settle_s=0.3)
    root = inbox.watch.input_dir
    (root / "new" / "deeper").mkdir(parents=True)
    (root / "new" / "deeper" / "a.txt").write_text(text_invoice("S-1", "1.00"))
    wait_for(lambda: runs.files()["new/deeper/a.txt"] == 1, 10, "a file in a new subfolder")
    # A folder built elsewhere, then moved in whole: its files bring no events of their own.
    tree = tmp_path / "tree"
    (tree / "inner").mkdir(parents=True)
    for name in ("b.txt", "c.txt", "inner/d.txt"):
        (tree / name).write_text(text_invoice(name, "1.00"))
    os.rename(tree, root / "moved")
    expected = {"new/deeper/a.txt", "moved/b.txt", "moved/c.txt", "moved/inner/d.txt"}
    wait_for(lambda: set(runs.files()) == expected, 10, "the files of the moved-in folder")
    assert set(runs.files().values()) == {1}
    # Subfolders are kept inside the spool folder.
    run_id = next(r for r, files in runs.runs.items() if "moved/inner/d.txt" in files)
    assert (spool(inbox.watch, PROCESSING, run_id) / "moved" / "inner" / "d.txt").is_file()


def test_a_flat_watch_does_not_take_files_in_subfolders(
    make_inbox: Callable[..., Inbox], runs: Runs
) -> None:
    inbox = make_inbox(settle_s=0.0, rescan_s=0.3)
    root = inbox.watch.input_dir
    (root / "sub").mkdir()
    (root / "sub" / "nested.txt").write_text("x")
    (root / "top.txt").write_text("x")
    wait_for(lambda: runs.count() == 1, 10, "top.txt")
    inbox.rescan_soon()
    (root / "late.txt").write_text("x")  # taken after the rescan above has run
    wait_for(lambda: runs.files()["late.txt"] == 1, 10, "late.txt")
    assert set(runs.files()) == {"top.txt", "late.txt"}
    assert (root / "sub" / "nested.txt").exists()


# -- batches -------------------------------------------------------------------------------------
def test_max_batch_splits_a_drop_into_runs_and_no_file_is_queued_twice(
    make_inbox: Callable[..., Inbox], runs: Runs
) -> None:
    # A short rescan racing the events: both see every file, each is taken once.
    inbox = make_inbox(settle_s=0.2, batch_window_s=0.3, max_batch=40, rescan_s=0.05)
    root = inbox.watch.input_dir
    names = [f"n{i:03}.txt" for i in range(150)]
    for name in names:
        (root / name).write_text(name)
    wait_for(lambda: sum(runs.files().values()) >= 150, 20, "every file taken")
    wait_for(lambda: inbox.status().candidates + inbox.status().ready == 0, 5, "an idle inbox")
    assert runs.files() == Counter(names)
    sizes = sorted(len(r) for r in runs.runs.values())
    assert max(sizes) <= 40 and len(sizes) >= 4, sizes
    for run_id, files in runs.runs.items():
        assert all(files[n] == n.encode() for n in files), run_id  # whole files
    status = inbox.status()
    assert (status.runs_started, status.files_taken) == (len(sizes), 150)


def test_a_run_that_cannot_be_submitted_stays_in_processing_and_is_submitted_later(
    make_inbox: Callable[..., Inbox], runs: Runs
) -> None:
    runs.refuse = True
    inbox = make_inbox(settle_s=0.0, rescan_s=0.3)
    (inbox.watch.input_dir / "a.txt").write_text("a")
    wait_for(lambda: inbox.status().last_error is not None, 10, "the refused submission")
    (folder,) = spool(inbox.watch, PROCESSING).iterdir()
    assert (folder / "a.txt").read_text() == "a"
    runs.refuse = False
    wait_for(lambda: runs.count() == 1, 10, "the submission at the next rescan")
    assert runs.runs == {folder.name: {"a.txt": b"a"}}


def test_a_transient_rename_failure_is_retried_not_dropped(
    make_inbox: Callable[..., Inbox], runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_module, "RETRY_S", 0.2)
    real_rename = os.rename
    refused: list[str] = []

    def busy_twice(src: Any, dst: Any) -> None:  # an EBUSY (a scanner still holding the file)
        if os.fspath(src).endswith("busy.txt") and len(refused) < 2:
            refused.append(os.fspath(src))
            raise OSError(errno.EBUSY, "Device or resource busy", os.fspath(src))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", busy_twice)
    inbox = make_inbox(settle_s=0.0)
    (inbox.watch.input_dir / "busy.txt").write_text("b")
    (inbox.watch.input_dir / "fine.txt").write_text("f")
    wait_for(lambda: runs.files()["busy.txt"] == 1, 10, "busy.txt after its retries")
    assert len(refused) == 2
    assert runs.files() == Counter({"busy.txt": 1, "fine.txt": 1})
    assert inbox.status().candidates == 0


def test_the_spool_left_by_a_crash_is_recovered_at_start_up(
    make_inbox: Callable[..., Inbox], runs: Runs
) -> None:
    inbox = make_inbox(settle_s=0.0, start=False)
    orphan = spool(inbox.watch, PROCESSING, "2020-01-01T00-00-00Z-aaaaaa")  # taken, never submitted
    orphan.mkdir(parents=True)
    (orphan / "x.txt").write_text("x")
    empty = spool(inbox.watch, PROCESSING, "2020-01-01T00-00-00Z-bbbbbb")  # nothing in it
    empty.mkdir(parents=True)
    inbox.start()
    try:
        wait_for(lambda: runs.count() == 1, 10, "the orphan's submission")
        assert runs.runs == {orphan.name: {"x.txt": b"x"}}
        wait_for(lambda: not empty.exists(), 5, "the empty spool folder removed")
    finally:
        inbox.stop()


# -- what is never taken -------------------------------------------------------------------------
NEVER = (
    ".hidden.txt",
    "draft.tmp",
    "movie.part",
    "download.pdf.crdownload",
    ".DS_Store",
    "Thumbs.db",
    "@eaDir/thumb.txt",
    ".git/config.txt",
    "notes.skip",
    "private/secret.txt",
    "report.csv",  # not matching patterns
    "old.txt.error.txt",
)


def test_ignored_names_are_never_taken(make_inbox: Callable[..., Inbox], runs: Runs) -> None:
    inbox = make_inbox(
        start=False,
        settle_s=0.0,
        recursive=True,
        patterns=["*.txt", "*.pdf", "*.skip", "*.tmp", "*.part", "*.db", "*.crdownload", "*Store"],
        ignore=["*.skip", "private/*"],
        rescan_s=0.2,
    )
    root = inbox.watch.input_dir
    for rel in NEVER[:6]:  # there before start-up (the start-up scan)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text_invoice("NO", "1.00"))
    inbox.start()
    try:
        for rel in NEVER[6:]:  # arriving while watched (events)
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text_invoice("NO", "1.00"))
        (root / "good.txt").write_text(text_invoice("YES", "1.00"))
        wait_for(lambda: runs.files()["good.txt"] == 1, 10, "the good file")
        # Several rescans later, still nothing else.
        inbox._observer.stop()
        inbox._observer.join(10)
        (root / "canary.txt").write_text("x")  # only a rescan can find it
        wait_for(lambda: runs.files()["canary.txt"] == 1, 10, "a rescan")
        (root / "canary2.txt").write_text("x")
        wait_for(lambda: runs.files()["canary2.txt"] == 1, 10, "another rescan")
    finally:
        inbox.stop()
    assert set(runs.files()) == {"good.txt", "canary.txt", "canary2.txt"}
    for rel in NEVER:
        assert (root / rel).is_file(), rel


def test_symlinks_are_never_followed(
    make_inbox: Callable[..., Inbox], runs: Runs, tmp_path: Path
) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    target = outside / "passwd.txt"
    target.write_text(text_invoice("LEAK", "9.99"))
    before = target.stat()
    inbox = make_inbox(settle_s=0.0, recursive=True, rescan_s=0.2)
    root = inbox.watch.input_dir
    (root / "link.txt").symlink_to(target)
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    (root / "good.txt").write_text("x")
    wait_for(lambda: runs.files()["good.txt"] == 1, 10, "the good file")
    inbox.rescan_soon()
    (root / "after.txt").write_text("x")
    wait_for(lambda: runs.files()["after.txt"] == 1, 10, "after.txt")
    assert set(runs.files()) == {"good.txt", "after.txt"}
    assert (root / "link.txt").is_symlink() and (root / "linkdir").is_symlink()
    assert target.read_text() == text_invoice("LEAK", "9.99")
    assert (target.stat().st_ino, target.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert [p.name for p in outside.iterdir()] == ["passwd.txt"]


def test_a_folder_replaced_by_a_link_before_its_scan_is_not_followed(
    make_inbox: Callable[..., Inbox], runs: Runs, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "theirs.txt").write_text(text_invoice("THEIRS", "1.00"))
    inbox = make_inbox(settle_s=0.0, recursive=True, rescan_s=60.0)
    root = inbox.watch.input_dir
    (root / "sub").symlink_to(outside, target_is_directory=True)
    inbox.note(str(root / "sub"), complete=False, kind="dir")  # as if a folder had been made
    inbox.note(str(root / "sub" / "theirs.txt"), complete=True, kind="closed")
    (root / "mine.txt").write_text("x")
    wait_for(lambda: runs.files()["mine.txt"] == 1, 10, "mine.txt")
    assert set(runs.files()) == {"mine.txt"}
    assert (outside / "theirs.txt").is_file()


# -- after a run ---------------------------------------------------------------------------------
def test_after_archive_and_failed_files(make_inbox: Callable[..., Inbox], runs: Runs) -> None:
    inbox = make_inbox(settle_s=0.0, batch_window_s=0.5)
    root = inbox.watch.input_dir
    (root / "ok.txt").write_text("ok")
    (root / "bad.pdf").write_bytes(b"\x00garbage")
    (root / "gone.txt").write_text("cancelled")
    wait_for(lambda: sum(runs.files().values()) == 3, 10, "the batch")
    (run_id,) = runs.runs
    inbox.finish(
        run_id,
        [
            ("ok.txt", "DONE", None),
            ("bad.pdf", "FAILED", "bad.pdf: not a valid PDF"),
            ("gone.txt", "CANCELLED", None),
        ],
    )
    assert (spool(inbox.watch, DONE, run_id) / "ok.txt").read_text() == "ok"
    failed = spool(inbox.watch, FAILED, run_id)
    assert (failed / "bad.pdf").read_bytes() == b"\x00garbage"
    assert (failed / "bad.pdf.error.txt").read_text() == "bad.pdf: not a valid PDF\n"
    assert (failed / "gone.txt.error.txt").read_text() == "cancelled\n"
    assert not spool(inbox.watch, PROCESSING, run_id).exists()
    assert sorted(p.name for p in root.iterdir()) == [".flowd"]


def test_after_delete_removes_done_files(make_inbox: Callable[..., Inbox], runs: Runs) -> None:
    inbox = make_inbox(settle_s=0.0, after="delete")
    (inbox.watch.input_dir / "a.txt").write_text("a")
    wait_for(lambda: runs.count() == 1, 10, "a.txt")
    finish_all(inbox, runs)
    assert not list(inbox.watch.input_dir.rglob("a.txt"))


def test_after_keep_leaves_the_file_and_never_runs_it_again(
    make_inbox: Callable[..., Inbox], runs: Runs, tmp_path: Path
) -> None:
    kept = tmp_path / "state" / "kept" / "w.sha256"
    inbox = make_inbox(settle_s=0.0, after="keep", kept_hashes=kept, rescan_s=0.2)
    root = inbox.watch.input_dir
    (root / "a.txt").write_text("same content")
    wait_for(lambda: runs.count() == 1, 10, "a.txt")
    finish_all(inbox, runs)
    assert (root / "a.txt").read_text() == "same content"
    assert len(kept.read_text().split()) == 1
    # The file came back (a rename into the folder, an event) and rescans see it: never again.
    (root / "b.txt").write_text("other content")
    wait_for(lambda: runs.files()["b.txt"] == 1, 10, "b.txt")
    inbox.rescan_soon()
    (root / "c.txt").write_text("third content")
    wait_for(lambda: runs.files()["c.txt"] == 1, 10, "c.txt")
    assert runs.files()["a.txt"] == 1
    inbox.stop()

    # A restart: the hashes are read back; a copy under another name is the same content.
    (root / "copy-of-a.txt").write_text("same content")
    again = make_inbox(settle_s=0.0, after="keep", kept_hashes=kept)
    (root / "d.txt").write_text("fourth content")
    wait_for(lambda: runs.files()["d.txt"] == 1, 10, "d.txt")
    assert again.status().candidates == 0
    assert runs.files()["a.txt"] == 1 and runs.files()["copy-of-a.txt"] == 0
    assert (root / "copy-of-a.txt").exists()
