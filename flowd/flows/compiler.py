"""Compile a project folder into a ``.ibflowbin`` (SPEC §4).

The compiler loads the project with every check a run would need (:func:`load_project`), bundles
exactly the files the flows use, and writes the binary atomically. When the target already holds a
binary with the same content hash, it is left untouched: an unchanged project is never "recompiled"
into a new file.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flowd.errors import BinaryError, CompileError, Problem
from flowd.flows.binary import CompiledBinary, build_binary
from flowd.flows.project import CompileSettings, load_project
from flowd.flows.sources import DirectoryReader
from flowd.flows.specs import BinaryType
from flowd.fsutil import write_atomic

BINARY_SUFFIX = ".ibflowbin"


@dataclass(frozen=True)
class CompileResult:
    path: Path
    content_sha256: str
    written: bool  # False when an identical binary was already there


def default_stem(settings: CompileSettings) -> str:
    """The binary's name: the flow file's stem, the metaflow file's, or the flows folder's."""
    if settings.binary_type is BinaryType.SINGLE_FLOW:
        source = settings.flow_file or "flow"
    elif settings.binary_type is BinaryType.METAFLOW:
        source = settings.metaflow_file or "metaflow"
    else:
        source = (settings.flows_dir or "flows").rstrip("/") or "flows"
        if source in (".", ""):
            source = "flows"
    return posixpath.splitext(posixpath.basename(source.replace("\\", "/")))[0]


def output_path(root: Path, settings: CompileSettings, predefined: Path | None) -> Path:
    """Where the binary goes: ``root/build/bin/<stem>.ibflowbin`` unless ``predefined`` says
    otherwise (a folder, or a path ending in ``.ibflowbin``)."""
    name = default_stem(settings) + BINARY_SUFFIX
    if predefined is None:
        return root / "build" / "bin" / name
    if predefined.suffix == BINARY_SUFFIX:
        return predefined
    return predefined / name


def find_single_flow(root: Path) -> str:
    """The only ``.ibflow`` directly in ``root`` (the CLI's default ``--flow-file``)."""
    flows = sorted(p.name for p in root.glob("*.ibflow") if p.is_file())
    if len(flows) == 1:
        return flows[0]
    if not flows:
        raise CompileError([Problem(str(root), 1, 1, "no .ibflow file here; pass --flow-file")])
    raise CompileError(
        [Problem(str(root), 1, 1, f"several .ibflow files ({', '.join(flows)}); pass --flow-file")]
    )


def source_time(root: Path, files: list[str]) -> datetime:
    """``SOURCE_DATE_EPOCH`` if set, else the newest mtime among the bundled sources."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), UTC)
    newest = max((int((root / f).stat().st_mtime) for f in files), default=0)
    return datetime.fromtimestamp(newest, UTC)


def _same_content(target: Path, content_sha256: str) -> bool:
    """True when ``target`` is a valid binary with the same content (whatever its created_at)."""
    if not target.is_file():
        return False
    try:
        return CompiledBinary.from_bytes(target.read_bytes(), str(target)).content_sha256 == (
            content_sha256
        )
    except BinaryError:
        return False


def compile_project(
    root: Path, settings: CompileSettings, predefined: Path | None = None
) -> CompileResult:
    """Compile ``root`` per ``settings``; raise CompileError listing every problem."""
    if not root.is_dir():
        raise CompileError([Problem(str(root), 1, 1, "flow_project_root is not a folder")])
    spec = load_project(DirectoryReader(root), settings)
    data = build_binary(spec, settings, source_time(root, [p for p, _ in spec.files]))
    binary = CompiledBinary.from_bytes(data, "(new binary)")
    target = output_path(root, settings, predefined)
    try:
        if _same_content(target, binary.content_sha256):
            return CompileResult(target, binary.content_sha256, written=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data, fsync=True)
    except OSError as exc:
        raise CompileError(
            [Problem(str(target), 1, 1, f"cannot write the binary: {exc.strerror or exc}")]
        ) from exc
    return CompileResult(target, binary.content_sha256, written=True)
