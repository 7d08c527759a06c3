"""Load and check a whole project (or a binary's copy of it) into a :class:`ProjectSpec`.

Every problem found is collected (not just the first) and raised together as a
:class:`~flowd.errors.CompileError` whose problems say ``file:line:col: message``. Loading checks
everything a run would trip over: JSON shape and unknown keys, missing modules, formula syntax and
names, UDF scripts that do not import or lack the function, metaflow routes to missing flows.
"""

from __future__ import annotations

import linecache
import posixpath
import traceback
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import regex
from pydantic import BaseModel, ValidationError

from flowd.errors import CompileError, FormulaError, Problem
from flowd.flows import formats as fm
from flowd.flows.formula import compile_formula
from flowd.flows.jsonloc import JsonSource, JsonSyntaxError, Path
from flowd.flows.sources import ProjectPathError, RecordingReader, SourceReader, join_relative
from flowd.flows.specs import (
    BinaryType,
    CheckpointSpec,
    ClassifierSpec,
    ClassifierStepSpec,
    ClassSpec,
    FieldSpec,
    FlowSpec,
    MetaflowSpec,
    ProjectSpec,
    RefinerSpec,
    RuleSpec,
    StepPayload,
    StepSpec,
    UdfSpec,
    ValidationSpec,
)

M = TypeVar("M", bound=BaseModel)
Ref = tuple[JsonSource, Path]  # a file and the path in it that names another file


@dataclass(frozen=True)
class CompileSettings:
    """What to compile: the seed's ``binary_type`` and ``settings`` (paths relative to the root)."""

    binary_type: BinaryType = BinaryType.SINGLE_FLOW
    flow_file: str | None = None
    flows_dir: str | None = None
    metaflow_file: str | None = None
    classifier_file: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"binary_type": self.binary_type.value}
        for key in ("flow_file", "flows_dir", "metaflow_file", "classifier_file"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompileSettings:
        return cls(
            binary_type=BinaryType(data["binary_type"]),
            flow_file=data.get("flow_file"),
            flows_dir=data.get("flows_dir"),
            metaflow_file=data.get("metaflow_file"),
            classifier_file=data.get("classifier_file"),
        )


class _Loader:
    """One load: a reader, the problems found so far, and caches of modules already loaded."""

    def __init__(self, reader: SourceReader, run_udfs: bool) -> None:
        self.run_udfs = run_udfs
        self.reader = RecordingReader(reader)
        self.problems: list[Problem] = []
        self._classifiers: dict[str, ClassifierSpec | None] = {}
        self._udf_modules: dict[str, types.ModuleType | None] = {}

    # -- generic ---------------------------------------------------------------------------
    def problem(self, file: str, message: str, line: int = 1, col: int = 1) -> None:
        self.problems.append(Problem(file, line, col, message))

    def read_model(
        self, relpath: str, model: type[M], what: str, ref: Ref | None = None
    ) -> tuple[JsonSource, M] | None:
        """Read and validate one file; ``ref`` (the file and path that name it) is where a missing
        file is reported, since that is the line to fix."""
        try:
            raw = self.reader.read(relpath)
        except FileNotFoundError:
            if ref is not None:
                self.problems.append(ref[0].problem(ref[1], f"{what} {relpath} not found"))
            else:
                self.problem(relpath, f"{what} not found")
            return None
        except (ProjectPathError, IsADirectoryError, OSError) as exc:
            self.problem(relpath, f"cannot read {what}: {exc}")
            return None
        try:
            source = JsonSource.parse(relpath, raw)
        except JsonSyntaxError as exc:
            self.problem(relpath, str(exc), exc.line, exc.col)
            return None
        try:
            return source, model.model_validate_json(source.text)
        except ValidationError as exc:
            for err in exc.errors():
                loc: Path = tuple(err["loc"])
                is_key = err["type"] == "extra_forbidden"
                msg = _describe(err, loc, source)
                line, col = source.position(loc, key=is_key)
                self.problem(relpath, msg, line, col)
            return None

    def resolve(self, source: JsonSource, path: Path, ref: str) -> str | None:
        try:
            return join_relative(source.name, ref)
        except ProjectPathError as exc:
            self.problems.append(source.problem(path, str(exc)))
            return None

    def formula(
        self, source: JsonSource, path: Path, text: str, names: Iterable[str], what: str
    ) -> Any:
        try:
            return compile_formula(text, names=tuple(names))
        except FormulaError as exc:
            self.problems.append(
                source.problem(path, f"{what}: {exc.message}", offset=(exc.line, exc.col))
            )
            return None

    # -- modules ---------------------------------------------------------------------------
    def refiner(self, relpath: str, known: list[str], ref: Ref) -> RefinerSpec | None:
        loaded = self.read_model(relpath, fm.RefinerFile, "refiner program", ref)
        if loaded is None:
            return None
        source, model = loaded
        fields: list[FieldSpec] = []
        names = list(known)
        ok = True
        for i, f in enumerate(model.fields):
            formula = self.formula(
                source, ("fields", i, "formula"), f.formula, names, f"field {f.name!r}"
            )
            if formula is None:
                ok = False
            else:
                fields.append(FieldSpec(f.name, formula, f.type))
            names.append(f.name)
        return RefinerSpec(relpath, tuple(fields)) if ok else None

    def classifier(self, relpath: str, ref: Ref | None = None) -> ClassifierSpec | None:
        if relpath in self._classifiers:
            return self._classifiers[relpath]
        spec = self._classifier(relpath, ref)
        self._classifiers[relpath] = spec
        return spec

    def _classifier(self, relpath: str, ref: Ref | None) -> ClassifierSpec | None:
        loaded = self.read_model(relpath, fm.ClassifierFile, "classifier", ref)
        if loaded is None:
            return None
        source, model = loaded
        classes: list[ClassSpec] = []
        ok = True
        for ci, cls in enumerate(model.classes):
            rules: list[RuleSpec] = []
            for ri, rule in enumerate(cls.rules):
                at: Path = ("classes", ci, "rules", ri)
                if rule.contains is not None:
                    rules.append(
                        RuleSpec(rule.weight, contains=tuple(w.lower() for w in rule.contains))
                    )
                elif rule.regex is not None:
                    try:
                        pattern = regex.compile(rule.regex, regex.MULTILINE)
                    except regex.error as exc:
                        self.problems.append(source.problem((*at, "regex"), f"bad regex: {exc}"))
                        ok = False
                        continue
                    rules.append(RuleSpec(rule.weight, pattern=pattern))
                elif rule.formula is not None:
                    formula = self.formula(
                        source, (*at, "formula"), rule.formula, (), f"class {cls.name!r} rule"
                    )
                    if formula is None:
                        ok = False
                        continue
                    rules.append(RuleSpec(rule.weight, formula=formula))
                else:
                    rules.append(RuleSpec(rule.weight, filename=rule.filename))
            classes.append(ClassSpec(cls.name, tuple(rules)))
        if not ok:
            return None
        return ClassifierSpec(relpath, model.default_class, model.min_score, tuple(classes))

    def checkpoint(
        self, relpath: str, known: list[str], straight: bool, ref: Ref
    ) -> CheckpointSpec | None:
        loaded = self.read_model(relpath, fm.ValidationsFile, "validations", ref)
        if loaded is None:
            return None
        source, model = loaded
        rules: list[ValidationSpec] = []
        ok = True
        for i, rule in enumerate(model.rules):
            formula = self.formula(
                source, ("rules", i, "formula"), rule.formula, known, f"rule for {rule.field!r}"
            )
            if formula is None:
                ok = False
            else:
                rules.append(ValidationSpec(rule.field, formula, rule.message))
        return CheckpointSpec(relpath, tuple(rules), straight) if ok else None

    def udf(
        self, source: JsonSource, at: Path, relpath: str, st: fm.ApplyUdfSettings
    ) -> UdfSpec | None:
        if not self.run_udfs:
            # Planning only (the parent of a run, an API process): the script must be there,
            # but user code runs only where the steps run.
            code = self._read_udf(source, at, relpath)
            return None if code is None else UdfSpec(relpath, st.function, st.kind, st.fields, None)
        module = self._udf_modules.get(relpath)
        if relpath not in self._udf_modules:
            module = self._import_udf(source, at, relpath)
            self._udf_modules[relpath] = module
        if module is None:
            return None
        function = getattr(module, st.function, None)
        if not callable(function):
            self.problems.append(
                source.problem(
                    (*at, "function"), f"UDF script {relpath} has no function {st.function!r}"
                )
            )
            return None
        return UdfSpec(relpath, st.function, st.kind, st.fields, function)

    def _read_udf(self, source: JsonSource, at: Path, relpath: str) -> bytes | None:
        try:
            return self.reader.read(relpath)
        except (FileNotFoundError, ProjectPathError, IsADirectoryError, OSError) as exc:
            cause = "not found" if isinstance(exc, FileNotFoundError) else str(exc)
            self.problems.append(source.problem((*at, "script"), f"UDF script {relpath}: {cause}"))
            return None

    def _import_udf(self, source: JsonSource, at: Path, relpath: str) -> types.ModuleType | None:
        code = self._read_udf(source, at, relpath)
        return None if code is None else import_udf(relpath, code, self.problems)

    # -- flows -----------------------------------------------------------------------------
    def flow(self, relpath: str) -> FlowSpec | None:
        loaded = self.read_model(relpath, fm.FlowFile, "flow")
        if loaded is None:
            return None
        source, model = loaded
        steps: list[StepSpec] = []
        known: list[str] = []
        ok = True
        for i, step in enumerate(model.steps):
            at: Path = ("steps", i, "settings")
            payload = self.step_payload(source, at, step, known)
            if payload is None:
                ok = False
                continue
            steps.append(StepSpec(step.step, i + 1, payload))
        if not ok:
            return None
        stem = posixpath.splitext(posixpath.basename(relpath))[0]
        return FlowSpec(
            relpath, stem, model.name, model.description, model.input.patterns, tuple(steps)
        )

    def step_payload(
        self, source: JsonSource, at: Path, step: Any, known: list[str]
    ) -> StepPayload | None:
        st = step.settings
        if isinstance(st, fm.ProcessFilesSettings):
            return st
        if isinstance(st, fm.MapRecordsSettings):
            return st.mode
        if isinstance(st, fm.ApplyClassifierSettings):
            path = self.resolve(source, (*at, "classifier"), st.classifier)
            clf = self.classifier(path, (source, (*at, "classifier"))) if path else None
            if clf is None:
                return None
            unknown = [c for c in st.filter_classes if c not in clf.labels]
            if unknown:
                self.problems.append(
                    source.problem(
                        (*at, "filter_classes"),
                        f"filter_classes names {unknown[0]!r}, which {path} cannot produce",
                    )
                )
                return None
            return ClassifierStepSpec(clf, st.filter_classes)
        if isinstance(st, fm.ApplyRefinerSettings):
            path = self.resolve(source, (*at, "program"), st.program)
            refiner = self.refiner(path, known, (source, (*at, "program"))) if path else None
            if refiner is not None:
                known.extend(f.name for f in refiner.fields)
            return refiner
        if isinstance(st, fm.ApplyUdfSettings):
            path = self.resolve(source, (*at, "script"), st.script)
            udf = self.udf(source, at, path, st) if path else None
            if udf is not None:
                known.extend(udf.fields)
            return udf
        assert isinstance(st, fm.ApplyCheckpointSettings)
        path = self.resolve(source, (*at, "validations"), st.validations)
        ref = (source, (*at, "validations"))
        return self.checkpoint(path, known, st.straight_through, ref) if path else None

    def flows_in(self, flows_dir: str, setting: str) -> list[str]:
        try:
            names = [p for p in self.reader.list_dir(flows_dir) if p.endswith(".ibflow")]
        except (FileNotFoundError, ProjectPathError, OSError):
            self.problem(flows_dir, f"{setting}: folder not found")
            return []
        if not names:
            self.problem(flows_dir, f"{setting}: no .ibflow files in this folder")
        return names


def import_udf(relpath: str, code: bytes, problems: list[Problem]) -> types.ModuleType | None:
    """Execute a UDF script as a fresh module; record a located problem when it fails.

    The module is not put in ``sys.modules`` (two binaries may hold scripts of the same name), but
    its source is registered with ``linecache`` so tracebacks from UDFs show their lines.
    """
    filename = f"<flowd>/{relpath}"
    try:
        text = code.decode("utf-8-sig")
        compiled = compile(text, filename, "exec", dont_inherit=True)
    except UnicodeDecodeError:
        problems.append(Problem(relpath, 1, 1, "UDF script is not UTF-8 text"))
        return None
    except SyntaxError as exc:
        problems.append(
            Problem(relpath, exc.lineno or 1, exc.offset or 1, f"syntax error: {exc.msg}")
        )
        return None
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    module = types.ModuleType("flowd_udf_" + posixpath.splitext(relpath)[0].replace("/", "_"))
    module.__file__ = filename
    try:
        exec(compiled, module.__dict__)
    except BaseException as exc:  # the script's own failure, whatever it is, is a compile problem
        if isinstance(exc, KeyboardInterrupt):
            raise
        line = _udf_error_line(exc, filename)
        problems.append(
            Problem(relpath, line, 1, f"UDF script fails on import: {type(exc).__name__}: {exc}")
        )
        return None
    return module


def _udf_error_line(exc: BaseException, filename: str) -> int:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == filename and frame.lineno:
            return frame.lineno
    return 1


def _describe(err: Any, loc: Path, source: JsonSource) -> str:
    where = ".".join(str(p) for p in source.real_path(loc)) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown key {str(loc[-1])!r} (check its spelling)"
    if kind == "missing":
        return f"missing required key {str(loc[-1])!r}"
    if kind == "union_tag_invalid":
        return (
            f"{where}: unknown step kind {err.get('input', {}).get('step')!r}"
            if isinstance(err.get("input"), dict)
            else f"{where}: {err['msg']}"
        )
    if kind == "literal_error" and loc and loc[-1] == "version":
        return f"unsupported version {err.get('input')!r} (this flowd reads version 1)"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{where}: {msg}"


def load_project(
    reader: SourceReader, settings: CompileSettings, *, run_udfs: bool = True
) -> ProjectSpec:
    """Load and check the project that ``settings`` describe; raise CompileError on any problem.

    ``run_udfs=False`` loads a *plan*: everything but the UDF scripts' code, which is then not
    executed (``UdfSpec.function`` is ``None``). Processes that only plan a run use it, so user code
    runs only in the processes that run steps.
    """
    loader = _Loader(reader, run_udfs)
    flows: list[FlowSpec] = []
    metaflow: MetaflowSpec | None = None
    kind = settings.binary_type
    if kind is BinaryType.SINGLE_FLOW:
        if not settings.flow_file:
            raise CompileError([Problem(".", 1, 1, "Single Flow needs settings/flow_file")])
        path = _setting_path(loader, "flow_file", settings.flow_file)
        flow = loader.flow(path) if path else None
        if flow:
            flows.append(flow)
    elif kind is BinaryType.FLOWS:
        if not settings.flows_dir:
            raise CompileError([Problem(".", 1, 1, "Flows needs settings/flows_dir")])
        path = _setting_path(loader, "flows_dir", settings.flows_dir)
        for flow_path in loader.flows_in(path, "flows_dir") if path else []:
            flow = loader.flow(flow_path)
            if flow:
                flows.append(flow)
    else:
        missing = [
            k for k in ("flows_dir", "metaflow_file", "classifier_file") if not getattr(settings, k)
        ]
        if missing:
            raise CompileError([Problem(".", 1, 1, f"Metaflow needs settings/{missing[0]}")])
        metaflow = _load_metaflow(loader, settings, flows)
    if loader.problems:
        raise CompileError(loader.problems)
    files = tuple(sorted(loader.reader.files.items()))
    return ProjectSpec(kind, tuple(flows), metaflow, files)


def _setting_path(loader: _Loader, key: str, value: str) -> str | None:
    try:
        return join_relative("", value)
    except ProjectPathError as exc:
        loader.problem(value, f"settings/{key}: {exc}")
        return None


def _load_metaflow(
    loader: _Loader, settings: CompileSettings, flows: list[FlowSpec]
) -> MetaflowSpec | None:
    assert settings.flows_dir and settings.metaflow_file and settings.classifier_file
    flows_dir = _setting_path(loader, "flows_dir", settings.flows_dir)
    meta_path = _setting_path(loader, "metaflow_file", settings.metaflow_file)
    clf_path = _setting_path(loader, "classifier_file", settings.classifier_file)
    if not (flows_dir is not None and meta_path and clf_path):
        return None
    classifier = loader.classifier(clf_path)
    loaded = loader.read_model(meta_path, fm.MetaflowFile, "metaflow")
    if loaded is None or classifier is None:
        return None
    source, model = loaded
    available = {posixpath.basename(p): p for p in loader.flows_in(flows_dir, "flows_dir")}
    routes: list[tuple[str, str]] = []
    wanted: dict[str, str] = {}

    def target(name: str, at: Path) -> str | None:
        if name not in available:
            loader.problems.append(
                source.problem(at, f"route to missing flow {name!r} (not in {flows_dir or '.'})")
            )
            return None
        stem = posixpath.splitext(name)[0]
        wanted[stem] = available[name]
        return stem

    for label, flow_name in model.routes.items():
        if label not in classifier.labels:
            loader.problems.append(
                source.problem(
                    ("routes", label),
                    f"class {label!r} cannot be produced by {clf_path}",
                    key=True,
                )
            )
        stem = target(flow_name, ("routes", label))
        if stem:
            routes.append((label, stem))
    unmatched = None if model.unmatched == "skip" else target(model.unmatched, ("unmatched",))
    for _stem, path in sorted(wanted.items()):
        flow = loader.flow(path)
        if flow:
            flows.append(flow)
    if loader.problems:
        return None
    return MetaflowSpec(meta_path, classifier, tuple(routes), unmatched, model.process_files)


__all__ = ["CompileSettings", "import_udf", "load_project"]
