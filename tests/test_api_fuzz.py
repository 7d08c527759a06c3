"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (SPEC §7): whatever a client
sends — valid bodies, and bodies and parameters that break the schema — the daemon answers without
a 5xx, and every error is the ``{"status": "ERROR", "msg": …}`` shape.

The schema is fetched from a real ``flowd serve`` with the bearer token (``/openapi.json`` is behind
auth like every endpoint but ``/healthz``), and each generated case is sent to that daemon.
Bounded: 30 examples per operation and generation method, no deadline (one request is I/O, not CPU).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import DataGenerationMethod
from schemathesis.checks import not_a_server_error

from tests.conftest import EXAMPLES
from tests.daemon import DaemonProcess


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, invoice_binary: Path) -> Iterator[Any]:
    proc = DaemonProcess(tmp_path_factory.mktemp("fuzz") / "d")
    shutil.copy(invoice_binary, proc.data / "invoice.ibflowbin")
    (proc.data / "in").mkdir()
    shutil.copy(EXAMPLES / "samples" / "invoices" / "inv-000001.txt", proc.data / "in")
    with proc:
        yield proc
        events = [e for e in proc.log_events() if e.get("event") == "api_internal_error"]
        assert not events, f"the daemon logged internal errors: {events}"


@pytest.fixture(scope="module")
def api_schema(fuzzed: DaemonProcess) -> Iterator[Any]:
    # FastAPI publishes OpenAPI 3.1, which schemathesis 3.x supports behind an experiment flag.
    schemathesis.experimental.OPEN_API_3_1.enable()
    try:
        yield schemathesis.from_uri(
            fuzzed.url + "/openapi.json",
            headers=fuzzed.headers,
            data_generation_methods=[DataGenerationMethod.positive, DataGenerationMethod.negative],
        )
    finally:
        schemathesis.experimental.OPEN_API_3_1.disable()


schema = schemathesis.from_pytest_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: Any, fuzzed: DaemonProcess) -> None:
    response = case.call(headers=fuzzed.headers, timeout=90)
    case.validate_response(response, checks=(not_a_server_error,))
    if response.status_code >= 400:
        body = response.json()
        assert body["status"] == "ERROR", response.text
        assert isinstance(body["msg"], str) and body["msg"], response.text
        assert "Traceback" not in body["msg"]
