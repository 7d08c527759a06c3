"""``apply_udf``: call the project's Python functions (SPEC §2.1).

A UDF sees a record as a plain dict — ``file_name``, ``record_index``, ``pages``, ``text``,
``class_label``, ``class_score``, ``fields`` (name → value) — and returns one (map) or a list of them
(reduce). Changing ``fields`` adds or replaces fields; the other keys are read-only. A UDF that raises
or returns the wrong shape fails its file with a :class:`~flowd.errors.StepError` naming the cause.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from flowd.engine.context import UdfContext, UdfLogger
from flowd.engine.records import FieldValue, Record, RecordStatus, merge_fields
from flowd.engine.steps.env import StepEnv
from flowd.errors import StepError
from flowd.flows.specs import UdfSpec


def record_to_dict(rec: Record) -> dict[str, Any]:
    return {
        "file_name": rec.file_name,
        "record_index": rec.record_index,
        "pages": list(rec.pages),
        "text": rec.text,
        "class_label": rec.class_label,
        "class_score": rec.class_score,
        "fields": rec.field_map(),
    }


class UdfShapeError(ValueError):
    """A UDF returned something that is not what its kind must return."""


def record_from_dict(original: Record, data: Any) -> Record:
    if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
        raise UdfShapeError(
            f"returned {type(data).__name__}, not the record dict with a 'fields' dict it was given"
        )
    types = {f.key: f.field_type for f in original.fields}
    old = original.field_map()
    changed = [
        FieldValue(str(k), v, types.get(str(k), "ANY"))
        for k, v in data["fields"].items()
        if str(k) not in old or old[str(k)] is not v
    ]
    removed = set(old) - {str(k) for k in data["fields"]}
    fields = tuple(f for f in merge_fields(original.fields, changed) if f.key not in removed)
    label = data.get("class_label", original.class_label)
    return original.evolve(fields=fields, class_label=label if isinstance(label, str) else None)


def _context(spec: UdfSpec, env: StepEnv) -> UdfContext:
    ctx = env.ctx
    return UdfContext(
        job_id=ctx.job_id,
        run_id=ctx.run_id,
        root_output_folder=str(ctx.output_root) if ctx.output_root else None,
        step_folder=env.step_folder,
        config=MappingProxyType(dict(ctx.runtime_config)),  # read-only for the UDF
        input_filepath=env.input_filepath,
        logger=UdfLogger(env.timeline, env.file_name, f"apply_udf:{spec.function_name}", ctx),
    )


def _fail(spec: UdfSpec, file: str, exc: BaseException) -> StepError:
    where = f"{spec.path}:{spec.function_name}"
    if isinstance(exc, UdfShapeError):
        return StepError("apply_udf", file, f"{where} {exc}")
    return StepError("apply_udf", file, f"{where} raised {type(exc).__name__}: {exc}")


def _function(spec: UdfSpec) -> Callable[..., Any]:
    if spec.function is None:  # a plan was handed to a runner: a bug of ours, not the user's
        raise RuntimeError(f"UDF {spec.path}:{spec.function_name} was not loaded in this process")
    return spec.function


# What a UDF may raise and still fail only its file. ``SystemExit`` is included: a UDF calling
# ``sys.exit()`` must not end the worker, let alone the run. Step alarms and Ctrl-C pass through.
UDF_FAILURES = (Exception, SystemExit)


def apply_map_udf(spec: UdfSpec, records: list[Record], env: StepEnv) -> list[Record]:
    context = _context(spec, env)
    function = _function(spec)
    out: list[Record] = []
    for rec in records:
        if rec.status is not RecordStatus.OK:
            out.append(rec)
            continue
        try:
            out.append(record_from_dict(rec, function(record_to_dict(rec), context)))
        except UDF_FAILURES as exc:
            raise _fail(spec, env.file_name, exc) from exc
    return out


def apply_reduce_udf(spec: UdfSpec, records: list[Record], env: StepEnv) -> list[Record]:
    """Call a reduce UDF on the job's OK records; others pass through unchanged.

    Returned dicts are matched back to records by ``(file_name, record_index)``; records the UDF
    leaves out are dropped from the flow.
    """
    context = _context(spec, env)
    function = _function(spec)
    live = [r for r in records if r.status is RecordStatus.OK]
    by_key = {(r.file_name, r.record_index): r for r in live}
    try:
        result = function([record_to_dict(r) for r in live], context)
        if not isinstance(result, list):
            raise UdfShapeError(f"returned {type(result).__name__}, not a list of records")
        changed: list[Record] = []
        for item in result:
            key: Any = (
                (item.get("file_name"), item.get("record_index"))
                if isinstance(item, dict)
                else None
            )
            original = by_key.get(key) if key is not None else None
            if original is None:
                raise UdfShapeError(f"returned a record that was not given to it: {key!r}")
            changed.append(record_from_dict(original, item))
    except UDF_FAILURES as exc:
        raise _fail(spec, env.file_name, exc) from exc
    return [r for r in records if r.status is not RecordStatus.OK] + changed
