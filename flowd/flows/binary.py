"""The ``.ibflowbin`` format: a reproducible, verifiable zip of a compiled project.

Layout::

    manifest.json        format, version, binary type, compile settings, flows, flowd version,
                         created_at, contains_udfs, sha256 of every entry and of the whole content
    project/<relpath>    every project file the flows use, byte for byte (nothing else)

Builds are reproducible: entries are sorted, timestamps fixed, and ``created_at`` comes from
``SOURCE_DATE_EPOCH`` or else the newest source file's mtime, so the same sources give the same
bytes. Loading verifies every hash; a truncated or altered binary is refused with a
:class:`~flowd.errors.BinaryError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from flowd import __version__
from flowd.errors import BinaryError, CompileError
from flowd.flows.project import CompileSettings, load_project
from flowd.flows.sources import ArchiveReader
from flowd.flows.specs import ProjectSpec

MANIFEST = "manifest.json"
FORMAT = "ibflowbin"
FORMAT_VERSION = 1
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


HASHED_KEYS = (
    "binary_type",
    "compile_settings",
    "flows",
    "contains_udfs",
    "udf_scripts",
    "entries",
)
"""Manifest keys covered by ``content_sha256``: everything that describes what the binary does
(``contains_udfs`` gates what an API may run, so it must not be forgeable); not ``created_at`` or
``flowd_version``, which say when and by what it was built."""


def content_hash(manifest: dict[str, Any]) -> str:
    """sha256 over the manifest's :data:`HASHED_KEYS`: the identity of a binary."""
    canonical = json.dumps({k: manifest.get(k) for k in HASHED_KEYS}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def build_binary(spec: ProjectSpec, settings: CompileSettings, created_at: datetime) -> bytes:
    """The bytes of the binary for an already loaded and checked project."""
    entries = {ArchiveReader.PREFIX + path: data for path, data in spec.files}
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(entries.items())}
    settings_dict = settings.to_dict()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "binary_type": spec.binary_type.value,
        "compile_settings": settings_dict,
        "flows": [
            {"stem": f.stem, "name": f.name, "path": f.path, "fields": list(f.field_names)}
            for f in spec.flows
        ],
        "flowd_version": __version__,
        "created_at": created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "contains_udfs": bool(spec.udf_scripts),
        "udf_scripts": list(spec.udf_scripts),
        "entries": hashes,
    }
    manifest["content_sha256"] = content_hash(manifest)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        _add(zf, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
        for name in sorted(entries):
            _add(zf, name, entries[name])
    return buf.getvalue()


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    zf.writestr(info, data, compresslevel=6)


@dataclass(frozen=True)
class CompiledBinary:
    """A loaded, verified binary. ``project`` loads (and caches) the runnable spec."""

    name: str
    manifest: dict[str, Any] = field(compare=False)
    entries: dict[str, bytes] = field(compare=False, repr=False)
    data: bytes = field(compare=False, repr=False)

    @property
    def content_sha256(self) -> str:
        return str(self.manifest["content_sha256"])

    @property
    def compile_settings(self) -> CompileSettings:
        return CompileSettings.from_dict(self.manifest["compile_settings"])

    @cached_property
    def project(self) -> ProjectSpec:
        """The runnable project, UDF scripts executed: load it only where steps run."""
        return self._load(run_udfs=True)

    @cached_property
    def plan(self) -> ProjectSpec:
        """The project without executing UDF code: enough to plan a run (types, flows, fields)."""
        return self._load(run_udfs=False)

    def _load(self, run_udfs: bool) -> ProjectSpec:
        try:
            return load_project(
                ArchiveReader(self.entries), self.compile_settings, run_udfs=run_udfs
            )
        except CompileError as exc:
            raise BinaryError(self.name, f"its project no longer loads: {exc}") from exc

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> CompiledBinary:
        """Open and verify ``data``; raise BinaryError naming ``name`` and the cause."""
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            raise BinaryError(
                name, "not a flowd binary (not a zip archive, or truncated)"
            ) from None
        with zf:
            try:
                entries = {i.filename: zf.read(i) for i in zf.infolist()}
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise BinaryError(name, f"corrupt archive ({exc})") from None
            except Exception as exc:  # zlib.error and friends from a damaged stream
                raise BinaryError(name, f"corrupt archive ({type(exc).__name__}: {exc})") from None
        raw_manifest = entries.pop(MANIFEST, None)
        if raw_manifest is None:
            raise BinaryError(name, "no manifest.json: not a flowd binary")
        try:
            manifest = json.loads(raw_manifest)
        except ValueError:
            raise BinaryError(
                name, "manifest.json is not valid JSON (the binary was altered)"
            ) from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BinaryError(name, "manifest.json does not describe an ibflowbin")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise BinaryError(
                name,
                f"binary format version {manifest.get('format_version')!r} is not supported "
                f"(this flowd reads version {FORMAT_VERSION}); recompile the project",
            )
        _verify(name, manifest, entries)
        return cls(name=name, manifest=manifest, entries=entries, data=data)


def _verify(name: str, manifest: dict[str, Any], entries: dict[str, bytes]) -> None:
    listed = manifest.get("entries")
    if not isinstance(listed, dict):
        raise BinaryError(name, "manifest.json has no entry list")
    for entry in sorted(set(entries) - set(listed)):
        raise BinaryError(name, f"unexpected entry {entry!r} (the binary was altered)")
    for entry in sorted(set(listed) - set(entries)):
        raise BinaryError(name, f"entry {entry!r} is missing (the binary was altered or truncated)")
    for entry, expected in sorted(listed.items()):
        if hashlib.sha256(entries[entry]).hexdigest() != expected:
            raise BinaryError(name, f"entry {entry!r} was altered (sha256 mismatch)")
    if not isinstance(manifest.get("compile_settings"), dict) or content_hash(manifest) != (
        manifest.get("content_sha256")
    ):
        raise BinaryError(
            name, "content_sha256 does not match the manifest (the binary was altered)"
        )


def load_binary(path: Path) -> CompiledBinary:
    """Read and verify the binary at ``path``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BinaryError(str(path), "binary not found") from None
    except IsADirectoryError:
        raise BinaryError(str(path), "is a folder, not a binary") from None
    except OSError as exc:
        raise BinaryError(str(path), f"cannot read: {exc.strerror}") from None
    if not data:
        raise BinaryError(str(path), "empty file (0 bytes), not a flowd binary")
    return CompiledBinary.from_bytes(data, str(path))
