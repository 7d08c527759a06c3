"""Every bad request gets the right HTTP status and the body ``{"status": "ERROR", "msg": …}``,
with a message that names the thing and the cause — never a stack trace (SPEC §7). Also the
pipeline endpoints, ``GET /metrics`` and the published OpenAPI schema.

One real daemon serves the module, with ``[api] max_request_mb = 0.05`` (52,428 bytes) so the body
cap can be crossed cheaply. Its ``data_root`` holds the invoice binary, ``in/`` with one text
invoice, and two symlinks that lead out of it; ``outside/`` next to it holds another binary.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import EXAMPLES, wait_for
from tests.daemon import DaemonProcess

ASYNC = "/api/v1/flow/run_binary_async"
SYNC = "/api/v1/flow/run_binary_sync"
COMPILE = "/api/v1/flow_binary/compile"
STATUS = "/api/v1/jobs/status"
LIST = "/api/v1/jobs/list"
PIPELINE = "/api/v1/flow/pipeline"
JOB_PIPELINES = "/api/v1/jobs/pipelines"
COMMANDS = ("pause", "resume", "cancel", "retry")
LIMIT_MB = 0.05
LIMIT_BYTES = int(LIMIT_MB * 1024 * 1024)

RUN = {"binary_path": "invoice.ibflowbin", "input_dir": "in"}
"""A valid run_binary_async body; the cases below spoil one thing each."""
SYNC_BODY = {
    "binary_path": "invoice.ibflowbin",
    "files": [{"file_name": "a.txt", "file_content": "SW52b2ljZSBObzogMQo="}],
}

# Every endpoint but /healthz, with a body good enough that only the token can be wrong.
PROTECTED: list[tuple[str, str, Any]] = [
    ("POST", COMPILE, {"binary_type": "Single Flow", "flow_project_root": "in"}),
    ("POST", ASYNC, RUN),
    ("POST", SYNC, SYNC_BODY),
    ("GET", STATUS + "?job_id=x", None),
    ("GET", LIST, None),
    *[("POST", f"/api/v1/jobs/{c}", {"job_id": "x"}) for c in COMMANDS],
    ("GET", PIPELINE, None),
    ("POST", PIPELINE, {"name": "p"}),
    ("POST", JOB_PIPELINES, {"job_id": "x", "pipeline_ids": []}),
    ("GET", "/api/v1/daemon/status", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
    ("GET", "/api/v1/no/such/endpoint", None),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, invoice_binary: Path) -> Iterator[DaemonProcess]:
    root = tmp_path_factory.mktemp("errors")
    proc = DaemonProcess(root / "d", api_toml=f"max_request_mb = {LIMIT_MB}")
    shutil.copy(invoice_binary, proc.data / "invoice.ibflowbin")
    (proc.data / "in").mkdir()
    shutil.copy(EXAMPLES / "samples" / "invoices" / "inv-000001.txt", proc.data / "in")
    outside = root / "outside"
    (outside / "in").mkdir(parents=True)
    shutil.copy(invoice_binary, outside / "invoice.ibflowbin")
    shutil.copy(EXAMPLES / "samples" / "invoices" / "inv-000002.txt", outside / "in")
    os.symlink(outside, proc.data / "link")
    os.symlink(outside / "invoice.ibflowbin", proc.data / "linked.ibflowbin")
    with proc:
        yield proc
        errors = [e for e in proc.log_events() if e.get("event") == "api_internal_error"]
        assert not errors, f"requests ended in internal errors: {errors}"
    assert not (outside / "out").exists(), "a refused request wrote outside data_root"


@pytest.fixture(scope="module")
def complete_job(api: DaemonProcess) -> str:
    """A flow job that ran to COMPLETE (one text invoice)."""
    r = api.post(ASYNC, {**RUN, "job_id": "done-1"})
    assert r.status_code == 200, r.text

    def ended() -> bool:
        return api.get(STATUS, params={"job_id": "done-1"}).json()["state"] == "DONE"

    wait_for(ended, 60, "job done-1 to end")
    cur = json.loads(api.get(STATUS, params={"job_id": "done-1"}).json()["cur_status"])
    assert cur["status"] == "COMPLETE"
    return "done-1"


def assert_error(r: requests.Response, status: int, *words: str) -> str:
    """``r`` is an error of ``status`` in the API's shape, its message holding every word."""
    assert r.status_code == status, f"{r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"status", "msg"} and body["status"] == "ERROR", body
    msg = body["msg"]
    assert isinstance(msg, str) and msg.strip()
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"
    for trace in ("Traceback", 'File "', "pydantic", "Exception", "internal error"):
        assert trace not in msg, msg
    return msg


def send(api: DaemonProcess, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    data = None if body is None else json.dumps(body)
    return requests.request(method, api.url + path, data=data, headers=headers, timeout=30)


# -- 401 -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED]
)
@pytest.mark.parametrize(
    "auth",
    [None, "Bearer not-the-token", "Basic dXNlcjpwYXNz", "Bearer", "{token}"],
    ids=["none", "wrong", "basic", "empty", "bare-token"],
)
def test_401_without_or_with_a_wrong_token(
    api: DaemonProcess, method: str, path: str, body: Any, auth: str | None
) -> None:
    headers = {} if auth is None else {"Authorization": auth.format(token=api.token)}
    r = send(api, method, path, body, headers)
    assert_error(r, 401, "bearer token", "Authorization: Bearer")
    assert r.headers.get("www-authenticate") == "Bearer"


def test_every_published_endpoint_is_in_the_401_list(api: DaemonProcess) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    published = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    covered = {(m, p.split("?")[0]) for m, p, _ in PROTECTED}
    assert published - covered == {("GET", "/healthz")}


def test_healthz_needs_no_token(api: DaemonProcess) -> None:
    r = requests.get(api.url + "/healthz", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "OK"


def test_the_right_token_opens_metrics_and_the_schema(api: DaemonProcess) -> None:
    assert api.get("/metrics").status_code == 200
    assert api.get("/openapi.json").status_code == 200


# -- 400 -----------------------------------------------------------------------------------------
RAW_400 = [
    ("not json", ASYNC, '{"binary_path": "invoice.ibflowbin",', ("not valid JSON",)),
    ("empty body", ASYNC, "", ("request body is empty",)),
    ("array", ASYNC, "[1, 2]", ("request body must be a JSON object",)),
    ("null", ASYNC, "null", ("request body must be a JSON object",)),
    ("string", COMPILE, '"Single Flow"', ("request body must be a JSON object",)),
    ("not utf-8", SYNC, b"\xff\xfe{}", ("not valid JSON",)),
]


@pytest.mark.parametrize(
    ("path", "data", "words"), [c[1:] for c in RAW_400], ids=[c[0] for c in RAW_400]
)
def test_400_unreadable_body(
    api: DaemonProcess, path: str, data: str | bytes, words: tuple[str, ...]
) -> None:
    r = requests.post(api.url + path, data=data, headers=api.headers, timeout=30)
    assert_error(r, 400, *words)


BAD_400: list[tuple[str, str, dict[str, Any], tuple[str, ...]]] = [
    (
        "bad base64",
        SYNC,
        {**SYNC_BODY, "files": [{"file_name": "a.txt", "file_content": "not base64!"}]},
        ("files[0].file_content", "a.txt", "base64"),
    ),
    ("job_id chars", ASYNC, {**RUN, "job_id": "bad id/1"}, ("job_id", "'bad id/1'", "A-Z a-z 0-9")),
    ("job_id 51 chars", ASYNC, {**RUN, "job_id": "a" * 51}, ("job_id", "1-50 characters")),
    (
        "compile job_id chars",
        COMPILE,
        {"binary_type": "Single Flow", "flow_project_root": "in", "job_id": "a b"},
        ("job_id", "'a b'"),
    ),
    (
        "tags over 500 chars",
        ASYNC,
        {**RUN, "settings": {"tags": ["x" * 300, "y" * 201]}},
        ("tags", "501 characters", "500"),
    ),
    ("empty tag", ASYNC, {**RUN, "settings": {"tags": [""]}}, ("tags", "empty")),
    (
        "step_timeout -5",
        ASYNC,
        {**RUN, "settings": {"step_timeout": -5}},
        ("step_timeout", "-5", "-1"),
    ),
    (
        "path too long",
        ASYNC,
        {**RUN, "binary_path": "b" * 300 + ".ibflowbin"},
        ("binary_path", "cannot be used", "too long"),
    ),
    ("input_dir too long", ASYNC, {**RUN, "input_dir": "i" * 300}, ("input_dir", "too long")),
    ("empty path", ASYNC, {**RUN, "input_dir": " "}, ("input_dir", "must not be empty")),
    ("NUL in path", ASYNC, {**RUN, "input_dir": "in\u0000x"}, ("input_dir", "NUL")),
    (
        "sync file name with ..",
        SYNC,
        {**SYNC_BODY, "files": [{"file_name": "../a.txt", "file_content": ""}]},
        ("files[0].file_name", "'../a.txt'"),
    ),
    (
        "sync duplicate file names",
        SYNC,
        {**SYNC_BODY, "files": [{"file_name": "a.txt", "file_content": ""}] * 2},
        ("file names must be unique",),
    ),
    (
        "webhook url",
        ASYNC,
        {**RUN, "settings": {"webhook_config": {"url": "ftp://x"}}},
        ("webhook_config.url", "'ftp://x'"),
    ),
    (
        "emails",
        ASYNC,
        {**RUN, "settings": {"notification_emails": ["not-an-address"]}},
        ("notification_emails",),
    ),
    (
        "modify_output_schema",
        ASYNC,
        {**RUN, "settings": {"runtime_config": {"modify_output_schema": "{nope"}}},
        ("modify_output_schema", "not valid JSON"),
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "words"), [c[1:] for c in BAD_400], ids=[c[0] for c in BAD_400]
)
def test_400_bad_values(
    api: DaemonProcess, path: str, body: dict[str, Any], words: tuple[str, ...]
) -> None:
    assert_error(api.post(path, body), 400, *words)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"job_id": "x", "type": "batch"}, ("type", "'batch'", "flow, compile")),
    ],
)
def test_400_bad_status_query(
    api: DaemonProcess, params: dict[str, str], words: tuple[str, ...]
) -> None:
    assert_error(api.get(STATUS, params=params), 400, *words)


def test_400_bad_list_filter(api: DaemonProcess) -> None:
    assert_error(api.get(LIST, params={"status": "DONE"}), 400, "status", "'DONE'", "COMPLETE")


# -- 422 -----------------------------------------------------------------------------------------
BAD_422: list[tuple[str, str, dict[str, Any], tuple[str, ...]]] = [
    ("missing binary_path", ASYNC, {"input_dir": "in"}, ("binary_path", "Field required")),
    ("missing files", SYNC, {"binary_path": "invoice.ibflowbin"}, ("files", "Field required")),
    ("missing job_id", "/api/v1/jobs/pause", {}, ("job_id", "Field required")),
    ("input_dir not a string", ASYNC, {**RUN, "input_dir": 5}, ("input_dir", "string")),
    (
        "boolean as a string",
        ASYNC,
        {**RUN, "settings": {"output_has_run_id": "true"}},
        ("settings.output_has_run_id", "boolean"),
    ),
    (
        "step_timeout as a string",
        ASYNC,
        {**RUN, "settings": {"step_timeout": "5"}},
        ("settings.step_timeout", "integer"),
    ),
    ("tags not a list", ASYNC, {**RUN, "settings": {"tags": "a,b"}}, ("settings.tags", "list")),
    (
        "settings not an object",
        ASYNC,
        {**RUN, "settings": []},
        ("settings: must be a JSON object",),
    ),
    (
        "runtime_config not an object",
        ASYNC,
        {**RUN, "settings": {"runtime_config": ["a"]}},
        ("settings.runtime_config: must be a JSON object",),
    ),
    (
        "webhook_config not an object",
        ASYNC,
        {**RUN, "settings": {"webhook_config": "http://x"}},
        ("settings.webhook_config: must be a JSON object",),
    ),
    (
        "options not an object",
        SYNC,
        {**SYNC_BODY, "options": "csv"},
        ("options: must be a JSON object",),
    ),
    (
        "unknown key",
        ASYNC,
        {**RUN, "settings": {"output_has_runid": True}},
        ("settings.output_has_runid", "unknown key"),
    ),
    ("unknown top-level key", ASYNC, {**RUN, "input": "in"}, ("input", "unknown key")),
    (
        "unknown sync option",
        SYNC,
        {**SYNC_BODY, "options": {"format": "csv"}},
        ("options.format", "unknown key"),
    ),
    ("priority 10", ASYNC, {**RUN, "settings": {"priority": 10}}, ("settings.priority", "9")),
    ("priority -1", ASYNC, {**RUN, "settings": {"priority": -1}}, ("settings.priority", "0")),
    (
        "6 sync files",
        SYNC,
        {**SYNC_BODY, "files": [{"file_name": f"{i}.txt", "file_content": ""} for i in range(6)]},
        ("files", "at most 5"),
    ),
    ("no sync files", SYNC, {**SYNC_BODY, "files": []}, ("files", "at least 1")),
    (
        "result_format xml",
        SYNC,
        {**SYNC_BODY, "options": {"result_format": "xml"}},
        ("options.result_format", "'json' or 'csv'"),
    ),
    (
        "binary_type",
        COMPILE,
        {"binary_type": "Single", "flow_project_root": "in"},
        ("binary_type", "Single Flow"),
    ),
    (
        "retry_type",
        "/api/v1/jobs/retry",
        {"job_id": "x", "retry_type": "all"},
        ("retry_type", "checkpoint_failure"),
    ),
    ("empty pipeline name", PIPELINE, {"name": ""}, ("name", "at least 1")),
    (
        "pipeline_ids not a list",
        JOB_PIPELINES,
        {"job_id": "x", "pipeline_ids": "p"},
        ("pipeline_ids", "list"),
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "words"), [c[1:] for c in BAD_422], ids=[c[0] for c in BAD_422]
)
def test_422_wrong_shape(
    api: DaemonProcess, path: str, body: dict[str, Any], words: tuple[str, ...]
) -> None:
    assert_error(api.post(path, body), 422, *words)


def test_422_lone_surrogate_in_text(api: DaemonProcess) -> None:
    # Valid JSON, but not text: no file name, log line or job store column can hold it.
    for path, raw, where in [
        (ASYNC, '{"binary_path": "\\ud800", "input_dir": "in"}', "binary_path"),
        (
            ASYNC,
            '{"binary_path": "invoice.ibflowbin", "input_dir": "in", "settings": {"tags": ["ok", "\\udc00"]}}',
            "settings.tags[1]",
        ),
        (PIPELINE, '{"name": "p\\ud800"}', "name"),
        (
            SYNC,
            '{"binary_path": "invoice.ibflowbin", "files": [{"file_name": "\\ud83d.txt", "file_content": ""}]}',
            "files[0].file_name",
        ),
    ]:
        r = requests.post(api.url + path, data=raw, headers=api.headers, timeout=30)
        assert_error(r, 422, where, "lone surrogate")
    assert not (api.data / "out").exists(), "a refused request prepared an output folder"


def test_422_bad_query(api: DaemonProcess) -> None:
    assert_error(api.get(STATUS), 422, "job_id", "Field required")
    assert_error(api.get(LIST, params={"limit": 0}), 422, "limit")
    assert_error(api.get(LIST, params={"since": "yesterday"}), 422, "since")


# -- 403 -----------------------------------------------------------------------------------------
BAD_403: list[tuple[str, str, dict[str, Any], tuple[str, ...]]] = [
    (
        "binary_path with ..",
        ASYNC,
        {**RUN, "binary_path": "in/../invoice.ibflowbin"},
        ("binary_path", "'..' is not allowed"),
    ),
    (
        "input_dir with ..",
        ASYNC,
        {**RUN, "input_dir": "../outside/in"},
        ("input_dir", "'..' is not allowed"),
    ),
    (
        "output_dir with ..",
        ASYNC,
        {**RUN, "output_dir": "out/../../x"},
        ("output_dir", "'..' is not allowed"),
    ),
    (
        "absolute input_dir",
        ASYNC,
        {**RUN, "input_dir": "/etc"},
        ("input_dir", "'/etc'", "outside the daemon's data_root"),
    ),
    (
        "absolute output_dir",
        ASYNC,
        {**RUN, "output_dir": "/tmp/flowd-out"},
        ("output_dir", "outside the daemon's data_root"),
    ),
    (
        "symlinked folder",
        ASYNC,
        {**RUN, "binary_path": "link/invoice.ibflowbin"},
        ("binary_path", "'link/invoice.ibflowbin'", "resolves outside"),
    ),
    (
        "symlinked binary",
        ASYNC,
        {**RUN, "binary_path": "linked.ibflowbin"},
        ("binary_path", "resolves outside"),
    ),
    (
        "symlinked input_dir",
        ASYNC,
        {**RUN, "input_dir": "link/in"},
        ("input_dir", "resolves outside"),
    ),
    (
        "sync binary via symlink",
        SYNC,
        {**SYNC_BODY, "binary_path": "link/invoice.ibflowbin"},
        ("binary_path", "resolves outside"),
    ),
    (
        "compile root with ..",
        COMPILE,
        {"binary_type": "Single Flow", "flow_project_root": "in/.."},
        ("flow_project_root", "'..'"),
    ),
    (
        "compile root via symlink",
        COMPILE,
        {"binary_type": "Single Flow", "flow_project_root": "link"},
        ("flow_project_root", "resolves outside"),
    ),
    (
        "compile flow_file with ..",
        COMPILE,
        {
            "binary_type": "Single Flow",
            "flow_project_root": "in",
            "settings": {"flow_file": "../../x.ibflow"},
        },
        ("settings/flow_file", "'..'"),
    ),
    (
        "predefined_binary_path outside",
        COMPILE,
        {
            "binary_type": "Single Flow",
            "flow_project_root": "in",
            "predefined_binary_path": "/tmp/x.ibflowbin",
        },
        ("predefined_binary_path", "outside"),
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "words"), [c[1:] for c in BAD_403], ids=[c[0] for c in BAD_403]
)
def test_403_path_outside_data_root(
    api: DaemonProcess, path: str, body: dict[str, Any], words: tuple[str, ...]
) -> None:
    assert_error(api.post(path, body), 403, *words)


def test_403_absolute_path_to_an_existing_binary_outside(api: DaemonProcess) -> None:
    outside = api.root.parent / "outside" / "invoice.ibflowbin"
    assert outside.is_file()  # it exists: the refusal is about where it is, not whether
    assert_error(
        api.post(ASYNC, {**RUN, "binary_path": str(outside)}), 403, "binary_path", "outside"
    )


def test_absolute_path_inside_data_root_is_fine(api: DaemonProcess) -> None:
    r = api.post(
        ASYNC, {**RUN, "binary_path": str(api.data / "invoice.ibflowbin"), "job_id": "abs-ok"}
    )
    assert r.status_code == 200, r.text


# -- 404 -----------------------------------------------------------------------------------------
def test_404_unknown_job(api: DaemonProcess) -> None:
    assert_error(
        api.get(STATUS, params={"job_id": "no-such-job"}), 404, "job 'no-such-job' not found"
    )
    for command in COMMANDS:
        r = api.post(f"/api/v1/jobs/{command}", {"job_id": "no-such-job"})
        assert_error(r, 404, "'no-such-job'", "not found")
    r = api.post(JOB_PIPELINES, {"job_id": "no-such-job", "pipeline_ids": []})
    assert_error(r, 404, "'no-such-job'", "not found")


BAD_404: list[tuple[str, str, dict[str, Any], tuple[str, ...]]] = [
    (
        "missing binary",
        ASYNC,
        {**RUN, "binary_path": "nope.ibflowbin"},
        ("binary_path", "'nope.ibflowbin'", "does not exist"),
    ),
    (
        "missing input_dir",
        ASYNC,
        {**RUN, "input_dir": "nope"},
        ("input_dir", "'nope'", "does not exist"),
    ),
    (
        "missing sync binary",
        SYNC,
        {**SYNC_BODY, "binary_path": "nope.ibflowbin"},
        ("binary_path", "does not exist"),
    ),
    (
        "missing project",
        COMPILE,
        {"binary_type": "Single Flow", "flow_project_root": "nope"},
        ("flow_project_root", "'nope'", "does not exist"),
    ),
    (
        "unknown pipeline on a run",
        ASYNC,
        {**RUN, "settings": {"pipeline_ids": ["no-such-pipeline"]}},
        ("pipeline 'no-such-pipeline' not found",),
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "words"), [c[1:] for c in BAD_404], ids=[c[0] for c in BAD_404]
)
def test_404_missing_thing(
    api: DaemonProcess, path: str, body: dict[str, Any], words: tuple[str, ...]
) -> None:
    assert_error(api.post(path, body), 404, *words)


def test_404_unknown_pipeline_on_a_job(api: DaemonProcess, complete_job: str) -> None:
    r = api.post(JOB_PIPELINES, {"job_id": complete_job, "pipeline_ids": ["no-such-pipeline"]})
    assert_error(r, 404, "pipeline 'no-such-pipeline' not found")


def test_404_unknown_endpoint_and_405_wrong_method(api: DaemonProcess) -> None:
    assert_error(
        api.get("/api/v1/flow/run_binary"), 404, "no such endpoint", "GET /api/v1/flow/run_binary"
    )
    assert_error(
        api.post("/api/v2/flow/run_binary_async", RUN), 404, "POST /api/v2/flow/run_binary_async"
    )
    assert_error(api.get(ASYNC), 405, "GET is not allowed on /api/v1/flow/run_binary_async")
    r = requests.delete(api.url + STATUS, headers=api.headers, timeout=30)
    assert_error(r, 405, "DELETE", STATUS)
    r = requests.put(api.url + PIPELINE, json={"name": "p"}, headers=api.headers, timeout=30)
    assert_error(r, 405, "PUT", PIPELINE)


# -- 409 -----------------------------------------------------------------------------------------
def test_409_duplicate_job_id(api: DaemonProcess, complete_job: str) -> None:
    r = api.post(ASYNC, {**RUN, "job_id": complete_job})
    assert_error(r, 409, f"job_id '{complete_job}' is already taken")
    r = api.post(
        COMPILE, {"binary_type": "Single Flow", "flow_project_root": "in", "job_id": complete_job}
    )
    assert_error(r, 409, f"job_id '{complete_job}' is already taken")


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("pause", ("cannot go from COMPLETE to PAUSED", "QUEUED or RUNNING")),
        ("resume", ("cannot go from COMPLETE", "only to a job that is PAUSED")),
        ("retry", ("cannot go from COMPLETE", "CANCELLED or FAILED")),
        ("cancel", ("cannot go from COMPLETE to CANCELLED",)),
    ],
)
def test_409_command_the_state_does_not_allow(
    api: DaemonProcess, complete_job: str, command: str, words: tuple[str, ...]
) -> None:
    r = api.post(f"/api/v1/jobs/{command}", {"job_id": complete_job})
    assert_error(r, 409, f"job {complete_job}", *words)
    status = api.get(STATUS, params={"job_id": complete_job}).json()
    assert json.loads(status["cur_status"])["status"] == "COMPLETE", (
        "a refused command changed the job"
    )


# -- 413 -----------------------------------------------------------------------------------------
def test_413_body_over_max_request_mb(api: DaemonProcess) -> None:
    big = json.dumps({**RUN, "job_id": "x" * (LIMIT_BYTES + 1)})
    r = requests.post(api.url + ASYNC, data=big, headers=api.headers, timeout=30)
    assert_error(r, 413, "larger than the limit", f"{LIMIT_MB:g} MB", "max_request_mb")
    # Streamed (chunked, no Content-Length): found out while reading.
    chunks = (big[i : i + 4096].encode() for i in range(0, len(big), 4096))
    r = requests.post(api.url + ASYNC, data=chunks, headers=api.headers, timeout=30)
    assert_error(r, 413, "max_request_mb")


def test_a_body_just_under_the_limit_is_read(api: DaemonProcess) -> None:
    body = json.dumps({**RUN, "job_id": "x" * (LIMIT_BYTES - 200)})
    assert len(body) < LIMIT_BYTES
    r = requests.post(api.url + ASYNC, data=body, headers=api.headers, timeout=30)
    assert_error(r, 400, "job_id", "1-50 characters")  # parsed and checked, not cut off


# -- pipelines -----------------------------------------------------------------------------------
def test_pipelines_create_list_set_and_clear(api: DaemonProcess) -> None:
    first = api.post(PIPELINE, {"name": "nightly"}).json()
    second = api.post(PIPELINE, {"name": "audit"}).json()
    assert first["status"] == "OK" and first["name"] == "nightly"
    assert first["pipeline_id"] != second["pipeline_id"]
    listed = api.get(PIPELINE).json()
    assert listed["status"] == "OK"
    names = {p["pipeline_id"]: p["name"] for p in listed["pipelines"]}
    assert names[first["pipeline_id"]] == "nightly" and names[second["pipeline_id"]] == "audit"

    r = api.post(
        ASYNC, {**RUN, "job_id": "piped", "settings": {"pipeline_ids": [first["pipeline_id"]]}}
    )
    assert r.status_code == 200, r.text

    def in_pipeline(pipeline_id: str) -> list[str]:
        jobs = api.get(LIST, params={"pipeline_id": pipeline_id}).json()["jobs"]
        return [j["job_id"] for j in jobs]

    assert in_pipeline(first["pipeline_id"]) == ["piped"]
    r = api.post(JOB_PIPELINES, {"job_id": "piped", "pipeline_ids": [second["pipeline_id"]]})
    assert r.json() == {"status": "OK", "job_id": "piped", "pipeline_ids": [second["pipeline_id"]]}
    assert in_pipeline(first["pipeline_id"]) == []
    assert in_pipeline(second["pipeline_id"]) == ["piped"]

    r = api.post(JOB_PIPELINES, {"job_id": "piped", "pipeline_ids": []})
    assert r.json() == {"status": "OK", "job_id": "piped", "pipeline_ids": []}
    assert in_pipeline(second["pipeline_id"]) == []
    job = next(j for j in api.get(LIST).json()["jobs"] if j["job_id"] == "piped")
    assert job["pipeline_ids"] == []


# -- metrics and schema --------------------------------------------------------------------------
def all_jobs_ended(api: DaemonProcess) -> bool:
    return not any(
        api.get(LIST, params={"status": status}).json()["jobs"]
        for status in ("QUEUED", "RUNNING", "PAUSED")
    )


def test_concurrent_runs_into_one_output_folder(api: DaemonProcess) -> None:
    # The default output folder (input_dir/../out) is shared: every job writes its
    # batch.ibflowresults there, from API threads and the finalizer at once.
    ids = [f"same-out-{i}" for i in range(8)]
    with ThreadPoolExecutor(len(ids)) as pool:
        answers = list(pool.map(lambda job_id: api.post(ASYNC, {**RUN, "job_id": job_id}), ids))
    assert [r.status_code for r in answers] == [200] * len(ids), [r.text for r in answers]
    assert {r.json()["data"]["output_folder"] for r in answers} == {str(api.data / "out")}
    wait_for(lambda: all_jobs_ended(api), 60, "the jobs to end")
    for job_id in ids:
        cur = json.loads(api.get(STATUS, params={"job_id": job_id}).json()["cur_status"])
        assert cur["status"] == "COMPLETE", (job_id, cur)


def test_metrics_count_jobs_by_status(api: DaemonProcess, complete_job: str) -> None:
    wait_for(lambda: all_jobs_ended(api), 60, "the jobs to end")  # so both reads agree
    r = api.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name in ("flowd_jobs", "flowd_queue_depth", "flowd_tasks_running", "flowd_notifications"):
        assert families[name].type == "gauge", name
    assert families["flowd_tasks_finished"].type == "counter"
    assert families["flowd_task_seconds"].type == "histogram"
    assert families["flowd_sync_request_seconds"].type == "histogram"
    jobs = {s.labels["status"]: s.value for s in families["flowd_jobs"].samples}
    assert set(jobs) >= {"QUEUED", "RUNNING", "PAUSED", "COMPLETE", "FAILED", "CANCELLED"}
    listed = api.get(LIST, params={"status": "COMPLETE", "limit": 500}).json()["jobs"]
    assert jobs["COMPLETE"] == len(listed) >= 1
    done = {
        s.labels["outcome"]: s.value
        for s in families["flowd_tasks_finished"].samples
        if s.name.endswith("_total")
    }
    assert done.get("DONE", 0) >= 1
    assert families["flowd_step_seconds"].type == "histogram"
    steps = {
        s.labels["step"]: s.value
        for s in families["flowd_step_seconds"].samples
        if s.name.endswith("_count")
    }
    # Every file of a completed run went through each step of the example flow once.
    for kind in ("process_files", "apply_refiner", "apply_udf", "apply_checkpoint"):
        assert steps.get(kind, 0) >= done["DONE"], (kind, steps)


def test_openapi_lists_the_seed_endpoints(api: DaemonProcess) -> None:
    schema = api.get("/openapi.json").json()
    paths = schema["paths"]
    for method, path in [
        ("post", COMPILE),
        ("post", ASYNC),
        ("post", SYNC),
        ("get", STATUS),
        ("get", LIST),
        *[("post", f"/api/v1/jobs/{c}") for c in COMMANDS],
        ("get", PIPELINE),
        ("post", PIPELINE),
        ("post", JOB_PIPELINES),
        ("get", "/healthz"),
        ("get", "/metrics"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} is not published"
    components = schema["components"]["schemas"]
    run = components["RunAsyncBody"]
    assert set(run["required"]) == {"binary_path", "input_dir"}
    assert set(run["properties"]) == {
        "binary_path",
        "input_dir",
        "output_dir",
        "job_id",
        "settings",
    }
    settings = components["RunSettingsBody"]["properties"]
    assert set(settings) >= {
        "output_has_run_id",
        "delete_out_dir",
        "log_to_timeline",
        "notification_emails",
        "tags",
        "step_timeout",
        "pipeline_ids",
        "save_binary_to_output",
        "webhook_config",
        "runtime_config",
        "priority",
    }
    assert settings["priority"]["maximum"] == 9
    compile_body = components["CompileBody"]
    assert set(compile_body["required"]) == {"flow_project_root", "binary_type"}
    assert compile_body["properties"]["binary_type"]["enum"] == ["Single Flow", "Metaflow", "Flows"]
    assert components["RunSyncBody"]["properties"]["files"]["maxItems"] == 5
