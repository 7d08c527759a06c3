"""The shapes of the project files (SPEC §2), validated strictly.

Each model mirrors one file format. Unknown keys are errors (they are almost always typos), every
model is frozen, and every file carries ``"version": 1``. Paths inside a file are relative to that
file; :mod:`flowd.flows.project` resolves them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ProcessFilesSettings(_Strict):
    ocr: Literal["auto", "always", "never"] = "auto"
    languages: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")], ...] = ("eng",)


class MapRecordsSettings(_Strict):
    mode: Literal["document", "page"] = "document"


class ApplyClassifierSettings(_Strict):
    classifier: str
    filter_classes: tuple[str, ...] = ()


class ApplyRefinerSettings(_Strict):
    program: str


class ApplyUdfSettings(_Strict):
    script: str
    function: Annotated[str, Field(pattern=IDENTIFIER)]
    kind: Literal["map", "reduce"] = "map"
    fields: tuple[Annotated[str, Field(pattern=IDENTIFIER)], ...] = ()
    """Names of fields the UDF adds, so later formulas may use them (checked at compile time)."""


class ApplyCheckpointSettings(_Strict):
    validations: str
    straight_through: bool = False


class ProcessFilesStep(_Strict):
    step: Literal["process_files"]
    settings: ProcessFilesSettings = ProcessFilesSettings()


class MapRecordsStep(_Strict):
    step: Literal["map_records"]
    settings: MapRecordsSettings = MapRecordsSettings()


class ApplyClassifierStep(_Strict):
    step: Literal["apply_classifier"]
    settings: ApplyClassifierSettings


class ApplyRefinerStep(_Strict):
    step: Literal["apply_refiner"]
    settings: ApplyRefinerSettings


class ApplyUdfStep(_Strict):
    step: Literal["apply_udf"]
    settings: ApplyUdfSettings


class ApplyCheckpointStep(_Strict):
    step: Literal["apply_checkpoint"]
    settings: ApplyCheckpointSettings


StepModel = Annotated[
    ProcessFilesStep
    | MapRecordsStep
    | ApplyClassifierStep
    | ApplyRefinerStep
    | ApplyUdfStep
    | ApplyCheckpointStep,
    Field(discriminator="step"),
]


class FlowInput(_Strict):
    patterns: tuple[str, ...] = ("*",)


class FlowFile(_Strict):
    """``.ibflow``: an ordered list of steps; the first is ``process_files``."""

    version: Literal[1]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""
    input: FlowInput = FlowInput()
    steps: Annotated[tuple[StepModel, ...], Field(min_length=1)]

    @field_validator("steps")
    @classmethod
    def _process_files_first(cls, steps: tuple[StepModel, ...]) -> tuple[StepModel, ...]:
        if steps[0].step != "process_files":
            raise ValueError("the first step must be process_files (it digitizes the input files)")
        if any(s.step == "process_files" for s in steps[1:]):
            raise ValueError("process_files may appear only once, as the first step")
        if sum(1 for s in steps if s.step == "map_records") > 1:
            raise ValueError("map_records may appear only once")
        return steps


class RefinerField(_Strict):
    name: Annotated[str, Field(pattern=IDENTIFIER, max_length=100)]
    formula: str
    type: Literal["ANY", "TEXT", "INT", "FLOAT", "BOOL", "DATE", "LIST", "DICT"] = "ANY"


class RefinerFile(_Strict):
    """``.ibrefiner``: fields evaluated in order."""

    version: Literal[1]
    fields: tuple[RefinerField, ...]

    @field_validator("fields")
    @classmethod
    def _unique(cls, fields: tuple[RefinerField, ...]) -> tuple[RefinerField, ...]:
        seen: set[str] = set()
        for f in fields:
            if f.name in seen:
                raise ValueError(f"field {f.name!r} is defined twice")
            seen.add(f.name)
        return fields


class ClassifierRule(_Strict):
    contains: tuple[str, ...] | None = None
    regex: str | None = None
    formula: str | None = None
    filename: str | None = None
    weight: float = 1.0

    @model_validator(mode="after")
    def _exactly_one(self) -> ClassifierRule:
        kinds = [
            k for k in ("contains", "regex", "formula", "filename") if getattr(self, k) is not None
        ]
        if len(kinds) != 1:
            raise ValueError(
                "a rule needs exactly one of contains, regex, formula, filename"
                + (f" (found {', '.join(kinds)})" if kinds else "")
            )
        return self


class ClassifierClass(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    rules: Annotated[tuple[ClassifierRule, ...], Field(min_length=1)]


class ClassifierFile(_Strict):
    """``.ibclassifier``: weighted rules per class; best score ≥ ``min_score`` wins."""

    version: Literal[1]
    default_class: Annotated[str, Field(min_length=1)]
    min_score: Annotated[float, Field(gt=0)] = 1.0
    classes: Annotated[tuple[ClassifierClass, ...], Field(min_length=1)]

    @field_validator("classes")
    @classmethod
    def _unique(cls, classes: tuple[ClassifierClass, ...]) -> tuple[ClassifierClass, ...]:
        names = [c.name for c in classes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"class {dupes[0]!r} is defined twice")
        return classes


class MetaflowFile(_Strict):
    """``.ibmetaflow``: routes each class to a flow file in ``flows_dir``.

    ``process_files`` (an extension of the SPEC's example) sets how documents are digitized before
    they are classified, since the routed flows' own ``process_files`` steps are skipped.
    """

    version: Literal[1]
    routes: dict[str, str]
    unmatched: str = "skip"
    process_files: ProcessFilesSettings = ProcessFilesSettings()


class ValidationRule(_Strict):
    field: str
    formula: str
    message: Annotated[str, Field(min_length=1)]


class ValidationsFile(_Strict):
    """``.ibvalidations``: rules a record must pass at a checkpoint."""

    version: Literal[1]
    rules: tuple[ValidationRule, ...]
