"""The HTTP API (SPEC §7): the seed's Flow Binary API plus jobs, pipelines, health and metrics.

Every answer is JSON: ``{"status": "OK", …}`` or, with the right HTTP status, ``{"status":
"ERROR", "msg": "<what and why>"}`` — never a stack trace (an unexpected error is logged with an id
that the message quotes). Status codes: 400 a bad request (unparsable JSON, a bad setting), 401 no
or a wrong token, 403 a path outside the daemon's roots, 404 an unknown job, pipeline or path, 409
a state that does not allow the command or a taken ``job_id``, 413 a body over ``max_request_mb``,
422 a body of the wrong shape (a missing or mistyped field, an unknown key), 503 shutting down.

Authentication and the body limit are plain ASGI middleware (:class:`Gate`), so they cover every
route, the OpenAPI schema included — all but ``GET /healthz``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

import structlog
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowd.api.models import (
    CompileBody,
    JobIdBody,
    JobPipelinesBody,
    PipelineBody,
    RetryBody,
    RunAsyncBody,
    RunSyncBody,
)
from flowd.api.paths import PathPolicy
from flowd.api.status import job_status, job_summary
from flowd.daemon.metrics import CONTENT_TYPE
from flowd.daemon.service import Service
from flowd.daemon.tokens import token_matches
from flowd.engine.context import MB
from flowd.engine.memory_run import MemoryRunSettings
from flowd.engine.output import FileResult, result_rows, rows_to_csv
from flowd.engine.settings import check_runtime_config
from flowd.errors import (
    DuplicateJobError,
    FlowdError,
    JobNotFoundError,
    JobStateError,
    JobStoreError,
    PathNotFoundError,
    PathRefusedError,
    PipelineNotFoundError,
    RequestError,
    ServiceUnavailableError,
)
from flowd.flows.binary import CompiledBinary
from flowd.flows.project import CompileSettings
from flowd.flows.specs import BinaryType
from flowd.jobs.listing import MAX_PAGE
from flowd.jobs.states import JobState
from flowd.jobs.submit import CompileRun, FlowRun
from flowd.notify.messages import email_target, webhook_target

log = structlog.get_logger("flowd.api")

API = "/api/v1"
OPEN_PATHS = frozenset({"/healthz"})
INLINE_DECODE_BYTES = 1 << 20
"""Sync bodies up to this size are decoded on the event loop; bigger ones in a thread."""

_STATUS_OF: tuple[tuple[type[FlowdError], int], ...] = (
    (JobNotFoundError, 404),
    (PipelineNotFoundError, 404),
    (PathNotFoundError, 404),
    (PathRefusedError, 403),
    (JobStateError, 409),
    (DuplicateJobError, 409),
    (ServiceUnavailableError, 503),
    (JobStoreError, 503),
)


def http_status(exc: FlowdError) -> int:
    for kind, status in _STATUS_OF:
        if isinstance(exc, kind):
            return status
    return 400


def error(status: int, msg: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": "ERROR", "msg": msg}, status_code=status, headers=headers)


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON_LIKE = (b"application/json", b"", b"application/x-www-form-urlencoded", b"text/plain")


class Gate:
    """ASGI middleware: bearer-token check, request-body cap, and JSON as the default body type.

    The body is read here (up to the cap) and replayed to the app: a body over the cap is answered
    with 413 as soon as it is known to be too big, from ``Content-Length`` or while streaming. A POST
    without a JSON content type (``requests.post(url, data=json_text)`` sends none, ``curl -d``
    sends form-urlencoded) is read as JSON, as the seed's examples expect.
    """

    def __init__(self, app: ASGIApp, tokens: tuple[str, ...], max_bytes: int) -> None:
        self.app = app
        self.tokens = tokens
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if scope["path"] not in OPEN_PATHS:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token_matches(token.strip(), self.tokens):
                why = "missing bearer token" if not auth else "invalid bearer token"
                await _send(
                    scope,
                    receive,
                    send,
                    error(
                        401,
                        f"{why}: send 'Authorization: Bearer <token>' "
                        "(the token is in the daemon's state_dir/api-token)",
                        {"WWW-Authenticate": "Bearer"},
                    ),
                )
                return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                await _send(scope, receive, send, self._too_large())
                return
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_bytes:
                    await _send(scope, receive, send, self._too_large())
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if kind in _JSON_LIKE:
                scope = dict(scope)
                scope["headers"] = [
                    (k, v) for k, v in scope.get("headers") or [] if k != b"content-type"
                ] + [(b"content-type", b"application/json")]
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)

    def _too_large(self) -> JSONResponse:
        return error(
            413,
            f"request body is larger than the limit of {self.max_bytes / MB:.4g} MB ([api] max_request_mb)",
        )


async def _send(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
    await response(scope, receive, send)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    problems = []
    status = 422
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query")]
        where = ".".join(loc) or "body"
        if err.get("type") == "json_invalid":
            status = 400
            problems.append(
                f"the request body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
            )
            continue
        if where == "body" and err.get("type") == "missing":
            status = 400
            problems.append("the request body is empty: send a JSON object")
            continue
        if err.get("type") in ("model_attributes_type", "dict_type", "model_type"):
            if where == "body":
                status = 400
                problems.append("the request body must be a JSON object")
            else:  # a nested object (settings, options, …) given as something else
                problems.append(f"{where}: must be a JSON object")
            continue
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown key (not part of the API; check its spelling)"
        problems.append(f"{where}: {msg}")
    return status, "; ".join(problems) or "invalid request"


def create_app(service: Service, tokens: tuple[str, ...]) -> FastAPI:
    """The API over ``service``, accepting ``tokens``."""
    config = service.config
    paths = PathPolicy(config.data_root, config.allowed_roots)
    app = FastAPI(
        title="flowd",
        version="1",
        description="The Flow Binary API of flowd (compile, run async/sync, jobs, pipelines).",
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(FlowdError)
    async def _flowd_error(request: Request, exc: FlowdError) -> JSONResponse:
        return error(http_status(exc), exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, msg = _validation_message(exc)
        return error(status, msg)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        msg = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404:
            msg = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            msg = f"{request.method} is not allowed on {request.url.path}"
        return error(exc.status_code, msg)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        ref = secrets.token_hex(4)
        log.exception("api_internal_error", ref=ref, path=request.url.path)
        return error(500, f"internal error (logged as {ref}); the daemon keeps running")

    # -- health and metrics ------------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "OK", "uptime_s": round(time.time() - service.started_at, 3)}

    @app.get(f"{API}/daemon/status")
    def daemon_status() -> dict[str, Any]:
        """flowd: the daemon's watches, projects (last compile) and queue (``flowd status``)."""
        return {"status": "OK", **service.status()}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    # -- compile and run -----------------------------------------------------------------------
    @app.post(f"{API}/flow_binary/compile")
    def compile_binary(body: CompileBody) -> dict[str, Any]:
        root = paths.resolve("flow_project_root", body.flow_project_root)
        predefined = None
        if body.predefined_binary_path:
            raw = body.predefined_binary_path
            predefined = paths.resolve("predefined_binary_path", raw, must_exist=False)
        settings = CompileSettings(
            binary_type=BinaryType(body.binary_type),
            flow_file=body.settings.flow_file,
            flows_dir=body.settings.flows_dir,
            metaflow_file=body.settings.metaflow_file,
            classifier_file=body.settings.classifier_file,
        )
        for key in ("flow_file", "flows_dir", "metaflow_file", "classifier_file"):
            value = getattr(settings, key)
            if value is not None:
                paths.resolve(f"settings/{key}", str(root / value), must_exist=False)
        job = service.submit_compile(CompileRun(root, settings, predefined, body.job_id))
        return {"status": "OK", "job_id": job.job_id}

    @app.post(f"{API}/flow/run_binary_async")
    def run_binary_async(body: RunAsyncBody) -> dict[str, Any]:
        s = body.settings
        binary_path = paths.resolve("binary_path", body.binary_path)
        input_dir = paths.resolve("input_dir", body.input_dir)
        output_dir = (
            paths.resolve("output_dir", body.output_dir, must_exist=False)
            if body.output_dir
            else None
        )
        if output_dir is None:
            paths.resolve(
                "the default output folder (input_dir/../out)",
                str(input_dir.parent / "out"),
                must_exist=False,
            )
        webhook = s.webhook_config.model_dump() if s.webhook_config is not None else None
        if webhook is not None:
            url, _ = webhook_target(webhook)
            if not config.webhooks.allows(url):
                raise RequestError(
                    f"webhook_config.url {url!r}: its host is not in [webhooks] allowed_hosts"
                )
        if s.notification_emails:
            email_target(s.notification_emails)
        job = service.submit_run(
            FlowRun(
                binary_path=binary_path,
                input_dir=input_dir,
                output_dir=output_dir,
                job_id=body.job_id,
                output_has_run_id=s.output_has_run_id,
                delete_out_dir=s.delete_out_dir,
                log_to_timeline=s.log_to_timeline,
                save_binary_to_output=s.save_binary_to_output,
                runtime_config=s.runtime_config,
                step_timeout=s.step_timeout,
                priority=s.priority,
                tags=tuple(s.tags),
                pipeline_ids=tuple(s.pipeline_ids),
                notification_emails=tuple(s.notification_emails),
                webhook_config=webhook,
            )
        )
        return {"status": "OK", "data": {"job_id": job.job_id, "output_folder": job.output_folder}}

    @app.post(f"{API}/flow/run_binary_sync")
    async def run_binary_sync(body: RunSyncBody) -> Response:
        # async: the request waits on the sync worker without holding a thread of the pool, and
        # the answer skips FastAPI's generic encoder (records can be many).
        size = sum(len(f.file_content) for f in body.files)
        if size > INLINE_DECODE_BYTES:
            prepared = await run_in_threadpool(_prepare_sync, body)
        else:
            prepared = _prepare_sync(body)
        binary, documents, settings = prepared
        results = await service.run_sync(binary, documents, settings)
        index_of = {name: i for i, (name, _) in enumerate(documents)}
        out: dict[str, Any] = {
            "status": "OK",
            "binary_path": body.binary_path,
            "job_id": settings.job_id,
        }
        out["files"] = [_file_entry(r, index_of) for r in results]
        if body.options.result_format == "csv":
            out["csv"] = rows_to_csv(result_rows(results))
        else:
            out["records"] = [record for r in results for record in _records(r, index_of)]
        return JSONResponse(out)

    def _prepare_sync(
        body: RunSyncBody,
    ) -> tuple[CompiledBinary, list[tuple[str, bytes]], MemoryRunSettings]:
        binary_path = paths.resolve("binary_path", body.binary_path)
        binary = service.binaries.load(binary_path)
        check_runtime_config(body.options.runtime_config, binary)
        documents: list[tuple[str, bytes]] = []
        for index, f in enumerate(body.files):
            name = f.file_name
            if not name or name.startswith("/") or ".." in name.split("/") or "\0" in name:
                raise RequestError(f"files[{index}].file_name {name!r} is not a plain file name")
            try:
                data = base64.b64decode(f.file_content, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(
                    f"files[{index}].file_content ({name}) is not valid base64"
                ) from None
            documents.append((name, data))
        settings = MemoryRunSettings(
            runtime_config=body.options.runtime_config,
            step_timeout_s=min(service.config.default_step_timeout_s, service.sync.limit_s),
            job_id=str(uuid.uuid4()),
        )
        return binary, documents, settings

    # -- jobs ----------------------------------------------------------------------------------
    @app.get(f"{API}/jobs/status")
    def status(
        job_id: Annotated[str, Query(min_length=1, max_length=200)],
        type: Annotated[
            str | None, Query(description="accepted and ignored: flow, compile, async, job, group")
        ] = None,
    ) -> dict[str, Any]:
        if type is not None and type not in ("flow", "compile", "async", "job", "group"):
            raise RequestError(f"type {type!r} is not one of flow, compile, async, job, group")
        return job_status(service.store, service.store.get_job(job_id))

    @app.get(f"{API}/jobs/list")
    def list_jobs(
        status: str | None = None,
        tag: str | None = None,
        pipeline_id: str | None = None,
        binary_path: str | None = None,
        since: Annotated[
            float | None, Query(description="Unix seconds: jobs created at or after")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        state = None
        if status is not None:
            try:
                state = JobState(status.upper())
            except ValueError:
                raise RequestError(
                    f"status {status!r} is not one of {', '.join(s.value for s in JobState)}"
                ) from None
        if binary_path is not None:
            binary_path = str(paths.resolve("binary_path", binary_path, must_exist=False))
        page = service.store.list_jobs(
            status=state,
            tag=tag,
            pipeline_id=pipeline_id,
            binary_path=binary_path,
            since=since,
            limit=limit,
            offset=offset,
        )
        return {
            "status": "OK",
            "jobs": [job_summary(j) for j in page.jobs],
            "has_more": page.has_more,
            "next_offset": offset + len(page.jobs) if page.has_more else None,
        }

    def _command(job_id: str, row_state: JobState) -> dict[str, Any]:
        return {"status": "OK", "job_id": job_id, "state": str(row_state)}

    @app.post(f"{API}/jobs/pause")
    def pause(body: JobIdBody) -> dict[str, Any]:
        return _command(body.job_id, service.pause(body.job_id).state)

    @app.post(f"{API}/jobs/resume")
    def resume(body: JobIdBody) -> dict[str, Any]:
        return _command(body.job_id, service.resume(body.job_id).state)

    @app.post(f"{API}/jobs/cancel")
    def cancel(body: JobIdBody) -> dict[str, Any]:
        return _command(body.job_id, service.cancel(body.job_id).state)

    @app.post(f"{API}/jobs/retry")
    def retry(body: RetryBody) -> dict[str, Any]:
        job = service.retry(body.job_id, checkpoint_failure=body.retry_type == "checkpoint_failure")
        return _command(body.job_id, job.state)

    # -- pipelines -----------------------------------------------------------------------------
    @app.get(f"{API}/flow/pipeline")
    def pipelines() -> dict[str, Any]:
        rows = service.store.list_pipelines()
        return {
            "status": "OK",
            "pipelines": [
                {"pipeline_id": p.pipeline_id, "name": p.name, "created_at": p.created_at}
                for p in rows
            ],
        }

    @app.post(f"{API}/flow/pipeline")
    def create_pipeline(body: PipelineBody) -> dict[str, Any]:
        row = service.store.create_pipeline(body.name)
        return {"status": "OK", "pipeline_id": row.pipeline_id, "name": row.name}

    @app.post(f"{API}/jobs/pipelines")
    def set_pipelines(body: JobPipelinesBody) -> dict[str, Any]:
        job = service.store.set_pipelines(body.job_id, body.pipeline_ids)
        return {"status": "OK", "job_id": job.job_id, "pipeline_ids": list(job.pipeline_ids)}

    max_bytes = int(config.api.max_request_mb * MB)
    gated: Any = Gate(app, tokens, max_bytes)
    app.state.gated = gated
    return app


def _file_entry(result: FileResult, index_of: dict[str, int]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "file_name": result.file_name,
        "file_index": index_of.get(result.file_name, -1),
        "status": result.status,
    }
    if result.flow is not None:
        entry["flow"] = result.flow
    if result.error:
        entry["msg"] = result.error
    return entry


def _records(result: FileResult, index_of: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    for rec in result.records:
        entry: dict[str, Any] = {
            "output_file_path": None,  # a sync run writes nothing, so there is no .ibdoc file
            "results": [f.to_dict() for f in rec.fields],
            "file_name": result.file_name,
            "file_index": index_of.get(result.file_name, -1),
            "record_index": rec.record_index,
            "status": rec.status.value,
            "class_label": rec.class_label,
        }
        if result.flow is not None:
            entry["flow"] = result.flow
        out.append(entry)
    return out


def gated_app(service: Service, tokens: tuple[str, ...]) -> Any:
    """The ASGI application to serve: the API behind its :class:`Gate`."""
    return create_app(service, tokens).state.gated
