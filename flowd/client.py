"""A small Python client for the flowd daemon's HTTP API (what ``flowd submit/sync/jobs`` use).

Example::

    from flowd.client import FlowdClient

    client = FlowdClient.from_config("config/flowd.toml")   # finds the URL and the token
    job_id = client.run_async("invoices/build/bin/invoice.ibflowbin", "inbox/invoices",
                              settings={"output_has_run_id": True})["job_id"]
    status = client.wait(job_id)                             # polls until the job has ended
    print(status["cur_status"]["status"], status["results"][0])

    records = client.run_sync("invoices/build/bin/invoice.ibflowbin", ["invoice.pdf"])["records"]

Every method returns the response's JSON (``status`` is ``"OK"``) or raises :class:`ApiError`
with the HTTP status and the daemon's ``msg``. Paths are sent as given: relative ones are relative
to the daemon's ``data_root``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from flowd.config import FlowdConfig

from flowd.errors import FlowdError

DEFAULT_TIMEOUT_S = 30.0


class ApiError(FlowdError):
    """The daemon answered with an error (``status`` is the HTTP status; 0: no answer at all)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def daemon_url(config: FlowdConfig) -> str:
    """Where the daemon of ``config`` listens: the address it wrote at start-up
    (``state_dir/daemon.json``), else the configured ``[api]`` host and port."""
    info = config.state_dir / "daemon.json"
    try:
        url = json.loads(info.read_text(encoding="utf-8")).get("url")
        if isinstance(url, str) and url:
            return url
    except (OSError, ValueError):
        pass
    host = config.api.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{config.api.port}"


class FlowdClient:
    """A client for one daemon at ``url`` with bearer ``token``."""

    def __init__(self, url: str, token: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_config(cls, path: Path | str, **kwargs: Any) -> FlowdClient:
        """The client of the daemon configured in ``path`` (its URL and first token)."""
        from flowd.config import load_config
        from flowd.daemon.tokens import read_tokens, token_file

        config = load_config(path)
        return cls(daemon_url(config), read_tokens(token_file(config))[0], **kwargs)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> FlowdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("timeout", self.timeout_s)
        try:
            response = self.session.request(method, self.url + path, **kwargs)
        except requests.ConnectionError:
            raise ApiError(
                0, f"cannot reach the flowd daemon at {self.url}: is `flowd serve` running?"
            ) from None
        except requests.Timeout:
            raise ApiError(
                0, f"the flowd daemon at {self.url} did not answer in {kwargs['timeout']} s"
            ) from None
        try:
            body = response.json()
        except ValueError:
            raise ApiError(
                response.status_code,
                f"HTTP {response.status_code}: not a flowd answer: {response.text[:200]}",
            ) from None
        if response.status_code >= 400 or not isinstance(body, dict) or body.get("status") != "OK":
            msg = body.get("msg") if isinstance(body, dict) else None
            raise ApiError(
                response.status_code, f"HTTP {response.status_code}: {msg or response.text[:200]}"
            )
        return body

    # -- the seed's endpoints ------------------------------------------------------------------
    def compile(
        self,
        flow_project_root: str,
        binary_type: str = "Single Flow",
        settings: Mapping[str, Any] | None = None,
        predefined_binary_path: str | None = None,
    ) -> str:
        """Start a compile job; its job id."""
        body: dict[str, Any] = {
            "flow_project_root": flow_project_root,
            "binary_type": binary_type,
            "settings": dict(settings or {}),
        }
        if predefined_binary_path:
            body["predefined_binary_path"] = predefined_binary_path
        return str(self.request("POST", "/api/v1/flow_binary/compile", json=body)["job_id"])

    def run_async(
        self,
        binary_path: str,
        input_dir: str,
        *,
        output_dir: str | None = None,
        job_id: str | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Start a run; ``{"job_id", "output_folder"}``."""
        body: dict[str, Any] = {"binary_path": binary_path, "input_dir": input_dir}
        if output_dir:
            body["output_dir"] = output_dir
        if job_id:
            body["job_id"] = job_id
        if settings:
            body["settings"] = dict(settings)
        data: dict[str, Any] = self.request("POST", "/api/v1/flow/run_binary_async", json=body)[
            "data"
        ]
        return data

    def run_sync(
        self,
        binary_path: str,
        files: Sequence[Path | str],
        *,
        result_format: str = "json",
        runtime_config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run up to five local files in memory on the daemon and return its answer."""
        payload = [
            {
                "file_name": Path(f).name,
                "file_content": base64.b64encode(Path(f).read_bytes()).decode("ascii"),
            }
            for f in files
        ]
        options: dict[str, Any] = {"result_format": result_format}
        if runtime_config:
            options["runtime_config"] = dict(runtime_config)
        body = {"binary_path": binary_path, "files": payload, "options": options}
        return self.request(
            "POST", "/api/v1/flow/run_binary_sync", json=body, timeout=max(self.timeout_s, 95)
        )

    # -- jobs ----------------------------------------------------------------------------------
    def status(self, job_id: str) -> dict[str, Any]:
        """The job status, with ``cur_status`` already parsed from its JSON string."""
        body = self.request("GET", "/api/v1/jobs/status", params={"job_id": job_id})
        body["cur_status"] = json.loads(body["cur_status"])
        return body

    def wait(
        self,
        job_id: str,
        *,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the job until it has ended (``state`` ``DONE``); its last status."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = self.status(job_id)
            if on_status is not None:
                on_status(status)
            if status["state"] == "DONE":
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise ApiError(0, f"job {job_id} has not ended after {timeout_s} s")
            time.sleep(poll_s)

    def jobs(self, **filters: Any) -> dict[str, Any]:
        """A page of jobs, newest first (filters: status, tag, pipeline_id, binary_path, since,
        limit, offset)."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self.request("GET", "/api/v1/jobs/list", params=params)

    def command(self, action: str, job_id: str, retry_type: str | None = None) -> dict[str, Any]:
        """``pause``, ``resume``, ``cancel`` or ``retry`` a job; ``{"job_id", "state"}``."""
        if action not in ("pause", "resume", "cancel", "retry"):
            raise ValueError(f"unknown job command {action!r}")
        body: dict[str, Any] = {"job_id": job_id}
        if retry_type:
            body["retry_type"] = retry_type
        return self.request("POST", f"/api/v1/jobs/{action}", json=body)

    def pipelines(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/api/v1/flow/pipeline")["pipelines"]
        return result

    def create_pipeline(self, name: str) -> str:
        return str(
            self.request("POST", "/api/v1/flow/pipeline", json={"name": name})["pipeline_id"]
        )

    def set_pipelines(self, job_id: str, pipeline_ids: Iterable[str]) -> dict[str, Any]:
        body = {"job_id": job_id, "pipeline_ids": list(pipeline_ids)}
        return self.request("POST", "/api/v1/jobs/pipelines", json=body)

    def daemon_status(self) -> dict[str, Any]:
        """The daemon's watches, projects, queue and jobs by status (``flowd status``)."""
        return self.request("GET", "/api/v1/daemon/status")

    def healthz(self) -> bool:
        try:
            return self.session.get(self.url + "/healthz", timeout=self.timeout_s).ok
        except requests.RequestException:
            return False
