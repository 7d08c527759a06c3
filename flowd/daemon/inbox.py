"""One watched inbox (a ``[[watches]]`` table, SPEC §8): files dropped in become runs.

The life of a file::

    input_dir/a.pdf ──taken──▶ input_dir/.flowd/processing/<run_id>/a.pdf  (the run's input)
                       └─ done ──▶ .flowd/done/<run_id>/a.pdf     (after = "archive")
                                   deleted                         (after = "delete")
                                   back to input_dir/a.pdf         (after = "keep"; its hash is
                                                                    remembered, never run again)
                       └─ failed ─▶ .flowd/failed/<run_id>/a.pdf + a.pdf.error.txt

**When a file is taken.** At once when the watcher sees it closed after writing or renamed into the
folder; otherwise (writers that never close, network shares, ``polling = true``) once it has been
quiet for ``settle_s`` with size and mtime unchanged. Files that become ready within
``batch_window_s`` of the first go into one run (at most ``max_batch``).

**Events get lost** (inotify queue overflow, network shares, a crash), so the watcher is only a hint:
a scan at start-up and a periodic rescan reconcile the folder with what is known, and a file is
never queued twice — every path is either unknown, a candidate, or moved out of the folder (the
spool is the record of what was taken). A rename that fails for a transient reason (``EBUSY``, a
permission being fixed) is tried again later, never dropped; a run that cannot be submitted (its
binary not built yet) stays in ``processing/`` and is submitted again at the next rescan.

**What is never taken**: names not matching ``patterns`` or matching ``ignore``; hidden files and
folders; temporary or partial names of editors, browsers and copy tools; OS junk (``.DS_Store``,
``Thumbs.db``, ``@eaDir``, …); and symlinks — a link dropped into an inbox is not followed (it could
point anywhere on the machine).
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from flowd.config import AfterAction, WatchConfig
from flowd.engine.settings import new_run_id
from flowd.errors import FlowdError
from flowd.fsutil import display_name, write_atomic

log = structlog.get_logger("flowd.watch")

SPOOL = ".flowd"
PROCESSING, DONE, FAILED = "processing", "done", "failed"
RESCAN_S = 30.0
"""How often an inbox is scanned whether or not events came (events can be lost)."""
MOVE_PAIRING_S = 0.02
"""How long watchdog's inotify buffer waits to pair the two halves of a rename (see _observer)."""
RETRY_S = 5.0
"""How long a file whose rename failed transiently waits before it is tried again."""
TICK_S = 0.25
"""The longest the inbox loop sleeps while it has candidates to look at."""

TEMPORARY = (
    "*.tmp",
    "*.temp",
    "*.part",
    "*.partial",
    "*.crdownload",
    "*.download",
    "*.filepart",
    "*.swp",
    "*.swx",
    "*~",
    "~$*",
    ".~lock.*",
    "*.!ut",
    "*.opdownload",
)
"""Names writers use while a file is not complete yet (browsers, editors, office, rsync, scp)."""
JUNK = frozenset(
    {".DS_Store", "Thumbs.db", "desktop.ini", "ehthumbs.db", "Icon\r", ".localized", "._.DS_Store"}
)
JUNK_DIRS = frozenset(
    {
        SPOOL,
        "@eaDir",
        "__MACOSX",
        ".AppleDouble",
        "$RECYCLE.BIN",
        "System Volume Information",
        ".Trashes",
        ".Spotlight-V100",
        ".fseventsd",
        "#recycle",
        "lost+found",
    }
)
TRANSIENT_ERRNOS = frozenset(
    {errno.EBUSY, errno.EAGAIN, errno.EACCES, errno.EPERM, errno.ETXTBSY, errno.EIO, errno.ESTALE}
)

Submit = Callable[[WatchConfig, str, Path, list[str]], Any]
"""``submit(watch, run_id, spool_folder, files)``: start the run; raises a FlowdError if it
cannot be started now (it is tried again later)."""


@dataclass
class _Candidate:
    size: int
    mtime_ns: int
    quiet_since: float  # monotonic time since which size and mtime are unchanged
    complete: bool = False  # closed after writing or renamed in: ready at once
    not_before: float = 0.0  # after a transient failure


@dataclass(frozen=True)
class RunState:
    """What became of a spool folder's run: no job yet (``exists`` false), still going, or
    ``finished`` (ended and followed up) with each file's ``(file, task state, error)``."""

    exists: bool
    finished: bool = False
    outcomes: tuple[tuple[str, str, str | None], ...] = ()


@dataclass(frozen=True)
class InboxStatus:
    name: str
    input_dir: str
    candidates: int
    ready: int
    runs_started: int
    files_taken: int
    last_run_id: str | None
    last_error: str | None
    watching: bool


@dataclass
class _Counters:
    runs: int = 0
    files: int = 0
    last_run_id: str | None = None
    last_error: str | None = None


def spool(watch: WatchConfig, kind: str, run_id: str | None = None) -> Path:
    folder = watch.input_dir / SPOOL / kind
    return folder / run_id if run_id else folder


class Inbox:
    """Watches one inbox and turns its files into runs through ``submit``."""

    def __init__(
        self,
        watch: WatchConfig,
        submit: Submit,
        lookup: Callable[[str], RunState],
        *,
        kept_hashes: Path | None = None,
        rescan_s: float = RESCAN_S,
        on_event: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.watch = watch
        self.submit = submit
        self.lookup = lookup  # what became of a spool folder's run (its job id is the run id)
        self.rescan_s = rescan_s
        self.on_event = on_event
        self._clock = clock
        self._lock = threading.Lock()
        self._finish_lock = threading.Lock()
        self._real_root = os.path.realpath(watch.input_dir)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._candidates: dict[str, _Candidate] = {}
        self._ready: list[str] = []
        self._ready_since: float | None = None
        self._dirty_dirs: set[str] = set()
        self._rescan_due = 0.0
        self._kept_path = kept_hashes
        self._kept: set[str] = set()
        self._hash_cache: dict[tuple[str, int, int], str] = {}
        self._counters = _Counters()
        self._observer: Any = None
        self._thread: threading.Thread | None = None
        self._patterns = tuple(watch.patterns)
        self._ignore = tuple(watch.ignore)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create the inbox and its spool if needed, recover what a crash left in the spool,
        scan the folder, and start watching."""
        root = self.watch.input_dir
        for kind in (PROCESSING, DONE, FAILED):
            spool(self.watch, kind).mkdir(parents=True, exist_ok=True)
        if self._kept_path is not None and self._kept_path.exists():
            self._kept = set(self._kept_path.read_text(encoding="ascii").split())
        observer = _observer(self.watch.polling)
        observer.schedule(_Handler(self), str(root), recursive=self.watch.recursive)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._rescan_due = 0.0  # the start-up scan, on the inbox's own thread
        self._thread = threading.Thread(
            target=self._run, name=f"flowd-watch-{self.watch.name}", daemon=True
        )
        self._thread.start()
        log.info("watch_started", watch=self.watch.name, input_dir=str(root))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(10)
        if self._thread is not None:
            self._thread.join(30)
        log.info("watch_stopped", watch=self.watch.name)

    def status(self) -> InboxStatus:
        with self._lock:
            return InboxStatus(
                name=self.watch.name,
                input_dir=str(self.watch.input_dir),
                candidates=len(self._candidates),
                ready=len(self._ready),
                runs_started=self._counters.runs,
                files_taken=self._counters.files,
                last_run_id=self._counters.last_run_id,
                last_error=self._counters.last_error,
                watching=self._observer is not None and self._observer.is_alive(),
            )

    def rescan_soon(self) -> None:
        """Scan the folder at the next turn (a reload, a test that lost events on purpose)."""
        self._rescan_due = 0.0
        self._wake.set()

    # -- what the watcher says (observer thread) -------------------------------------------
    def note(self, path: str, *, complete: bool, kind: str) -> None:
        if self.on_event is not None:
            self.on_event(kind)
        rel = self._relative(path)
        if rel is None:
            return
        with self._lock:
            if kind == "dir":
                # Inotify reports new subfolders of a flat watch too, and hidden or junk folders
                # (@eaDir, .git) are never entered: scanning them would take their files.
                name = rel.rsplit("/", 1)[-1]
                if self.watch.recursive and not (name.startswith(".") or name in JUNK_DIRS):
                    self._dirty_dirs.add(rel)
            else:
                found = self._candidates.get(rel)
                if found is not None:
                    found.complete = found.complete or complete
                elif rel not in self._ready:
                    self._candidates[rel] = _Candidate(-1, -1, self._clock(), complete)
        self._wake.set()

    def _relative(self, path: str) -> str | None:
        """``path`` relative to the inbox, or ``None`` if it is outside it or never taken."""
        root = str(self.watch.input_dir)
        if not path.startswith(root + os.sep):
            return None
        rel = path[len(root) + 1 :]
        parts = rel.split(os.sep)
        if not self.watch.recursive and len(parts) > 1:
            return None
        if any(p.startswith(".") or p in JUNK_DIRS for p in parts[:-1]):
            return None
        return rel.replace(os.sep, "/")

    def wanted(self, rel: str) -> bool:
        """Whether a file at ``rel`` is one this inbox takes (by its name alone)."""
        name = rel.rsplit("/", 1)[-1]
        if name.startswith(".") or name in JUNK or name.endswith(".error.txt"):
            return False
        if any(fnmatch.fnmatch(name, p) for p in TEMPORARY):
            return False
        if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in self._ignore):
            return False
        return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in self._patterns)

    # -- the inbox's own thread ------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._turn()
            except Exception as exc:  # an unexpected error must not stop the inbox for good
                log.exception("watch_error", watch=self.watch.name)
                with self._lock:
                    self._counters.last_error = f"{type(exc).__name__}: {exc}"
                self._stop.wait(1.0)
            with self._lock:
                busy = bool(self._candidates or self._ready or self._dirty_dirs)
            now = self._clock()
            wait = max(0.0, self._rescan_due - now)
            if busy:
                wait = min(wait, TICK_S, max(0.01, self.watch.batch_window_s / 2))
            self._wake.wait(wait)
            self._wake.clear()

    def _turn(self) -> None:
        now = self._clock()
        if now >= self._rescan_due:
            self._rescan_due = now + self.rescan_s
            self._recover_spool()
            self._scan(self.watch.input_dir)
        with self._lock:
            dirs, self._dirty_dirs = self._dirty_dirs, set()
        for rel in sorted(dirs):
            self._scan(self.watch.input_dir / rel)  # a folder moved in brings files without events
        self._promote(now)
        self._flush_if_due(now)

    def _scan(self, folder: Path) -> None:
        """Add every wanted file under ``folder`` that is not known yet (not a symlink)."""
        root = self.watch.input_dir
        if folder != root and not self._inside(folder):
            return  # a subfolder replaced by a link since it was queued: never followed
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning(
                "watch_scan_failed", watch=self.watch.name, folder=str(folder), error=str(exc)
            )
            return
        for entry in entries:
            rel = os.path.relpath(entry.path, root).replace(os.sep, "/")
            try:
                if entry.is_symlink():
                    log.info("watch_symlink_ignored", watch=self.watch.name, file=display_name(rel))
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if self.watch.recursive and not (
                        entry.name.startswith(".") or entry.name in JUNK_DIRS
                    ):
                        self._scan(Path(entry.path))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
            except OSError:
                continue
            with self._lock:
                if rel in self._candidates or rel in self._ready:
                    continue
                self._candidates[rel] = _Candidate(-1, -1, self._clock())

    def _promote(self, now: float) -> None:
        """Move candidates that are complete or have settled to the ready list, in order."""
        with self._lock:
            items = list(self._candidates.items())
        settled: list[str] = []
        dropped: list[str] = []
        for rel, c in items:
            if c.not_before > now:
                continue
            if not self.wanted(rel):
                dropped.append(rel)
                continue
            path = self.watch.input_dir / rel
            if "/" in rel and not self._inside(path.parent):
                dropped.append(rel)  # a folder on its way is a link now: the file is outside
                continue
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                dropped.append(rel)
                continue
            except OSError:
                continue
            if not _is_regular(st.st_mode):
                dropped.append(rel)  # a symlink, a FIFO, a folder: never taken
                if os.path.islink(path):
                    log.info("watch_symlink_ignored", watch=self.watch.name, file=display_name(rel))
                continue
            if self.watch.after is AfterAction.KEEP and self._is_kept(rel, st):
                dropped.append(rel)
                continue
            if (st.st_size, st.st_mtime_ns) != (c.size, c.mtime_ns):
                first_look = c.size < 0
                c.size, c.mtime_ns = st.st_size, st.st_mtime_ns
                # Seen for the first time and untouched for settle_s already (a start-up scan):
                # as good as settled. Otherwise its quiet time starts now.
                age = time.time() - st.st_mtime_ns / 1e9
                c.quiet_since = now - age if first_look and age >= 0 else now
            if (
                c.complete and not self.watch.polling
            ) or now - c.quiet_since >= self.watch.settle_s:
                settled.append(rel)
        with self._lock:
            for rel in dropped:
                self._candidates.pop(rel, None)
            for rel in settled:
                if self._candidates.pop(rel, None) is not None:
                    if not self._ready:
                        self._ready_since = now
                    self._ready.append(rel)

    def _flush_if_due(self, now: float) -> None:
        with self._lock:
            if not self._ready or self._ready_since is None:
                return
            full = len(self._ready) >= self.watch.max_batch
            if not full and now - self._ready_since < self.watch.batch_window_s:
                return
            batch = self._ready[: self.watch.max_batch]
            self._ready = self._ready[self.watch.max_batch :]
            self._ready_since = now if self._ready else None
        self._take(batch, now)

    def _take(self, batch: list[str], now: float) -> None:
        """Move ``batch`` into a new spool folder and start its run."""
        run_id = new_run_id()
        folder = spool(self.watch, PROCESSING, run_id)
        taken: list[str] = []
        for rel in batch:
            target = folder / rel
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(self.watch.input_dir / rel, target)
            except FileNotFoundError:
                continue  # gone before it could be taken
            except OSError as exc:
                if exc.errno in TRANSIENT_ERRNOS:
                    log.warning(
                        "watch_take_retry",
                        watch=self.watch.name,
                        file=display_name(rel),
                        error=str(exc),
                    )
                    with self._lock:
                        self._candidates[rel] = _Candidate(-1, -1, now, False, now + RETRY_S)
                    continue
                raise
            taken.append(rel)
        if not taken:
            _remove_empty(folder, spool(self.watch, PROCESSING))
            return
        with self._lock:
            self._counters.files += len(taken)
        log.info("watch_taken", watch=self.watch.name, run_id=run_id, files=len(taken))
        self._submit(run_id, taken)

    def _submit(self, run_id: str, files: list[str]) -> None:
        folder = spool(self.watch, PROCESSING, run_id)
        try:
            self.submit(self.watch, run_id, folder, files)
        except FlowdError as exc:
            # Left in processing/: submitted again at the next rescan (a binary not built yet).
            log.error(
                "watch_submit_failed", watch=self.watch.name, run_id=run_id, error=exc.message
            )
            with self._lock:
                self._counters.last_error = exc.message
            return
        with self._lock:
            self._counters.runs += 1
            self._counters.last_run_id = run_id

    def _recover_spool(self) -> None:
        """Reconcile ``processing/`` with the job store: a folder whose run has no job (a crash
        between taking and submitting, a submission that failed) is submitted; one whose job
        ended and was followed up while its files were not moved on (a crash in between) is
        finished now."""
        processing = spool(self.watch, PROCESSING)
        try:
            runs = sorted(p.name for p in processing.iterdir() if p.is_dir())
        except OSError:
            return
        for run_id in runs:
            state = self.lookup(run_id)
            if state.finished:
                self.finish(run_id, state.outcomes)
            elif not state.exists:
                files = _files_under(processing / run_id)
                if files:
                    self._submit(run_id, files)
                else:
                    _remove_empty(processing / run_id, processing)

    # -- after a run -----------------------------------------------------------------------
    def finish(self, run_id: str, outcomes: Iterable[tuple[str, str, str | None]]) -> None:
        """The run's job ended and its results are written: each ``(file, state, error)`` moves
        on — done files per ``after``, failed or cancelled ones to ``failed/`` with an error file
        beside them. Files still held (at a checkpoint) stay in ``processing/``. The daemon's
        follow-up and a rescan's spool recovery may both call it for one run: one at a time."""
        with self._finish_lock:
            self._finish(run_id, outcomes)

    def _inside(self, folder: Path) -> bool:
        """Whether ``folder``, symlinks resolved, is the inbox or inside it."""
        real = os.path.realpath(folder)
        return real == self._real_root or real.startswith(self._real_root + os.sep)

    def _finish(self, run_id: str, outcomes: Iterable[tuple[str, str, str | None]]) -> None:
        folder = spool(self.watch, PROCESSING, run_id)
        moved = 0
        for rel, state, error in outcomes:
            source = folder / rel
            if not os.path.lexists(source):
                continue
            try:
                if state == "DONE":
                    self._done(run_id, rel, source)
                elif state in ("FAILED", "CANCELLED"):
                    target = spool(self.watch, FAILED, run_id) / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(source, target)
                    why = error or ("cancelled" if state == "CANCELLED" else "failed")
                    write_atomic(
                        target.with_name(target.name + ".error.txt"), (why + "\n").encode()
                    )
                else:
                    continue
                moved += 1
            except OSError as exc:
                log.error(
                    "watch_after_failed",
                    watch=self.watch.name,
                    run_id=run_id,
                    file=display_name(rel),
                    error=str(exc),
                )
        _remove_empty(folder, spool(self.watch, PROCESSING))
        if moved:  # a run held at a checkpoint is looked at on every rescan: say nothing then
            log.info("watch_run_finished", watch=self.watch.name, run_id=run_id, files=moved)

    def _done(self, run_id: str, rel: str, source: Path) -> None:
        after = self.watch.after
        if after is AfterAction.DELETE:
            source.unlink()
        elif after is AfterAction.ARCHIVE:
            target = spool(self.watch, DONE, run_id) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(source, target)
        else:  # keep: back where it was, remembered so that it is never run again
            digest = _sha256(source)
            self._remember(digest)
            target = self.watch.input_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(target):  # a new file of that name arrived meanwhile: keep both
                target = target.with_name(f"{target.stem}.{run_id}{target.suffix}")
            os.rename(source, target)

    def _remember(self, digest: str) -> None:
        with self._lock:
            if digest in self._kept:
                return
            self._kept.add(digest)
        if self._kept_path is not None:
            self._kept_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._kept_path, "a", encoding="ascii") as fh:
                fh.write(digest + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def _is_kept(self, rel: str, st: os.stat_result) -> bool:
        key = (rel, st.st_size, st.st_mtime_ns)
        digest = self._hash_cache.get(key)
        if digest is None:
            try:
                digest = _sha256(self.watch.input_dir / rel)
            except OSError:
                return False
            if len(self._hash_cache) > 100_000:
                self._hash_cache.clear()
            self._hash_cache[key] = digest
        return digest in self._kept


class _Handler(FileSystemEventHandler):
    """Turns watchdog events into :meth:`Inbox.note` calls; never blocks the observer."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def on_any_event(self, event: FileSystemEvent) -> None:
        path = os.fsdecode(
            event.dest_path
            if isinstance(event, (FileMovedEvent, DirMovedEvent))
            else event.src_path
        )
        if isinstance(event, (DirCreatedEvent, DirMovedEvent)):
            self.inbox.note(path, complete=False, kind="dir")
        elif isinstance(event, FileClosedEvent):
            self.inbox.note(path, complete=True, kind="closed")
        elif isinstance(event, FileMovedEvent):
            self.inbox.note(path, complete=True, kind="moved")
        elif isinstance(event, (FileCreatedEvent, FileModifiedEvent)):
            self.inbox.note(path, complete=False, kind=event.event_type)


def _observer(polling: bool) -> Any:
    """The watchdog observer for an inbox. On Linux, inotify with *full* events: by default
    watchdog reports a file renamed in from outside the watched folder (an unpaired
    ``IN_MOVED_TO``) as merely "created", which the settle rule would hold for ``settle_s``;
    full events report it as a move, taken at once."""
    if polling:
        return PollingObserver(timeout=1.0)
    if sys.platform.startswith("linux"):
        from watchdog.observers.inotify import InotifyObserver
        from watchdog.observers.inotify_buffer import InotifyBuffer

        # watchdog holds an unpaired IN_MOVED_FROM for ``delay`` seconds (0.5) to pair it with
        # its IN_MOVED_TO — and every later event waits behind it. Each file an inbox takes is
        # such a move (into .flowd/, which a non-recursive watch does not watch), so a file
        # arriving just after another would wait half a second. The kernel queues both halves
        # of a move together; a short delay still pairs them.
        InotifyBuffer.delay = MOVE_PAIRING_S
        return InotifyObserver(generate_full_events=True)
    return Observer()


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files_under(folder: Path) -> list[str]:
    out: list[str] = []
    for base, _, files in os.walk(folder):
        for name in files:
            out.append(os.path.relpath(os.path.join(base, name), folder).replace(os.sep, "/"))
    return sorted(out)


def _remove_empty(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its empty subfolders if nothing is left in them (up to ``stop``)."""
    if not folder.is_dir() or folder == stop:
        return
    for base, _dirs, files in os.walk(folder, topdown=False):
        if not files and not os.listdir(base):
            try:
                os.rmdir(base)
            except OSError:
                return
