"""Find a run's input files and turn them into tasks (SPEC §4, §5).

Nothing is dropped silently: every entry of the input folder becomes a task or a *rejected* file
with a reason (a symlink out of the folder, a name the flow does not take, a subfolder no flow is
named after, something that is not a regular file). Hidden files and folders are skipped, and so is
the run's own output folder when it lies inside the input folder.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from flowd.engine.output import BATCH_FILE
from flowd.engine.pipeline import Task
from flowd.flows.specs import BinaryType, ProjectSpec


@dataclass(frozen=True)
class Rejected:
    file: str  # relative to the input folder
    reason: str
    flow: str | None = None


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in patterns)


def scan(input_dir: Path, skip: Path | None = None) -> tuple[list[str], list[Rejected]]:
    """Regular files under ``input_dir`` (relative POSIX paths, sorted) and rejected entries."""
    root = os.path.realpath(input_dir)
    skip_real = os.path.realpath(skip) if skip is not None else None
    files: list[str] = []
    rejected: list[Rejected] = []

    def walk(folder: str, rel: str) -> None:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relpath = f"{rel}{entry.name}"
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if target != root and not target.startswith(root + os.sep):
                    rejected.append(
                        Rejected(
                            relpath,
                            "symbolic link pointing outside the input folder (not followed)",
                        )
                    )
                elif os.path.isdir(target):
                    rejected.append(Rejected(relpath, "symbolic link to a folder (not followed)"))
                elif os.path.isfile(target):
                    files.append(relpath)
                else:
                    rejected.append(Rejected(relpath, "broken symbolic link"))
            elif entry.is_dir(follow_symlinks=False):
                if skip_real is not None and os.path.realpath(entry.path) == skip_real:
                    continue
                if os.path.exists(os.path.join(entry.path, BATCH_FILE)):
                    continue  # an earlier run's output folder: results are never inputs
                walk(entry.path, relpath + "/")
            elif entry.is_file(follow_symlinks=False):
                files.append(relpath)
            else:
                rejected.append(Rejected(relpath, "not a regular file"))

    walk(root, "")
    return files, rejected


def make_tasks(project: ProjectSpec, files: list[str]) -> tuple[list[Task], list[Rejected]]:
    """The tasks for ``files`` under ``project``'s binary type (SPEC §4)."""
    tasks: list[Task] = []
    rejected: list[Rejected] = []
    kind = project.binary_type
    for file in files:
        base = posixpath.basename(file)
        if kind is BinaryType.METAFLOW:
            tasks.append(Task(file, None))
        elif kind is BinaryType.SINGLE_FLOW:
            flow = project.flows[0]
            if _matches(base, flow.patterns):
                tasks.append(Task(file, None))
            else:
                rejected.append(Rejected(file, _pattern_reason(flow.patterns)))
        else:
            top = file.split("/", 1)[0] if "/" in file else None
            targets = project.flows if top is None else [f for f in project.flows if f.stem == top]
            if not targets:
                names = ", ".join(f.stem for f in project.flows)
                rejected.append(Rejected(file, f"no flow named {top!r} in this binary ({names})"))
            for flow in targets:
                if _matches(base, flow.patterns):
                    tasks.append(Task(file, flow.stem))
                else:
                    rejected.append(Rejected(file, _pattern_reason(flow.patterns), flow.stem))
    return tasks, rejected


def _pattern_reason(patterns: tuple[str, ...]) -> str:
    return f"unsupported file: does not match the flow's input patterns ({', '.join(patterns)})"
