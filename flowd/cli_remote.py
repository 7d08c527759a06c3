"""The daemon's commands of the ``flowd`` command line: ``serve``, and the client commands
``submit``, ``sync`` and ``jobs …`` that talk to a running daemon through its API (SPEC §9).

The client commands find the daemon from the same configuration file as ``flowd serve`` (``--config``,
default ``config/flowd.toml``): its URL (from ``state_dir/daemon.json`` while it runs, else
``[api]``) and its token (``state_dir/api-token`` or ``[api] tokens_file``); ``--url`` and
``--token`` override them. Local paths are sent as absolute paths, so they must lie in the
daemon's ``data_root`` or ``allowed_roots``.

Exit codes: 0 done (a waited-for job ``COMPLETE``), 1 the job failed or was cancelled, or the daemon
cannot be reached, 2 the request was refused (a 4xx: the message says why), 3 the job stopped at a
checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Column, Table

from flowd.client import ApiError, FlowdClient, daemon_url
from flowd.daemon.tokens import read_tokens, token_file
from flowd.errors import ConfigError, FlowdError

DEFAULT_CONFIG = Path("config/flowd.toml")
_EXIT_OF_STATUS = {"COMPLETE": 0, "STOPPED_AT_CHECKPOINT": 3}


def _die(message: str, code: int) -> NoReturn:
    click.echo(f"flowd: error: {message}", err=True)
    sys.exit(code)


def _config_problems(exc: ConfigError) -> NoReturn:
    for problem in exc.problems:
        click.echo(problem, err=True)
    sys.exit(2)


def _load(config_path: Path) -> Any:
    """The config (imported here: loading the models costs ~0.2 s a command that has --url)."""
    from flowd.config import load_config

    return load_config(config_path)


def _client(config_path: Path, url: str | None, token: str | None) -> FlowdClient:
    if url and token:
        return FlowdClient(url, token)
    try:
        config = _load(config_path)
        return FlowdClient(url or daemon_url(config), token or read_tokens(token_file(config))[0])
    except ConfigError as exc:
        _config_problems(exc)


def _api_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        _die(exc.message, 2 if 400 <= exc.status < 500 else 1)
    except FlowdError as exc:
        _die(exc.message, 2)
    except OSError as exc:
        _die(str(exc), 2)


def _connection(f: Any) -> Any:
    f = click.option("--token", help="API token (default: the daemon's token file).")(f)
    f = click.option("--url", help="Daemon URL (default: from the config).")(f)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=DEFAULT_CONFIG,
        show_default=True,
        help="The daemon's configuration file.",
    )(f)


@click.command("serve")
@click.option(
    "--config", "config_path", required=True, type=click.Path(path_type=Path), help="TOML file."
)
def serve_cmd(config_path: Path) -> None:
    """Run the daemon: the API, the scheduler and its workers (stop with Ctrl-C or SIGTERM)."""
    from flowd.daemon.serve import serve

    try:
        config = _load(config_path)
        serve(config, config_path)
    except ConfigError as exc:
        _config_problems(exc)
    except FlowdError as exc:
        _die(exc.message, 2)


def _abs(path: Path) -> str:
    return str(path.expanduser().absolute())


@click.command("submit")
@click.argument("binary", type=click.Path(path_type=Path))
@click.argument("input_dir", type=click.Path(path_type=Path))
@click.option("--output-dir", type=click.Path(path_type=Path), help="Default: INPUT_DIR/../out.")
@click.option("--job-id", help="Job id (1-50 of A-Z a-z 0-9 . _ -); default: a uuid.")
@click.option("--output-has-run-id", is_flag=True, help="Write into OUTPUT_DIR/<run_id>/.")
@click.option("--priority", type=click.IntRange(0, 9), default=0, show_default=True)
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--runtime-config", help="A JSON object passed to the flow.")
@click.option("--step-timeout", type=int, default=0, help="Seconds per step; 0 default, -1 none.")
@click.option("--webhook", help="URL notified when the job ends.")
@click.option("--email", "emails", multiple=True, help="Address notified when the job ends.")
@click.option("--wait", is_flag=True, help="Wait for the job to end (progress bar on a terminal).")
@_connection
def submit_cmd(
    binary: Path,
    input_dir: Path,
    output_dir: Path | None,
    job_id: str | None,
    output_has_run_id: bool,
    priority: int,
    tags: tuple[str, ...],
    runtime_config: str | None,
    step_timeout: int,
    webhook: str | None,
    emails: tuple[str, ...],
    wait: bool,
    config_path: Path,
    url: str | None,
    token: str | None,
) -> None:
    """Run BINARY on INPUT_DIR in the daemon; prints the job id (and the output folder)."""
    settings: dict[str, Any] = {
        "output_has_run_id": output_has_run_id,
        "priority": priority,
        "tags": list(tags),
        "step_timeout": step_timeout,
    }
    if runtime_config:
        try:
            settings["runtime_config"] = json.loads(runtime_config)
        except ValueError as exc:
            _die(f"--runtime-config is not valid JSON: {exc}", 2)
    if webhook:
        settings["webhook_config"] = {"url": webhook}
    if emails:
        settings["notification_emails"] = list(emails)
    client = _client(config_path, url, token)
    data = _api_call(
        client.run_async,
        _abs(binary),
        _abs(input_dir),
        output_dir=_abs(output_dir) if output_dir else None,
        job_id=job_id,
        settings=settings,
    )
    click.echo(f"job {data['job_id']} submitted; output: {data['output_folder']}", err=True)
    if not wait:
        click.echo(data["job_id"])
        return
    status = _wait(client, data["job_id"])
    cur = status["cur_status"]
    summary = cur.get("run_summary", {})
    click.echo(
        f"job {data['job_id']}: {cur['status']} ({summary.get('numFiles', 0)} files, "
        f"{summary.get('numFailedFiles', 0)} failed)",
        err=True,
    )
    result = (status.get("results") or [{}])[0]
    if result.get("msg"):
        click.echo(result["msg"], err=True)
    click.echo(data["output_folder"])
    sys.exit(_EXIT_OF_STATUS.get(cur["status"], 1))


def _wait(client: FlowdClient, job_id: str) -> dict[str, Any]:
    console = Console(stderr=True)
    if not console.is_terminal:
        result: dict[str, Any] = _api_call(client.wait, job_id)
        return result
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task(f"job {job_id}", total=1.0)

        def show(status: dict[str, Any]) -> None:
            cur = status["cur_status"]
            progress.update(
                bar, completed=cur.get("curProgress", 0), description=f"{cur['status']:<10}"
            )

        done: dict[str, Any] = _api_call(client.wait, job_id, on_status=show)
        return done


@click.command("sync")
@click.argument("binary", type=click.Path(path_type=Path))
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--format",
    "result_format",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
)
@click.option("--runtime-config", help="A JSON object passed to the flow.")
@_connection
def sync_cmd(
    binary: Path,
    files: tuple[Path, ...],
    result_format: str,
    runtime_config: str | None,
    config_path: Path,
    url: str | None,
    token: str | None,
) -> None:
    """Run up to five FILES in memory on the daemon and print the results (JSON or CSV)."""
    if len(files) > 5:
        _die(f"at most 5 files per sync run, not {len(files)}; use `flowd submit` for a folder", 2)
    config: dict[str, Any] | None = None
    if runtime_config:
        try:
            config = json.loads(runtime_config)
        except ValueError as exc:
            _die(f"--runtime-config is not valid JSON: {exc}", 2)
    client = _client(config_path, url, token)
    answer = _api_call(
        client.run_sync,
        _abs(binary),
        list(files),
        result_format=result_format,
        runtime_config=config,
    )
    for entry in answer.get("files", []):
        if entry.get("msg"):
            click.echo(f"{entry['file_name']}: {entry['status']}: {entry['msg']}", err=True)
    if result_format == "csv":
        click.echo(answer["csv"], nl=False)
    else:
        click.echo(json.dumps(answer["records"], indent=2, ensure_ascii=False))
    failed = any(e.get("status") != "COMPLETE" for e in answer.get("files", []))
    sys.exit(1 if failed else 0)


@click.group("jobs")
def jobs_group() -> None:
    """List and control the daemon's jobs."""


@jobs_group.command("list")
@click.option(
    "--status", help="QUEUED, RUNNING, PAUSED, STOPPED_AT_CHECKPOINT, COMPLETE, FAILED, CANCELLED."
)
@click.option("--tag")
@click.option("--pipeline", "pipeline_id")
@click.option("--binary", "binary_path")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@_connection
def jobs_list_cmd(
    status: str | None,
    tag: str | None,
    pipeline_id: str | None,
    binary_path: str | None,
    limit: int,
    offset: int,
    as_json: bool,
    config_path: Path,
    url: str | None,
    token: str | None,
) -> None:
    """Jobs, newest first."""
    client = _client(config_path, url, token)
    page = _api_call(
        client.jobs,
        status=status,
        tag=tag,
        pipeline_id=pipeline_id,
        binary_path=binary_path,
        limit=limit,
        offset=offset,
    )
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    # Job ids and states are what the other commands take: never cut them (the output column
    # gives way on a narrow terminal), and never cut anything when piped (rich assumes 80 columns).
    whole = [
        Column(key, no_wrap=True, min_width=max((len(j[key]) for j in page["jobs"]), default=0))
        for key in ("job_id", "type", "status")
    ]
    table = Table(*whole, "prio", "tags", "output")
    for job in page["jobs"]:
        table.add_row(
            job["job_id"],
            job["type"],
            job["status"],
            str(job["priority"]),
            ",".join(job["tags"]),
            job["output_folder"] or job["binary_path"] or "",
        )
    console = Console()
    (console if console.is_terminal else Console(width=10_000)).print(table)


@jobs_group.command("status")
@click.argument("job_id")
@_connection
def jobs_status_cmd(job_id: str, config_path: Path, url: str | None, token: str | None) -> None:
    """A job's status (the API's answer, with cur_status parsed)."""
    client = _client(config_path, url, token)
    click.echo(json.dumps(_api_call(client.status, job_id), indent=2))


def _command(action: str) -> click.Command:
    @click.argument("job_id")
    @_connection
    def run(
        job_id: str, config_path: Path, url: str | None, token: str | None, **extra: Any
    ) -> None:
        client = _client(config_path, url, token)
        retry_type = "checkpoint_failure" if extra.get("checkpoint_failure") else None
        answer = _api_call(client.command, action, job_id, retry_type)
        click.echo(f"job {job_id}: {answer['state']}")

    run.__doc__ = {
        "pause": "Pause a job: no new task of it starts.",
        "resume": "Resume a paused job.",
        "cancel": "Cancel a job: running tasks are stopped.",
        "retry": "Re-run a FAILED or CANCELLED job's unfinished files (or continue a checkpoint stop).",
    }[action]
    if action == "retry":
        run = click.option(
            "--checkpoint-failure",
            is_flag=True,
            help="Continue a job STOPPED_AT_CHECKPOINT (after fixing its records).",
        )(run)
    return click.command(action)(run)


for _action in ("pause", "resume", "cancel", "retry"):
    jobs_group.add_command(_command(_action))


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@_connection
def status_cmd(as_json: bool, config_path: Path, url: str | None, token: str | None) -> None:
    """The running daemon: its queue, watches and projects (last compile, errors)."""
    client = _client(config_path, url, token)
    info = _api_call(client.daemon_status)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    running = sum(info["jobs"].get(s, 0) for s in ("QUEUED", "RUNNING", "PAUSED"))
    click.echo(
        f"flowd daemon pid {info['pid']} at {client.url}, up {info['uptime_s']:.0f} s, "
        f"{info['workers']} workers; queue {info['queue_depth']} tasks, "
        f"{info['tasks_running']} running, {running} active jobs"
    )
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    watches = Table("watch", "input_dir", "waiting", "runs", "files", "last run", "last error")
    for w in info["watches"]:
        watches.add_row(
            w["name"],
            w["input_dir"],
            str(w["candidates"] + w["ready"]),
            str(w["runs_started"]),
            str(w["files_taken"]),
            w["last_run_id"] or "-",
            w["last_error"] or "",
        )
    console.print(watches)
    projects = Table("project", "state", "last compile", "binary", "problems")
    for p in info["projects"]:
        when = p.get("last_compile_at")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else "-"
        projects.add_row(
            p["name"],
            p["state"],
            stamp,
            p.get("binary_path") or "",
            "\n".join(p.get("problems") or ()),
        )
    console.print(projects)


COMMANDS = (serve_cmd, submit_cmd, sync_cmd, jobs_group, status_cmd)
