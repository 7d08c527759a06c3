"""Flow projects the daemon keeps compiled: watched, debounced, rebuilt, never left broken (SPEC §8).

A user edits a flow in their editor and the next run uses the new binary; a broken edit must not
take the service down. :class:`ProjectBuilder` gives that contract:

- **Start-up compiles** every ``auto_compile`` project, so a binary that is missing or older than
  its sources is rebuilt before anything runs it; an up-to-date binary is left untouched (the
  compiler does not rewrite an identical binary, so its mtime and inode stay).
- **Changes are debounced**: an editor's save is a burst of events (temporary file, rename,
  attribute change…) and a ``git checkout`` is hundreds; a project compiles once it has been quiet
  for ``debounce_s``. Compiles run on one background thread, so one project never compiles twice at
  once; a change that lands during a compile marks the project dirty again and it compiles once
  more afterwards.
- **A failed build keeps the previous binary in service** (the compiler writes atomically and only
  on success); the located problems go to the status, to ``flowd status``/the API through
  :meth:`ProjectBuilder.status`, and to the log as ``project_compile_failed``.
- **Events get lost** (inotify queue overflow, network shares, a watch that dies with its folder), so
  a periodic rescan compares a cheap fingerprint of the sources with the one taken at the last
  compile and compiles when they differ, and re-establishes the watch of a root that was deleted,
  moved or replaced.

Pure parts (:func:`is_ignored`, :func:`is_source_change`, :func:`source_fingerprint`) decide what
counts as a change; the watchdog adapter only forwards events to them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import structlog
from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from flowd.config.projects import ProjectConfig
from flowd.errors import BinaryError, CompileError, Problem
from flowd.flows.binary import CompiledBinary
from flowd.flows.compiler import BINARY_SUFFIX, compile_project

log = structlog.get_logger("flowd.projects")

ProjectState = Literal["ok", "failed", "compiling", "never"]
"""``ok``: the last compile succeeded; ``failed``: it did not (the previous binary, if any, is still
in service); ``compiling``: a compile is running; ``never``: not compiled since the daemon started
(a project with ``auto_compile = false`` until :meth:`ProjectBuilder.compile_now`)."""


@dataclass(frozen=True)
class ProjectStatus:
    """What ``flowd status`` and the API show for one project; a snapshot, safe to hand around."""

    name: str
    root: Path
    binary_path: Path
    auto_compile: bool
    state: ProjectState
    last_compile_at: float | None = None  # Unix seconds, end of the last compile (either outcome)
    last_success_at: float | None = None
    content_sha256: str | None = None  # of the binary in service (None: there is none)
    problems: tuple[str, ...] = ()  # ``file:line:col: message`` of the last failed compile
    written: bool = False  # the last compile produced a new binary (False: identical, or failed)


# --- what counts as a change (pure) ---------------------------------------------------------------

_EDITOR_TEMPORARY = re.compile(
    r"""(?x)
      .*~              # emacs/vim backups, many editors' "save as" leftovers
    | .*\.(tmp|swp|swx|swo|swpx)
    | \#.*\#           # emacs auto-save
    | 4913             # vim probes whether it may write a folder with this name
    """
)
_ATOMIC_TEMPORARY = re.compile(r".*\.tmp-\d+-\d+")  # flowd.fsutil.write_atomic's temporary names
_BINARY = re.compile(rf".*{re.escape(BINARY_SUFFIX)}")


def is_ignored(relative: str) -> bool:
    """True when ``relative`` (a path below a project root, ``/``-separated) is not a source, so
    changing it must not compile. Ignored:

    - ``build/`` at the top of the root: the default home of binaries. Writing the binary there
      must not trigger the next compile (an endless loop otherwise).
    - Any ``*.ibflowbin`` file and its atomic-write temporaries, wherever they are: a binary is
      never a source, and a ``binary_path`` elsewhere in the root (or the binary of a second
      project sharing the root) must not trigger compiles either. Only binaries are ignored, not
      their whole folder: a ``binary_path`` pointing into a folder of sources must not hide them.
    - Hidden files and folders (``.git``, ``.foo.swp``, emacs' ``.#foo`` locks), ``__pycache__``
      (importing a UDF writes one), editor temporaries and backups (``*~``, ``*.tmp``, ``*.swp``,
      ``#foo#``, vim's ``4913`` probe) and ``write_atomic`` temporaries.
    """
    parts = [p for p in relative.split("/") if p and p != "."]
    if not parts:
        return False
    if parts[0] == "build":
        return True
    if any(part.startswith(".") or part == "__pycache__" for part in parts):
        return True
    name = parts[-1]
    return bool(
        _EDITOR_TEMPORARY.fullmatch(name)
        or _ATOMIC_TEMPORARY.fullmatch(name)
        or _BINARY.fullmatch(name)
    )


# Event types that say a file's content or presence changed. "opened" and "closed_no_write" are
# what the compiler itself causes by *reading* the sources: counting them would compile forever.
_CHANGES = frozenset(
    {
        EVENT_TYPE_CREATED,
        EVENT_TYPE_MODIFIED,
        EVENT_TYPE_MOVED,
        EVENT_TYPE_DELETED,
        EVENT_TYPE_CLOSED,
    }
)


def _relative(path: bytes | str, root: str) -> str | None:
    text = os.fsdecode(path)
    if not text:
        return None
    rel = os.path.relpath(text, root)
    if rel == ".." or rel.startswith("../"):
        return None
    return rel.replace(os.sep, "/")


def is_source_change(event: FileSystemEvent, root: str) -> bool:
    """True when a watchdog ``event`` under ``root`` (absolute) may change what a project compiles.

    A folder's "created" or "modified" event is not a change by itself: "modified" is the echo of
    a change to an entry inside it, the files of a new folder arrive as their own events (watchdog
    reports those of a folder created or moved in), and an empty folder compiles to the same
    binary. Counting them would make the compiler's own ``mkdir`` of a binary folder a change. A
    folder deleted or moved away counts: its files get no events of their own. A move counts when
    either end is a source (an editor's temporary file renamed over the real one).
    """
    if event.event_type not in _CHANGES:
        return False
    if event.is_directory and event.event_type in (EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED):
        return False
    ends = [event.src_path]
    if event.event_type == EVENT_TYPE_MOVED:
        ends.append(event.dest_path)
    for end in ends:
        rel = _relative(end, root)
        if rel is not None and not is_ignored(rel):
            return True
    return False


MISSING = "missing"
"""The fingerprint of a root that is not a readable folder."""


def source_fingerprint(root: Path) -> str:
    """A cheap digest of the sources under ``root``: sorted (relative path, size, mtime_ns) of every
    file :func:`is_ignored` keeps. Equal fingerprints mean nothing worth compiling changed —
    this is what the rescan compares, because watch events can be lost. Only ``stat`` calls, no
    reads; unreadable folders and files that vanish mid-walk are skipped, not fatal."""
    if not root.is_dir():
        return MISSING
    entries: list[tuple[str, int, int]] = []
    top = os.fspath(root)
    for folder, dirs, files in os.walk(top):
        base = os.path.relpath(folder, top).replace(os.sep, "/")
        base = "" if base == "." else base + "/"
        dirs[:] = [d for d in dirs if not is_ignored(base + d)]
        for name in files:
            rel = base + name
            if is_ignored(rel):
                continue
            try:
                st = os.stat(os.path.join(folder, name))
            except OSError:
                continue
            entries.append((rel, st.st_size, st.st_mtime_ns))
    entries.sort()
    return hashlib.sha256(repr(entries).encode()).hexdigest()


def _binary_in_service(path: Path) -> str | None:
    """The content hash of the valid binary at ``path``, or None (missing, unreadable, damaged)."""
    try:
        return CompiledBinary.from_bytes(path.read_bytes(), str(path)).content_sha256
    except (OSError, BinaryError):
        return None


def _root_identity(root: str) -> tuple[int, int] | None:
    try:
        st = os.stat(root)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


# --- the builder ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Project:
    """One project's mutable state; every field but ``compiling`` is guarded by the builder's lock."""

    config: ProjectConfig
    root: Path
    binary: Path
    status: ProjectStatus
    dirty: bool = False
    changed_at: float = 0.0  # time.monotonic() of the last source event
    fingerprint: str | None = None  # of the sources when the last compile started (None: retry)
    compiling: threading.Lock = field(default_factory=threading.Lock)  # one compile at a time


@dataclass(eq=False)
class _RootWatch:
    """One watch per distinct root: several projects may share a root (SPEC §8's example does)."""

    root: str
    projects: list[_Project]
    handler: FileSystemEventHandler | None = None  # one object, so rescheduling never doubles it
    watch: ObservedWatch | None = None
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the root when watched


class _Forward(FileSystemEventHandler):
    """The thin watchdog adapter: every event goes to the builder, which decides."""

    def __init__(self, builder: ProjectBuilder, root: _RootWatch) -> None:
        self._builder = builder
        self._root = root

    def dispatch(self, event: FileSystemEvent) -> None:
        self._builder._on_event(self._root, event)


class ProjectBuilder:
    """Keeps the binaries of ``projects`` compiled while the daemon runs (SPEC §8 "Projects").

    :meth:`start` compiles every ``auto_compile`` project (blocking, so binaries are current before
    watches run them), then watches each of their roots recursively with one watchdog observer and
    starts the background compile thread. :meth:`stop` ends both. Projects with ``auto_compile =
    false`` are neither compiled at start-up nor watched; :meth:`compile_now` compiles them.

    ``on_built(status)`` is called after every compile, success or failure, on the thread that
    compiled (the builder's thread, or the caller of :meth:`compile_now`); an exception it raises
    is logged and swallowed, so a faulty listener cannot stop the builder. Status reads are
    thread-safe and return frozen snapshots.
    """

    def __init__(
        self,
        projects: Sequence[ProjectConfig],
        *,
        debounce_s: float = 0.5,
        on_built: Callable[[ProjectStatus], None] | None = None,
        rescan_s: float = 30.0,
    ) -> None:
        self.configs = tuple(projects)
        self._debounce_s = debounce_s
        self._rescan_s = rescan_s
        self._on_built = on_built
        self._cond = threading.Condition()
        self._projects: dict[str, _Project] = {}
        for config in projects:
            if config.name in self._projects:
                raise ValueError(f"two projects are named {config.name!r}")
            root = Path(os.path.abspath(config.root))
            binary = Path(os.path.abspath(config.binary_file))
            status = ProjectStatus(config.name, root, binary, config.auto_compile, "never")
            self._projects[config.name] = _Project(config, root, binary, status)
        by_root: dict[str, list[_Project]] = {}
        for project in self._projects.values():
            if project.config.auto_compile:
                by_root.setdefault(os.fspath(project.root), []).append(project)
        self._roots = [_RootWatch(root, members) for root, members in by_root.items()]
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Compile the ``auto_compile`` projects, then watch them and start the compile thread.

        Start-up compiles are synchronous; a failure is a ``failed`` status, never an exception.
        Changes made between a start-up compile and the watch being set up are caught by a rescan
        run as soon as the thread starts.
        """
        if self._thread is not None:
            raise RuntimeError("ProjectBuilder.start() called twice")
        for project in self._projects.values():
            if project.config.auto_compile:
                self._compile(project)
            else:
                sha = _binary_in_service(project.binary)
                with self._cond:
                    project.status = replace(project.status, content_sha256=sha)
        # Started before scheduling: an observer whose start() meets a root that cannot be watched
        # would refuse to start at all; a watch scheduled on a running one fails alone.
        self._observer = Observer()
        self._observer.start()
        for root in self._roots:
            self._ensure_watch(root)
        self._thread = threading.Thread(target=self._run, name="flowd-projects", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and wait for the compile thread (a running compile finishes first)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            with contextlib.suppress(RuntimeError):
                self._observer.join()
        if self._thread is not None:
            self._thread.join()

    # -- reads ------------------------------------------------------------------------------------

    def status(self) -> list[ProjectStatus]:
        """Every project's status, in configuration order."""
        with self._cond:
            return [p.status for p in self._projects.values()]

    def get(self, name: str) -> ProjectStatus:
        """The status of project ``name`` (``KeyError`` if there is none)."""
        with self._cond:
            return self._projects[name].status

    def binary_for(self, name: str) -> Path:
        """Where project ``name``'s binary lives (whether or not it exists yet)."""
        return self._projects[name].binary

    # -- compiling --------------------------------------------------------------------------------

    def compile_now(self, name: str) -> ProjectStatus:
        """Compile project ``name`` now, on the calling thread, and return its new status.

        Waits for a compile of the same project already running on the builder's thread, so one
        project never compiles twice at once. Works for ``auto_compile = false`` projects too.
        """
        return self._compile(self._projects[name])

    def _compile(self, project: _Project) -> ProjectStatus:
        with project.compiling:
            with self._cond:
                project.status = replace(project.status, state="compiling")
            # Taken before compiling: a change made during the compile leaves the fingerprints
            # different, so the rescan compiles again even if its event is lost.
            fingerprint = source_fingerprint(project.root)
            status, retry = self._build(project)
            with self._cond:
                project.status = status
                project.fingerprint = None if retry else fingerprint
        if self._on_built is not None:
            try:
                self._on_built(status)
            except Exception:
                log.exception("project_on_built_failed", project=project.config.name)
        return status

    def _build(self, project: _Project) -> tuple[ProjectStatus, bool]:
        """Run the compiler; return the new status and whether a failure is worth retrying
        (an I/O error may pass; a CompileError stays until the sources change)."""
        config, root = project.config, project.root
        retry = False
        try:
            if not root.is_dir():
                what = "does not exist" if not root.exists() else "is not a folder"
                raise CompileError(
                    [Problem(str(root), 1, 1, f"the project root {what} (deleted or moved?)")]
                )
            result = compile_project(root, config.compile_settings(), config.binary_path)
        except CompileError as exc:
            problems = tuple(str(p) for p in exc.problems) or (str(exc),)
        except OSError as exc:  # e.g. a folder that cannot be read
            problems = (f"{root}:1:1: cannot read the project: {exc.strerror or exc}",)
            retry = True
        except Exception as exc:  # a compiler bug must not kill the builder's thread
            log.exception("project_compile_crashed", project=config.name)
            problems = (f"{root}:1:1: internal error while compiling: {exc!r}",)
            retry = True
        else:
            now = time.time()
            log.info(
                "project_compiled",
                project=config.name,
                binary=str(result.path),
                written=result.written,
                content_sha256=result.content_sha256,
            )
            status = replace(
                project.status,
                binary_path=result.path,
                state="ok",
                last_compile_at=now,
                last_success_at=now,
                content_sha256=result.content_sha256,
                problems=(),
                written=result.written,
            )
            return status, False
        log.warning(
            "project_compile_failed",
            project=config.name,
            root=str(root),
            problems=list(problems),
        )
        status = replace(
            project.status,
            state="failed",
            last_compile_at=time.time(),
            content_sha256=_binary_in_service(project.binary),
            problems=problems,
            written=False,
        )
        return status, retry

    # -- watching ---------------------------------------------------------------------------------

    def _on_event(self, root: _RootWatch, event: FileSystemEvent) -> None:
        """Called on the observer's thread for every event under ``root``."""
        if not is_source_change(event, root.root):
            return
        with self._cond:
            now = time.monotonic()
            for project in root.projects:
                project.dirty = True
                project.changed_at = now
            self._cond.notify_all()

    def _ensure_watch(self, root: _RootWatch) -> None:
        """Watch ``root`` if it is not watched, or no longer the folder that was watched.

        inotify watches a folder, not a name: a root deleted and recreated (or moved away and
        back, or replaced by ``git checkout`` of a parent) leaves a dead or misdirected watch.
        """
        observer = self._observer
        if observer is None or self._stopping:
            return
        identity = _root_identity(root.root)
        if root.watch is not None:
            alive = any(e.watch == root.watch and e.is_alive() for e in observer.emitters)
            if alive and identity == root.identity:
                return
            with contextlib.suppress(KeyError, OSError, RuntimeError):
                observer.unschedule(root.watch)
            root.watch, root.identity = None, None
            log.info("project_watch_lost", root=root.root)
        if identity is None:
            return  # nothing to watch yet; the compile reports the missing root
        if root.handler is None:
            root.handler = _Forward(self, root)
        try:
            root.watch = observer.schedule(root.handler, root.root, recursive=True)
        except OSError as exc:  # e.g. the inotify watch limit: the rescan still notices changes
            log.warning("project_watch_failed", root=root.root, error=str(exc))
            return
        root.identity = identity

    def _rescan(self) -> None:
        """Re-establish lost watches and mark dirty every project whose sources changed since its
        last compile without an event telling us (queue overflow, network share, dead watch)."""
        for root in self._roots:
            self._ensure_watch(root)
            fingerprint = source_fingerprint(Path(root.root))
            with self._cond:
                for project in root.projects:
                    if project.fingerprint == fingerprint or project.dirty:
                        continue
                    if project.fingerprint is None:  # the last compile met an I/O error: retry
                        log.info("project_compile_retry", project=project.config.name)
                    else:  # a change whose events were lost
                        log.info("project_change_missed", project=project.config.name)
                    project.dirty = True
                    project.changed_at = time.monotonic()

    def _run(self) -> None:
        """The compile thread: compile projects quiet for ``debounce_s``; rescan every ``rescan_s``
        (the first one at once, to cover the gap between start-up compiles and watches)."""
        next_rescan = time.monotonic()
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    due = [p for p in self._dirty() if now - p.changed_at >= self._debounce_s]
                    if due or now >= next_rescan:
                        break
                    wake = [p.changed_at + self._debounce_s for p in self._dirty()]
                    self._cond.wait(min([next_rescan, *wake]) - now)
                for project in due:
                    project.dirty = False  # an event during the compile sets it again
            for project in due:
                if self._stopping:
                    return
                self._compile(project)
            if time.monotonic() >= next_rescan:
                self._rescan()
                next_rescan = time.monotonic() + self._rescan_s

    def _dirty(self) -> list[_Project]:
        return [p for root in self._roots for p in root.projects if p.dirty]
