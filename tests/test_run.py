"""Running binaries over folders: output layout, settings, checkpoints, resume (SPEC §5)."""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REFINER, flow, ranked_project, refiner_step, text_invoice

from flowd.engine.resume import resume_run
from flowd.engine.run import start_run
from flowd.engine.settings import RunOutcome, RunSettings
from flowd.errors import ResumeError, RunSettingsError
from flowd.flows.compiler import compile_project
from flowd.flows.project import CompileSettings
from flowd.flows.specs import BinaryType

SINGLE = CompileSettings(BinaryType.SINGLE_FLOW, flow_file="invoice.ibflow")
VALIDATIONS = {
    "version": 1,
    "rules": [
        {
            "field": "total",
            "formula": "is_number(total) and total > 0",
            "message": "total must be positive",
        },
        {
            "field": "invoice_number",
            "formula": "not is_empty(invoice_number)",
            "message": "missing number",
        },
    ],
}


def inbox(tmp_path: Path, docs: dict[str, str | bytes]) -> Path:
    folder = tmp_path / "input"
    folder.mkdir(exist_ok=True)
    for name, content in docs.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return folder


def run(binary: Path, input_dir: Path, **kw: Any) -> RunOutcome:
    kw.setdefault("workers", 1)
    return start_run(binary, input_dir, RunSettings(**kw))


def by_file(outcome: RunOutcome) -> dict[str, Any]:
    return {f.file_name: f for f in outcome.files}


def fields(outcome: RunOutcome, name: str, index: int = 0) -> dict[str, Any]:
    return {f.key: f.value for f in by_file(outcome)[name].records[index].fields}


def test_single_flow_output_layout(simple_project: Path, tmp_path: Path) -> None:
    binary = compile_project(simple_project, SINGLE).path
    docs = inbox(
        tmp_path,
        {"a.txt": text_invoice("A-1", "$1,234.50"), "b.txt": text_invoice("B-2", "2.469,90 €")},
    )
    outcome = run(binary, docs)
    assert outcome.status == "COMPLETE" and outcome.exit_code == 0
    out = tmp_path / "out"
    assert outcome.output_folder == out
    assert fields(outcome, "a.txt") == {"invoice_number": "A-1", "total": 1234.5}
    assert fields(outcome, "b.txt")["total"] == 2469.9
    assert (out / "invoice.ibflowbin").read_bytes() == binary.read_bytes()
    assert (out / "s1_process_files" / "a.txt.ibdoc").is_file()
    msg = json.loads((out / "s2_apply_refiner" / "a.txt.ibmsg").read_text())
    assert (
        msg["records"][0]["fields"][1]["key"] == "__raw_total"
    )  # hidden fields stay in step outputs
    batch = json.loads((out / "batch.ibflowresults").read_text())
    assert batch["status"] == "COMPLETE" and batch["can_resume"] is False
    assert batch["job_id"] == outcome.job_id
    assert batch["run_summary"] == {
        "numFiles": 2,
        "numRecords": 2,
        "numRuntimeErrors": 0,
        "numFailedFiles": 0,
        "numCompleteFiles": 2,
        "numStoppedAtCheckpoint": 0,
    }
    first = batch["files"][0]
    assert first["records"][0]["results"][0] == {
        "key": "invoice_number",
        "value": "A-1",
        "field_type": "TEXT",
    }
    rows = json.loads((out / "results.json").read_text())
    assert [r["file_name"] for r in rows] == ["a.txt", "b.txt"]
    assert "__raw_total" not in rows[0]
    with (out / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert table[1]["total"] == "2469.9" and table[1]["invoice_number"] == "B-2"
    assert not list(out.rglob("*.tmp-*")), "temporary files left behind"


def test_run_id_folders_and_delete_out_dir(simple_project: Path, tmp_path: Path) -> None:
    binary = compile_project(simple_project, SINGLE).path
    docs = inbox(tmp_path, {"a.txt": text_invoice("A-1", "1.00")})
    out = tmp_path / "results"
    first = run(binary, docs, output_dir=out, output_has_run_id=True)
    second = run(binary, docs, output_dir=out, output_has_run_id=True, delete_out_dir=True)
    assert first.output_folder.parent == out == second.output_folder.parent
    assert first.output_folder != second.output_folder
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ-[0-9a-f]{6}", first.run_id)
    assert first.output_folder.is_dir(), "delete_out_dir must be a no-op with run ids"
    (out / "stale.txt").write_text("old")
    run(binary, docs, output_dir=out, delete_out_dir=True, save_binary_to_output=False)
    assert not (out / "stale.txt").exists() and not first.output_folder.exists()
    assert not (out / "invoice.ibflowbin").exists()


def test_delete_out_dir_never_deletes_the_input(simple_project: Path, tmp_path: Path) -> None:
    binary = compile_project(simple_project, SINGLE).path
    docs = inbox(tmp_path, {"a.txt": text_invoice("A-1", "1.00")})
    with pytest.raises(RunSettingsError, match="delete_out_dir refused"):
        run(binary, docs, output_dir=tmp_path, delete_out_dir=True)
    assert (docs / "a.txt").exists()


def test_field_errors_do_not_stop_other_fields(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    refiner = {
        "version": 1,
        "fields": [
            {"name": "bad", "formula": "to_number('not a number')"},
            {"name": "typed", "formula": "echo('abc')", "type": "INT"},
            {"name": "good", "formula": "upper('ok')"},
            {
                "name": "missing",
                "formula": "scan_right(INPUT_COL, 'No such label')",
                "type": "FLOAT",
            },
        ],
    }
    root = make_project(
        {"invoice.ibflow": flow(refiner_step("r.ibrefiner")), "r.ibrefiner": refiner}
    )
    outcome = run(compile_project(root, SINGLE).path, inbox(tmp_path, {"a.txt": "hello"}))
    assert outcome.status == "COMPLETE"
    results = {f.key: f for f in by_file(outcome)["a.txt"].records[0].fields}
    assert results["bad"].value == "ERROR" and results["bad"].error_msg
    assert results["typed"].value == "ERROR" and "INT" in (results["typed"].error_msg or "")
    assert results["good"].value == "OK"
    assert results["missing"].value is None and results["missing"].error_msg is None
    assert outcome.summary["numRuntimeErrors"] == 2


def test_runtime_config_log_prefix_timeline_and_udf_context(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    udf = (
        "def tag(record, context):\n"
        "    context.logger.info('tagging', n=len(record['text']))\n"
        "    record['fields']['org'] = context.config['org']\n"
        "    record['fields']['run'] = context.run_id\n"
        "    record['fields']['where'] = context.step_folder\n"
        "    return record\n"
    )
    refiner = {"version": 1, "fields": [{"name": "org2", "formula": "runtime('org', 'none')"}]}
    root = make_project(
        {
            "invoice.ibflow": flow(
                refiner_step("r.ibrefiner"),
                {
                    "step": "apply_udf",
                    "settings": {"script": "u.py", "function": "tag", "fields": ["org"]},
                },
            ),
            "r.ibrefiner": refiner,
            "u.py": udf,
        }
    )
    outcome = run(
        compile_project(root, SINGLE).path,
        inbox(tmp_path, {"a.txt": "hello"}),
        log_to_timeline=True,
        runtime_config={"org": "Piston", "log_prefix": "org=Piston "},
    )
    values = fields(outcome, "a.txt")
    assert values["org"] == values["org2"] == "Piston"
    assert values["run"] == outcome.run_id
    assert values["where"] == str(outcome.output_folder / "s3_apply_udf")
    lines = (outcome.output_folder / "logs" / "timeline.jsonl").read_text().splitlines()
    assert lines and all(line.startswith("org=Piston {") for line in lines)
    events = [json.loads(line[len("org=Piston ") :]) for line in lines]
    assert any(e["event"] == "udf_log" and e["msg"] == "tagging" and e["n"] == 5 for e in events)
    assert any(e["event"] == "step_done" and e["step"] == "s2_apply_refiner" for e in events)


def test_modify_output_schema(simple_project: Path, tmp_path: Path) -> None:
    binary = compile_project(simple_project, SINGLE).path
    change = {
        "add_fields": [
            {"name": "doubled", "formula": "total * 2"},
            {"name": "hello", "formula": "echo('hello world')"},
        ],
        "remove_fields": ["invoice_number"],
        "rename_fields": {"total": "amount"},
    }
    outcome = run(
        binary,
        inbox(tmp_path, {"a.txt": text_invoice("A-1", "10.50")}),
        runtime_config={"modify_output_schema": json.dumps(change)},
    )
    assert fields(outcome, "a.txt") == {"amount": 10.5, "doubled": 21.0, "hello": "hello world"}
    rows = json.loads((outcome.output_folder / "results.json").read_text())
    assert rows[0]["amount"] == 10.5 and "invoice_number" not in rows[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"add_fields": [{"name": "x", "formula": "nope("}]}, "add_fields[0]"),
        ({"add_fields": [{"name": "x", "formula": "unknown_name"}]}, "unknown_name"),
        ({"rename_fields": {"total": "invoice_number"}}, "already exists"),
        ({"drop_fields": []}, "unknown key 'drop_fields'"),
    ],
)
def test_bad_schema_change_rejected_before_running(
    simple_project: Path, tmp_path: Path, change: Any, message: str
) -> None:
    binary = compile_project(simple_project, SINGLE).path
    docs = inbox(tmp_path, {"a.txt": text_invoice("A-1", "1")})
    raw = change if isinstance(change, str) else json.dumps(change)
    with pytest.raises(RunSettingsError, match=re.escape(message)):
        run(binary, docs, runtime_config={"modify_output_schema": raw})
    assert not (tmp_path / "out").exists(), "nothing may be written for a rejected run"


def checkpoint_project(make_project: Callable[..., Path], straight: bool) -> Path:
    return make_project(
        {
            "invoice.ibflow": flow(
                refiner_step(),
                {
                    "step": "apply_checkpoint",
                    "settings": {"validations": "v.ibvalidations", "straight_through": straight},
                },
                {"step": "apply_refiner", "settings": {"program": "after.ibrefiner"}},
            ),
            "modules/invoice.ibrefiner": REFINER,
            "v.ibvalidations": VALIDATIONS,
            "after.ibrefiner": {
                "version": 1,
                "fields": [{"name": "checked", "formula": "total + 1"}],
            },
        }
    )


def test_checkpoint_stops_then_resumes_after_correction_on_disk(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    binary = compile_project(checkpoint_project(make_project, straight=False), SINGLE).path
    docs = inbox(
        tmp_path, {"good.txt": text_invoice("G-1", "5.00"), "bad.txt": text_invoice("B-1", "-3.00")}
    )
    stopped = run(binary, docs)
    assert (
        stopped.status == "STOPPED_AT_CHECKPOINT" and stopped.exit_code == 3 and stopped.can_resume
    )
    files = by_file(stopped)
    assert files["bad.txt"].status == files["good.txt"].status == "STOPPED_AT_CHECKPOINT"
    assert files["bad.txt"].records[0].messages == ("total: total must be positive",)
    assert not (stopped.output_folder / "s4_apply_refiner").exists(), (
        "nothing may pass the checkpoint"
    )
    # A reviewer corrects the record in place.
    path = stopped.output_folder / "s3_apply_checkpoint" / "bad.txt.ibmsg"
    message = json.loads(path.read_text())
    for f in message["records"][0]["fields"]:
        if f["key"] == "total":
            f["value"] = 3.0
    path.write_text(json.dumps(message))
    resumed = resume_run(stopped.output_folder, workers=1)
    assert resumed.status == "COMPLETE" and resumed.job_id == stopped.job_id
    assert fields(resumed, "bad.txt")["checked"] == 4.0
    assert fields(resumed, "good.txt")["checked"] == 6.0
    with pytest.raises(ResumeError, match="already COMPLETE"):
        resume_run(stopped.output_folder, workers=1)


def test_straight_through_lets_passing_files_go_on(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    binary = compile_project(checkpoint_project(make_project, straight=True), SINGLE).path
    docs = inbox(
        tmp_path,
        {
            "good.txt": text_invoice("G-1", "5.00"),
            "bad.txt": "no number here\n      Total:   7.00\n",
        },
    )
    stopped = run(binary, docs)
    files = by_file(stopped)
    assert stopped.status == "STOPPED_AT_CHECKPOINT"
    assert files["good.txt"].status == "COMPLETE"
    assert files["bad.txt"].status == "STOPPED_AT_CHECKPOINT"
    resumed = resume_run(stopped.output_folder, workers=1)  # nothing corrected: still waits
    assert resumed.status == "STOPPED_AT_CHECKPOINT"
    assert by_file(resumed)["good.txt"].status == "COMPLETE"


def test_resume_after_interruption_continues_from_last_step(
    simple_project: Path, tmp_path: Path
) -> None:
    binary = compile_project(simple_project, SINGLE).path
    docs = inbox(
        tmp_path, {"a.txt": text_invoice("A-1", "1.00"), "b.txt": text_invoice("B-1", "2.00")}
    )
    done = run(binary, docs)
    out = done.output_folder
    # Simulate a crash after process_files of b.txt: its later outputs never got written.
    (out / "s2_apply_refiner" / "b.txt.ibmsg").unlink()
    batch = json.loads((out / "batch.ibflowresults").read_text())
    batch["status"] = "RUNNING"
    (out / "batch.ibflowresults").write_text(json.dumps(batch))
    ibdoc = out / "s1_process_files" / "b.txt.ibdoc"
    before = ibdoc.stat().st_mtime_ns
    (docs / "b.txt").unlink()  # the input is gone, the .ibdoc is enough
    resumed = resume_run(out, workers=1)
    assert resumed.status == "COMPLETE"
    assert fields(resumed, "b.txt")["total"] == 2.0
    assert ibdoc.stat().st_mtime_ns == before


def test_resume_refuses_recompiled_binary(simple_project: Path, tmp_path: Path) -> None:
    binary = compile_project(simple_project, SINGLE).path
    stopped = run(binary, inbox(tmp_path, {"a.txt": "no number"}), save_binary_to_output=False)
    batch = json.loads((stopped.output_folder / "batch.ibflowresults").read_text())
    batch["status"] = "RUNNING"
    (stopped.output_folder / "batch.ibflowresults").write_text(json.dumps(batch))
    (simple_project / "modules" / "invoice.ibrefiner").write_text(
        json.dumps({"version": 1, "fields": []})
    )
    compile_project(simple_project, SINGLE)
    with pytest.raises(ResumeError, match="recompiled"):
        resume_run(stopped.output_folder, workers=1)


def test_page_mode_and_classifier_filter(make_project: Callable[..., Path], tmp_path: Path) -> None:
    classifier = {
        "version": 1,
        "default_class": "other",
        "classes": [
            {
                "name": "invoice",
                "rules": [
                    {"contains": ["invoice"], "weight": 2},
                    {"regex": "Invoice No", "weight": 3},
                ],
            },
            {
                "name": "receipt",
                "rules": [
                    {
                        "formula": "contains(lower(INPUT_COL), 'thank you for your purchase')",
                        "weight": 5,
                    }
                ],
            },
            {"name": "named", "rules": [{"filename": "*.special.txt", "weight": 1}]},
        ],
    }
    root = make_project(
        {
            "invoice.ibflow": flow(
                {"step": "map_records", "settings": {"mode": "page"}},
                {
                    "step": "apply_classifier",
                    "settings": {
                        "classifier": "c.ibclassifier",
                        "filter_classes": ["invoice", "receipt"],
                    },
                },
                refiner_step(),
            ),
            "c.ibclassifier": classifier,
            "modules/invoice.ibrefiner": REFINER,
        }
    )
    docs = inbox(
        tmp_path,
        {
            "two.txt": text_invoice("P-1", "1.00")
            + "\f"
            + "Thank you for your purchase\n   Total:  9.99\n",
            "x.special.txt": "nothing here",
        },
    )
    outcome = run(compile_project(root, SINGLE).path, docs)
    recs = by_file(outcome)["two.txt"].records
    assert [(r.record_index, r.class_label, r.status.value) for r in recs] == [
        (0, "invoice", "OK"),
        (1, "receipt", "OK"),
    ]
    assert recs[0].class_score == 5
    assert {f.key: f.value for f in recs[1].fields}["total"] == 9.99
    special = by_file(outcome)["x.special.txt"].records[0]
    assert (special.class_label, special.status.value, special.fields) == ("named", "FILTERED", ())


def test_reduce_udf_sees_all_records(make_project: Callable[..., Path], tmp_path: Path) -> None:
    root = ranked_project(make_project, ["rank"])
    docs = inbox(
        tmp_path,
        {f"{n}.txt": text_invoice(n, str(v)) for n, v in [("a", 30), ("b", 10), ("c", 20)]},
    )
    outcome = run(compile_project(root, SINGLE).path, docs, workers=2)
    assert outcome.status == "COMPLETE"
    assert {n: fields(outcome, f"{n}.txt")["label"] for n in "abc"} == {
        "a": "#3",
        "b": "#1",
        "c": "#2",
    }
    assert fields(outcome, "a.txt")["count"] == 3


def test_metaflow_routes_by_class(
    copy_example: Callable[[str], Path], make_project: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_project(
        {
            "flows/invoice.ibflow": flow(refiner_step("../modules/invoice.ibrefiner")),
            "flows/receipt.ibflow": flow(refiner_step("../modules/receipt.ibrefiner")),
            "modules/invoice.ibrefiner": REFINER,
            "modules/receipt.ibrefiner": {
                "version": 1,
                "fields": [{"name": "kind", "formula": "echo('receipt')"}],
            },
            "doc.ibclassifier": {
                "version": 1,
                "default_class": "other",
                "classes": [
                    {"name": "invoice", "rules": [{"regex": "Invoice No"}]},
                    {"name": "receipt", "rules": [{"contains": ["receipt"]}]},
                ],
            },
            "docs.ibmetaflow": {
                "version": 1,
                "routes": {"invoice": "invoice.ibflow", "receipt": "receipt.ibflow"},
                "unmatched": "skip",
            },
        }
    )
    settings = CompileSettings(
        BinaryType.METAFLOW, None, "flows", "docs.ibmetaflow", "doc.ibclassifier"
    )
    binary = compile_project(root, settings).path
    assert binary.name == "docs.ibflowbin"
    docs = inbox(
        tmp_path,
        {"i.txt": text_invoice("M-1", "3"), "r.txt": "RECEIPT\nthanks", "x.txt": "a letter"},
    )
    outcome = run(binary, docs)
    assert outcome.status == "COMPLETE"
    assert fields(outcome, "i.txt")["invoice_number"] == "M-1"
    assert fields(outcome, "r.txt") == {"kind": "receipt"}
    x = by_file(outcome)["x.txt"].records[0]
    assert (x.class_label, x.status.value) == ("other", "UNROUTED")
    out = outcome.output_folder
    assert (out / "s1_process_files" / "i.txt.ibdoc").is_file()
    assert (out / "s2_apply_classifier" / "i.txt.ibmsg").is_file()
    assert (out / "invoice" / "s2_apply_refiner" / "i.txt.ibmsg").is_file()
    assert not (out / "invoice" / "s1_process_files").exists(), "routed flows do not digitize again"


def test_flows_binary_routes_by_subfolder(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    root = make_project(
        {
            "flows/invoices.ibflow": flow(refiner_step("../modules/invoice.ibrefiner")),
            "flows/notes.ibflow": flow(
                {"step": "apply_refiner", "settings": {"program": "../modules/n.ibrefiner"}}
            ),
            "modules/invoice.ibrefiner": REFINER,
            "modules/n.ibrefiner": {
                "version": 1,
                "fields": [{"name": "chars", "formula": "len(INPUT_COL)"}],
            },
        }
    )
    binary = compile_project(root, CompileSettings(BinaryType.FLOWS, flows_dir="flows")).path
    docs = inbox(
        tmp_path,
        {
            "invoices/a.txt": text_invoice("F-1", "4"),
            "notes/n.txt": "abc",
            "top.txt": "xy",
            "other/z.txt": "?",
        },
    )
    outcome = run(binary, docs)
    out = outcome.output_folder
    got = {(f.flow, f.file_name): f.status for f in outcome.files}
    assert got == {
        ("invoices", "invoices/a.txt"): "COMPLETE",
        ("notes", "notes/n.txt"): "COMPLETE",
        ("invoices", "top.txt"): "COMPLETE",
        ("notes", "top.txt"): "COMPLETE",
        (None, "other/z.txt"): "FAILED",
    }
    assert (out / "invoices" / "s2_apply_refiner" / "invoices" / "a.txt.ibmsg").is_file()
    assert json.loads((out / "notes" / "results.json").read_text())[0]["chars"] in (2, 3)
    assert outcome.status == "FAILED"


def test_broken_hand_edit_fails_loudly_and_resume_after_fixing(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    binary = compile_project(checkpoint_project(make_project, straight=False), SINGLE).path
    docs = inbox(tmp_path, {"bad.txt": text_invoice("B-1", "-3.00")})
    stopped = run(binary, docs)
    path = stopped.output_folder / "s3_apply_checkpoint" / "bad.txt.ibmsg"
    good = json.loads(path.read_text())
    path.write_text(path.read_text()[:-5])  # a reviewer's editor saved half the file
    broken = resume_run(stopped.output_folder, workers=1)
    assert broken.status == "FAILED" and broken.can_resume
    error = by_file(broken)["bad.txt"].error or ""
    assert "s3_apply_checkpoint/bad.txt.ibmsg is not a valid step output" in error
    for f in good["records"][0]["fields"]:
        if f["key"] == "total":
            f["value"] = 8.0
    path.write_text(json.dumps(good))
    fixed = resume_run(stopped.output_folder, workers=1)
    assert fixed.status == "COMPLETE" and fields(fixed, "bad.txt")["checked"] == 9.0


def test_output_folder_is_never_read_as_input(
    simple_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = compile_project(simple_project, SINGLE).path
    docs = inbox(tmp_path, {"a.txt": text_invoice("A-1", "1.00")})
    with pytest.raises(RunSettingsError, match="is the input folder"):
        run(binary, docs, output_dir=docs)
    nested = docs / "results"
    for _ in range(2):  # the second run must not take the first run's outputs as input
        outcome = run(binary, docs, output_dir=nested, output_has_run_id=True)
        assert [f.file_name for f in outcome.files] == ["a.txt"]
    monkeypatch.chdir(docs)
    here = run(binary, Path("."))
    assert here.output_folder == tmp_path / "out"


def test_delete_out_dir_refuses_the_binarys_folder(simple_project: Path, tmp_path: Path) -> None:
    binary = compile_project(simple_project, SINGLE).path
    docs = inbox(tmp_path, {"a.txt": text_invoice("A-1", "1.00")})
    with pytest.raises(RunSettingsError, match="holds the binary"):
        run(binary, docs, output_dir=binary.parent, delete_out_dir=True)
    assert binary.is_file()


def test_resume_keeps_non_utf8_names(simple_project: Path, tmp_path: Path) -> None:
    binary = compile_project(simple_project, SINGLE).path
    docs = inbox(tmp_path, {})
    with open(os.fsencode(docs) + b"/caf\xe9.txt", "wb") as fh:
        fh.write(text_invoice("L-1", "2.00").encode())
    done = run(binary, docs)
    batch = json.loads((done.output_folder / "batch.ibflowresults").read_text())
    batch["status"] = "RUNNING"
    (done.output_folder / "batch.ibflowresults").write_text(json.dumps(batch))
    resumed = resume_run(done.output_folder, workers=1)
    assert resumed.status == "COMPLETE"
    assert fields(resumed, "caf\ufffd.txt")["invoice_number"] == "L-1"


def test_text_type_writes_booleans_as_the_language_does(
    make_project: Callable[..., Path], tmp_path: Path
) -> None:
    refiner = {"version": 1, "fields": [{"name": "flag", "formula": "1 < 2", "type": "TEXT"}]}
    root = make_project(
        {"invoice.ibflow": flow(refiner_step("r.ibrefiner")), "r.ibrefiner": refiner}
    )
    outcome = run(compile_project(root, SINGLE).path, inbox(tmp_path, {"a.txt": "x"}))
    assert fields(outcome, "a.txt") == {"flag": "true"}
