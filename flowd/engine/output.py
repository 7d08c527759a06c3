"""The files of a run's output folder besides step outputs (SPEC §5.1).

``batch.ibflowresults`` is written when the run starts (status ``RUNNING``, with everything a resume
needs) and again when it stops; ``results.json`` and ``results.csv`` hold the final records, one row
per record. All are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowd.engine.pipeline import Task, TaskProgress, TaskState
from flowd.engine.records import Record
from flowd.fsutil import display_name, write_atomic

BATCH_FILE = "batch.ibflowresults"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
FIXED_COLUMNS = ("file_name", "record_index", "class_label", "status")


@dataclass(frozen=True)
class FileResult:
    """One input file's outcome in one flow."""

    file_name: str
    status: str  # COMPLETE, FAILED, STOPPED_AT_CHECKPOINT, PENDING, CANCELLED
    records: tuple[Record, ...] = ()
    error: str | None = None
    flow: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file_name": self.file_name, "status": self.status}
        if self.flow is not None:
            out["flow"] = self.flow
        if self.error is not None:
            out["error"] = self.error
        out["records"] = [record_entry(r) for r in self.records]
        return out


FILE_STATUS = {
    TaskState.DONE: "COMPLETE",
    TaskState.FAILED: "FAILED",
    TaskState.CHECKPOINT: "STOPPED_AT_CHECKPOINT",
    TaskState.REDUCE: "PENDING",
    TaskState.YIELDED: "PENDING",
}


def file_result(task: Task, progress: TaskProgress | None, flows_type: bool) -> FileResult:
    """A task's outcome as reported: ``PENDING`` when it never got a progress."""
    name = display_name(task.file)
    flow = task.flow if flows_type else None
    if progress is None:
        return FileResult(name, "PENDING", flow=flow)
    return FileResult(name, FILE_STATUS[progress.state], progress.records, progress.error, flow)


FileEntry = Mapping[str, Any]
"""A file's outcome as stored and written: :meth:`FileResult.to_dict` (``file_name``, ``status``,
``flow``?, ``error``?, ``records`` of ``{record_index, status, class_label, results}``). The job
store keeps these, so the functions below work on them directly."""


def run_summary(entries: Sequence[FileEntry]) -> dict[str, int]:
    """The ``run_summary`` of a run's files (``batch.ibflowresults``, the job status API)."""
    return {
        "numFiles": len(entries),
        "numRecords": sum(len(e["records"]) for e in entries),
        "numRuntimeErrors": sum(
            1
            for e in entries
            for rec in e["records"]
            for f in rec["results"]
            if f.get("error_msg") is not None
        ),
        "numFailedFiles": sum(1 for e in entries if e["status"] == "FAILED"),
        "numCompleteFiles": sum(1 for e in entries if e["status"] == "COMPLETE"),
        "numStoppedAtCheckpoint": sum(1 for e in entries if e["status"] == "STOPPED_AT_CHECKPOINT"),
    }


def record_entry(rec: Record) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "record_index": rec.record_index,
        "status": rec.status.value,
        "class_label": rec.class_label,
        "results": [f.to_dict() for f in rec.fields],
    }
    if rec.messages:
        entry["messages"] = list(rec.messages)
    return entry


def entry_rows(entries: Iterable[FileEntry]) -> list[dict[str, Any]]:
    """One row per record of every file, fields flattened after the fixed columns."""
    rows: list[dict[str, Any]] = []
    for e in entries:
        flow = e.get("flow")
        for rec in e["records"]:
            row: dict[str, Any] = {"file_name": e["file_name"]}
            if flow is not None:
                row["flow"] = flow
            row.update(
                record_index=rec["record_index"],
                class_label=rec.get("class_label"),
                status=rec.get("status", "OK"),
            )
            for f in rec["results"]:
                row[f["key"]] = f.get("value")
            rows.append(row)
    return rows


def result_rows(results: Iterable[FileResult]) -> list[dict[str, Any]]:
    """:func:`entry_rows` of file results."""
    return entry_rows(r.to_dict() for r in results)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    columns: dict[str, None] = dict.fromkeys(FIXED_COLUMNS)  # a header even with no rows
    for row in rows:
        columns.update(dict.fromkeys(row))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(columns))
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def dump_json(data: Any) -> bytes:
    """Compact JSON with one list item per line: readable and diffable, yet written by the C
    encoder (``indent`` would switch ``json`` to its pure-Python encoder, ten times slower)."""
    return (_lines(data) + "\n").encode("utf-8", "replace")


def _lines(data: Any) -> str:
    if isinstance(data, list):
        return "[\n" + ",\n".join(_compact(item) for item in data) + "\n]" if data else "[]"
    if isinstance(data, dict):
        if not data:
            return "{}"
        inner = ",\n".join(f"{_compact(k)}: {_lines(v)}" for k, v in data.items())
        return "{\n" + inner + "\n}"
    return _compact(data)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def write_results(folder: Path, entries: Sequence[FileEntry]) -> None:
    rows = entry_rows(entries)
    write_atomic(folder / RESULTS_JSON, dump_json(rows), fsync=True)
    write_atomic(folder / RESULTS_CSV, rows_to_csv(rows).encode("utf-8", "replace"), fsync=True)


def write_run_results(
    folder: Path, entries: Sequence[FileEntry], flows: Sequence[str] | None = None
) -> None:
    """``results.json``/``.csv`` of the files that completed; for a ``Flows`` binary (``flows``:
    its flow stems) also one pair per flow in the flow's folder."""
    write_results(folder, [e for e in entries if e["status"] == "COMPLETE"])
    for flow in flows or ():
        mine = [e for e in entries if e.get("flow") == flow and e["status"] == "COMPLETE"]
        (folder / flow).mkdir(parents=True, exist_ok=True)
        write_results(folder / flow, mine)


def write_batch(folder: Path, batch: dict[str, Any]) -> None:
    write_atomic(folder / BATCH_FILE, dump_json(batch), fsync=True)


def read_batch(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / BATCH_FILE).read_bytes())
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data
