"""``[[projects]]``: the flow projects the daemon compiles, and recompiles when they change."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import model_validator

from flowd.config.values import (
    ConfigPath,
    ConfigProblems,
    Loc,
    Name,
    OptionalPath,
    RootRelative,
    Section,
)
from flowd.flows.compiler import output_path
from flowd.flows.project import CompileSettings
from flowd.flows.specs import BinaryType

_NEEDS: Mapping[BinaryType, tuple[str, ...]] = {
    BinaryType.SINGLE_FLOW: ("flow_file",),
    BinaryType.METAFLOW: ("flows_dir", "metaflow_file", "classifier_file"),
    BinaryType.FLOWS: ("flows_dir",),
}
_PROJECT_FILES = ("flow_file", "flows_dir", "metaflow_file", "classifier_file")


class ProjectConfig(Section):
    """One ``[[projects]]`` table: a flow project the daemon compiles (and recompiles on change).

    ``root`` and ``binary_path`` are locations (relative ones are resolved against the config
    file's folder); ``flow_file``, ``flows_dir``, ``metaflow_file`` and ``classifier_file`` are the
    seed's compile settings and stay *relative to* ``root``, exactly as ``flowd compile`` takes them.
    Each ``binary_type`` takes exactly its own settings: one that does not apply is an error rather
    than silently unused.
    """

    name: Name
    root: ConfigPath
    binary_type: BinaryType = BinaryType.SINGLE_FLOW
    flow_file: RootRelative = None
    flows_dir: RootRelative = None
    metaflow_file: RootRelative = None
    classifier_file: RootRelative = None
    # A folder or a .ibflowbin file; None: root/build/bin/<stem>.ibflowbin.
    binary_path: OptionalPath = None
    auto_compile: bool = True

    @model_validator(mode="after")
    def _settings_of_type(self) -> ProjectConfig:
        needs = _NEEDS[self.binary_type]
        kind = f'binary_type = "{self.binary_type}"'
        problems: list[tuple[Loc, str]] = []
        for key in _PROJECT_FILES:
            given = getattr(self, key) is not None
            if key in needs and not given:
                problems.append(((key,), f"missing: {kind} needs {', '.join(needs)}"))
            elif key not in needs and given:
                problems.append(((key,), f"not used by {kind} (it takes {', '.join(needs)})"))
        if problems:
            raise ConfigProblems(problems)
        return self

    def compile_settings(self) -> CompileSettings:
        """The settings :func:`flowd.flows.compiler.compile_project` takes for this project."""
        return CompileSettings(
            self.binary_type,
            self.flow_file,
            self.flows_dir,
            self.metaflow_file,
            self.classifier_file,
        )

    @property
    def binary_file(self) -> Path:
        """Where the compiled binary lives: ``binary_path`` (a file, or a folder to put it in) or
        ``root/build/bin/<stem>.ibflowbin`` (SPEC §4)."""
        return output_path(self.root, self.compile_settings(), self.binary_path)
