"""The seed's examples (``flow-binary-api.txt``) replayed as written against a real daemon — only the
base URL and the token changed (SPEC §7).

- the ``curl`` compile example, run with the real ``curl`` binary, its headers and its
  ``--data-raw`` body shape (``flow_project_root`` with spaces and a trailing slash, like the seed's);
- the ``requests`` ``run_binary_async`` example: ``json.dumps`` + ``data=``, no Content-Type header,
  ``delete_out_dir`` / ``output_has_run_id`` / ``notification_emails``;
- the sync example: base64 file contents, ``data=json_data``, ``verify=False``;
- a client's status poll loop: ``json.loads(cur_status)``, then ``results[0]`` once ``DONE``.

The project is the shipped invoice example, which has a UDF (``modules/normalize.py``): the API
compiles UDF projects only from ``udf_roots`` (SPEC §8), so the daemon trusts ``data/trusted`` and
a second copy of the project outside it must fail to compile, saying why.

The seed's curl text is not a runnable shell command as printed (a line continuation is missing
after the URL, and the ``\\`` line breaks sit inside the single-quoted JSON): what is replayed is
its method, headers and JSON body — the request a user gets when they fix the quoting.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import EXAMPLES, wait_for
from tests.daemon import DaemonProcess

SAMPLES = EXAMPLES / "samples" / "invoices"
EXPECTED: dict[str, dict[str, Any]] = json.loads(
    (EXAMPLES / "samples" / "expected.json").read_text()
)
HEADER = ("invoice_number", "invoice_date", "total", "currency", "issuer")
NEEDS_OCR = {"oyo.png", "scanned-invoice.pdf"}
HAVE_TESSERACT = shutil.which("tesseract") is not None
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

PROJECT = "trusted/Instabase Drive/flow_proj"
UNTRUSTED = "untrusted/Instabase Drive/flow_proj"
INPUT_DIR = f"{PROJECT}/data/input"


def expected_inputs() -> dict[str, dict[str, Any]]:
    return {name: row for name, row in EXPECTED.items() if HAVE_TESSERACT or name not in NEEDS_OCR}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    proc = DaemonProcess(
        tmp_path_factory.mktemp("seed") / "d", top_toml='udf_roots = ["data/trusted"]'
    )
    for where in (PROJECT, UNTRUSTED):
        shutil.copytree(
            EXAMPLES / "invoices", proc.data / where, ignore=shutil.ignore_patterns("build", "out")
        )
    inputs = proc.data / INPUT_DIR
    inputs.mkdir(parents=True)
    for name in expected_inputs():
        shutil.copy(SAMPLES / name, inputs / name)
    with proc:
        yield proc
        errors = [e for e in proc.log_events() if e.get("event") == "api_internal_error"]
        assert not errors, errors


# -- the seed's client code ----------------------------------------------------------------------
def curl_compile(url_base: str, token: str, flow_project_root: str) -> tuple[int, str]:
    """The seed's curl example: same method, headers and body shape; returns (HTTP code, body)."""
    data_raw = (
        '{"binary_type": "Single Flow", '
        f'"flow_project_root": "{flow_project_root}", '
        '"settings": {"flow_file": "invoice.ibflow"}}'
    )
    done = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--write-out",
            "\n%{http_code}",
            "--location",
            "--request",
            "POST",
            url_base + "/api/v1/flow_binary/compile",
            "--header",
            "Authorization: Bearer " + token,
            "--header",
            "Content-Type: application/json",
            "--data-raw",
            data_raw,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body, _, code = done.stdout.rpartition("\n")
    return int(code), body


def poll_status(url_base: str, token: str, job_id: str, job_type: str) -> dict[str, Any]:
    """A client's poll loop: read the status until the job is no longer pending; check every
    answer's shape on the way (``cur_status`` is a JSON string, ``results`` only once DONE)."""
    headers = {"Authorization": f"Bearer {token}"}
    seen: list[dict[str, Any]] = []

    def done() -> bool:
        r = requests.get(
            url_base + "/api/v1/jobs/status",
            params={"job_id": job_id, "type": job_type},
            headers=headers,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        resp = json.loads(r.content)
        assert resp["status"] == "OK" and resp["job_id"] == job_id
        cur_status = json.loads(resp["cur_status"])
        assert set(cur_status) >= {"status", "curProgress", "finish_timestamp", "run_summary"}
        assert 0 <= cur_status["curProgress"] <= 1
        assert set(cur_status["run_summary"]) >= {"numFiles", "numRecords", "numRuntimeErrors"}
        assert resp["state"] in ("PENDING", "DONE")
        assert ("results" in resp) == (resp["state"] == "DONE")
        resp["cur_status"] = cur_status
        seen.append(resp)
        return resp["state"] == "DONE"

    wait_for(done, 90, f"job {job_id} to end")
    return seen[-1]


@pytest.fixture(scope="module")
def compiled(seeded: DaemonProcess) -> dict[str, Any]:
    """The curl compile of the trusted project, and its final status."""
    code, body = curl_compile(seeded.url, seeded.token, PROJECT + "/")
    resp = json.loads(body)
    final = poll_status(seeded.url, seeded.token, resp["job_id"], "compile") if code == 200 else {}
    return {"code": code, "resp": resp, "final": final}


# -- compile -------------------------------------------------------------------------------------
def test_curl_compile_returns_a_job_id_and_the_poll_finds_the_binary(
    seeded: DaemonProcess, compiled: dict[str, Any]
) -> None:
    assert compiled["code"] == 200, compiled["resp"]
    resp = compiled["resp"]
    assert set(resp) == {"status", "job_id"} and resp["status"] == "OK"
    assert UUID.match(resp["job_id"])
    final = compiled["final"]
    assert final["type"] == "compile"
    assert final["cur_status"]["status"] == "COMPLETE"
    assert final["cur_status"]["curProgress"] == 1.0
    assert final["cur_status"]["finish_timestamp"] is not None
    result = final["results"][0]
    # The seed's default: flow_project_root/build/bin/, named after the flow.
    expected = (seeded.data / PROJECT / "build" / "bin" / "invoice.ibflowbin").resolve()
    assert result == {"status": "OK", "binary_path": str(expected)}
    assert expected.is_file() and expected.stat().st_size > 0


def test_curl_compile_of_a_udf_project_outside_udf_roots_fails_naming_udf_roots(
    seeded: DaemonProcess,
) -> None:
    code, body = curl_compile(seeded.url, seeded.token, UNTRUSTED + "/")
    assert code == 200, body  # the request is fine; the compile job fails
    job_id = json.loads(body)["job_id"]
    final = poll_status(seeded.url, seeded.token, job_id, "compile")
    assert final["cur_status"]["status"] == "FAILED"
    result = final["results"][0]
    assert result["status"] == "ERROR"
    assert "udf_roots" in result["msg"] and "modules/normalize.py" in result["msg"]
    assert not (seeded.data / UNTRUSTED / "build").exists(), "a refused compile wrote a binary"


# -- run_binary_async ----------------------------------------------------------------------------
def test_requests_run_binary_async_as_in_the_seed(
    seeded: DaemonProcess, compiled: dict[str, Any]
) -> None:
    url_base, token = seeded.url, seeded.token
    binary_path = f"{PROJECT}/build/bin/invoice.ibflowbin"
    assert compiled["final"]["results"][0]["status"] == "OK"

    # -- the seed's example, verbatim but for the paths --
    url = url_base + "/api/v1/flow/run_binary_async"

    args = {
        "input_dir": INPUT_DIR,
        "binary_path": binary_path,
        "settings": {
            "delete_out_dir": False,
            "output_has_run_id": True,
            "notification_emails": ["me@domain.com"],
        },
    }
    json_data = json.dumps(args)

    headers = {"Authorization": "Bearer {0}".format(token)}  # noqa: UP030, UP032 - the seed's spelling

    r = requests.post(url, data=json_data, headers=headers)
    resp_data = json.loads(r.content)
    # -- end of the seed's example --

    assert r.status_code == 200, resp_data
    assert set(resp_data) == {"status", "data"} and resp_data["status"] == "OK"
    assert set(resp_data["data"]) == {"job_id", "output_folder"}
    job_id = resp_data["data"]["job_id"]
    assert UUID.match(job_id)
    # "The full path to the root output folder": input_dir/../out/<run_id> (output_has_run_id).
    output_folder = Path(resp_data["data"]["output_folder"])
    assert output_folder.is_absolute()
    assert output_folder.parent == (seeded.data / PROJECT / "data" / "out").resolve()

    final = poll_status(url_base, token, job_id, "flow")
    files = expected_inputs()
    assert final["cur_status"]["status"] == "COMPLETE"
    assert final["cur_status"]["curProgress"] == 1.0
    summary = final["cur_status"]["run_summary"]
    assert summary["numFiles"] == len(files)
    assert summary["numRecords"] == len(files)
    assert summary["numRuntimeErrors"] == 0
    assert final["results"][0] == {"status": "OK", "output_folder": str(output_folder)}

    # The output folder on disk: the same files a `flowd run` leaves, with the expected values.
    results = json.loads((output_folder / "results.json").read_text())
    by_name = {row["file_name"]: row for row in results}
    assert set(by_name) == set(files)
    for name, expected in files.items():
        assert {k: by_name[name][k] for k in HEADER} == {k: expected[k] for k in HEADER}, name

    rows = {
        r["file_name"]: r
        for r in csv.DictReader(io.StringIO((output_folder / "results.csv").read_text()))
    }
    assert set(rows) == set(files)
    for name, expected in files.items():
        row = rows[name]
        assert float(row["total"]) == expected["total"], name
        assert [row[k] for k in HEADER if k != "total"] == [
            expected[k] for k in HEADER if k != "total"
        ], name

    batch = json.loads((output_folder / "batch.ibflowresults").read_text())
    assert batch["job_id"] == job_id
    assert batch["status"] == "COMPLETE"
    assert batch["output_folder"] == str(output_folder)
    assert batch["run_summary"]["numFiles"] == len(files)
    assert batch["settings"]["output_has_run_id"] is True
    assert batch["settings"]["delete_out_dir"] is False
    # save_binary_to_output defaults to true (seed).
    assert (output_folder / "invoice.ibflowbin").is_file()

    # notification_emails with no SMTP server configured: recorded as not sent (SPEC §7).
    def email_recorded() -> bool:
        metrics = requests.get(url_base + "/metrics", headers=headers, timeout=30).text
        return 'flowd_notifications{kind="email",state="NOT_SENT"} 1.0' in metrics

    wait_for(email_recorded, 30, "the e-mail notification to be recorded as not sent")


# -- run_binary_sync -----------------------------------------------------------------------------
def sync_call(
    url_base: str, token: str, binary_path: str, names: list[str], options: dict[str, Any] | None
) -> tuple[requests.Response, dict[str, Any]]:
    files = []
    for name in names:
        encoded_string = base64.b64encode(open(SAMPLES / name, "rb").read()).decode("utf-8")  # noqa: SIM115
        files.append({"file_name": name, "file_content": encoded_string})

    url = url_base + "/api/v1/flow/run_binary_sync"

    api_args: dict[str, Any] = {"binary_path": binary_path, "files": files}
    if options is not None:
        api_args["options"] = options
    json_data = json.dumps(api_args)

    headers = {"Authorization": "Bearer {0}".format(token)}  # noqa: UP030, UP032 - the seed's spelling

    r = requests.post(url, data=json_data, headers=headers, verify=False)
    resp_data = json.loads(r.content)
    return r, resp_data


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


SYNC_FILES = ["coolblue1.pdf", "inv-000002.txt"]


def test_sync_as_in_the_seed_returns_records_in_memory(
    seeded: DaemonProcess, compiled: dict[str, Any]
) -> None:
    binary_path = f"{PROJECT}/build/bin/invoice.ibflowbin"
    before = tree(seeded.data)
    r, resp_data = sync_call(seeded.url, seeded.token, binary_path, SYNC_FILES, None)
    assert r.status_code == 200, resp_data
    assert resp_data["binary_path"] == binary_path
    assert UUID.match(resp_data["job_id"])
    records = resp_data["records"]
    assert [(rec["file_name"], rec["file_index"], rec["record_index"]) for rec in records] == [
        ("coolblue1.pdf", 0, 0),
        ("inv-000002.txt", 1, 0),
    ]
    for rec in records:
        pairs = rec["results"]
        assert all(set(p) >= {"key", "value"} for p in pairs)
        values = {p["key"]: p["value"] for p in pairs}
        expected = EXPECTED[rec["file_name"]]
        assert {k: values[k] for k in HEADER} == {k: expected[k] for k in HEADER}
        assert [p["key"] for p in pairs] == list(HEADER)
    assert tree(seeded.data) == before, "a sync run wrote to disk"


def test_sync_result_format_csv(seeded: DaemonProcess, compiled: dict[str, Any]) -> None:
    binary_path = f"{PROJECT}/build/bin/invoice.ibflowbin"
    r, resp_data = sync_call(
        seeded.url, seeded.token, binary_path, SYNC_FILES, {"result_format": "csv"}
    )
    assert r.status_code == 200, resp_data
    assert "records" not in resp_data
    rows = list(csv.DictReader(io.StringIO(resp_data["csv"])))
    assert [row["file_name"] for row in rows] == SYNC_FILES
    for row in rows:
        expected = EXPECTED[row["file_name"]]
        assert row["invoice_number"] == expected["invoice_number"]
        assert row["invoice_date"] == expected["invoice_date"]
        assert float(row["total"]) == expected["total"]
        assert row["currency"] == expected["currency"]
        assert row["issuer"] == expected["issuer"]
