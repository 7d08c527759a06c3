"""Loaded, checked projects: the frozen values the engine runs.

A spec is what a project file *means* once every path is resolved, every formula compiled and every
UDF imported. :func:`flowd.flows.project.load_project` builds them from a
:class:`~flowd.flows.sources.SourceReader`; the engine never sees raw JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import regex

from flowd.flows.formats import ProcessFilesSettings
from flowd.flows.formula import Formula


class BinaryType(StrEnum):
    SINGLE_FLOW = "Single Flow"
    METAFLOW = "Metaflow"
    FLOWS = "Flows"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    formula: Formula
    type: str

    @property
    def hidden(self) -> bool:
        return self.name.startswith("__")


@dataclass(frozen=True)
class RefinerSpec:
    path: str
    fields: tuple[FieldSpec, ...]


@dataclass(frozen=True)
class RuleSpec:
    """One classifier rule; exactly one of the matchers is set."""

    weight: float
    contains: tuple[str, ...] = ()
    pattern: regex.Pattern[str] | None = None
    formula: Formula | None = None
    filename: str | None = None


@dataclass(frozen=True)
class ClassSpec:
    name: str
    rules: tuple[RuleSpec, ...]


@dataclass(frozen=True)
class ClassifierSpec:
    path: str
    default_class: str
    min_score: float
    classes: tuple[ClassSpec, ...]

    @property
    def labels(self) -> frozenset[str]:
        """Every class this classifier can produce (its classes and the default)."""
        return frozenset([self.default_class, *(c.name for c in self.classes)])


@dataclass(frozen=True)
class ValidationSpec:
    field: str
    formula: Formula
    message: str


@dataclass(frozen=True)
class UdfSpec:
    path: str
    function_name: str
    kind: str
    fields: tuple[str, ...]
    function: Callable[..., Any] | None  # None in a plan (see load_project's run_udfs)


@dataclass(frozen=True)
class ClassifierStepSpec:
    classifier: ClassifierSpec
    filter_classes: tuple[str, ...]


@dataclass(frozen=True)
class CheckpointSpec:
    path: str
    rules: tuple[ValidationSpec, ...]
    straight_through: bool


StepPayload = (
    ProcessFilesSettings | str | ClassifierStepSpec | RefinerSpec | UdfSpec | CheckpointSpec
)


@dataclass(frozen=True)
class StepSpec:
    """One step of a flow. ``payload`` by kind: process_files → ProcessFilesSettings, map_records →
    the mode (str), apply_classifier → ClassifierStepSpec, apply_refiner → RefinerSpec, apply_udf →
    UdfSpec, apply_checkpoint → CheckpointSpec."""

    kind: str
    number: int  # 1-based position in its flow: the N of its ``s<N>_<kind>/`` folder
    payload: StepPayload

    @property
    def folder(self) -> str:
        return f"s{self.number}_{self.kind}"


@dataclass(frozen=True)
class FlowSpec:
    path: str
    stem: str
    name: str
    description: str
    patterns: tuple[str, ...]
    steps: tuple[StepSpec, ...]

    @property
    def field_names(self) -> tuple[str, ...]:
        """Visible refiner and UDF-declared fields, in flow order."""
        names: list[str] = []
        for step in self.steps:
            if isinstance(step.payload, RefinerSpec):
                names.extend(f.name for f in step.payload.fields if not f.hidden)
            elif isinstance(step.payload, UdfSpec):
                names.extend(n for n in step.payload.fields if not n.startswith("__"))
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class MetaflowSpec:
    path: str
    classifier: ClassifierSpec
    routes: tuple[tuple[str, str], ...]  # (class label, flow stem)
    unmatched: str | None  # flow stem, or None for "skip"
    process: ProcessFilesSettings

    def route(self, label: str) -> str | None:
        for cls, stem in self.routes:
            if cls == label:
                return stem
        return self.unmatched


@dataclass(frozen=True)
class ProjectSpec:
    """A whole loaded project or binary: what runs."""

    binary_type: BinaryType
    flows: tuple[FlowSpec, ...]
    metaflow: MetaflowSpec | None
    files: tuple[tuple[str, bytes], ...]  # every project file read, sorted by path

    def flow(self, stem: str) -> FlowSpec:
        for f in self.flows:
            if f.stem == stem:
                return f
        raise KeyError(stem)

    @property
    def udf_scripts(self) -> tuple[str, ...]:
        scripts = {
            s.payload.path for f in self.flows for s in f.steps if isinstance(s.payload, UdfSpec)
        }
        return tuple(sorted(scripts))

    @property
    def field_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for f in self.flows:
            names.extend(f.field_names)
        return tuple(dict.fromkeys(names))
