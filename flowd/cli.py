"""The ``flowd`` command line (SPEC §9).

Exit codes: 0 success (run COMPLETE), 1 failure (compile errors, run FAILED), 2 usage errors and
anything wrong before a run starts (bad binary, bad settings), 3 run STOPPED_AT_CHECKPOINT,
130 interrupted (Ctrl-C; the run can be resumed).
Errors are one clear line on stderr, never a traceback. The last line on stdout is the thing made:
the binary's path (compile) or the output folder (run).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import click
import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from flowd import __version__
from flowd.engine.pipeline import TaskProgress, TaskState
from flowd.engine.resume import resume_run
from flowd.engine.run import start_run
from flowd.engine.settings import RunOutcome, RunSettings
from flowd.errors import CompileError, ConfigError, FlowdError, Problem, RunInterrupted
from flowd.flows.binary import load_binary
from flowd.flows.compiler import compile_project, find_single_flow
from flowd.flows.project import CompileSettings
from flowd.flows.specs import BinaryType
from flowd.logging import configure

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CHECKPOINT = 3
EXIT_INTERRUPTED = 130

log = structlog.get_logger("flowd.cli")


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"flowd: error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowd")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
)
@click.option("--log-level", default="warning", show_default=True)
def main(log_format: str, log_level: str) -> None:
    """flowd: compile document flows into binaries and run them on folders of documents."""
    configure(log_format, log_level)  # type: ignore[arg-type]


@main.command("compile")
@click.argument("root", type=click.Path(path_type=Path))
@click.option(
    "--binary-type",
    type=click.Choice([t.value for t in BinaryType]),
    default=BinaryType.SINGLE_FLOW.value,
    show_default=True,
)
@click.option(
    "--flow-file", help="Single Flow: the .ibflow to compile (default: the only one in ROOT)."
)
@click.option("--flows-dir", help="Metaflow/Flows: folder of the flows.")
@click.option("--metaflow-file", help="Metaflow: the .ibmetaflow file.")
@click.option("--classifier-file", help="Metaflow: the .ibclassifier file.")
@click.option("--output", type=click.Path(path_type=Path), help="Binary path or folder.")
def compile_cmd(
    root: Path,
    binary_type: str,
    flow_file: str | None,
    flows_dir: str | None,
    metaflow_file: str | None,
    classifier_file: str | None,
    output: Path | None,
) -> None:
    """Compile the flow project in ROOT into a .ibflowbin."""
    kind = BinaryType(binary_type)
    try:
        if not root.is_dir():
            raise CompileError([Problem(str(root), 1, 1, "flow_project_root is not a folder")])
        if kind is BinaryType.SINGLE_FLOW and not flow_file:
            flow_file = find_single_flow(root)
        settings = CompileSettings(kind, flow_file, flows_dir, metaflow_file, classifier_file)
        result = compile_project(root, settings, output)
    except CompileError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_FAILED)
    log.info("compiled", binary=str(result.path), written=result.written)
    click.echo(str(result.path))


@main.command("inspect")
@click.argument("binary", type=click.Path(path_type=Path))
def inspect_cmd(binary: Path) -> None:
    """Print a binary's manifest as JSON (after verifying it)."""
    try:
        loaded = load_binary(binary)
    except FlowdError as exc:
        _fail(str(exc))
        return
    click.echo(json.dumps(loaded.manifest, indent=2, sort_keys=True))


@main.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
def init_cmd(directory: Path) -> None:
    """Write a new working invoice project into DIRECTORY (which must be empty or absent)."""
    if directory.exists() and any(directory.iterdir()):
        _fail(f"{directory} is not empty; choose a new folder")
    template = resources.files("flowd") / "templates" / "invoice"
    with resources.as_file(template) as source:
        shutil.copytree(source, directory, dirs_exist_ok=True)
    click.echo(f"created a project in {directory}: flowd compile {directory}", err=True)
    click.echo(str(directory))


class _Progress:
    """A rich progress bar on a terminal; nothing otherwise."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    @contextmanager
    def running(self) -> Iterator[_Progress]:
        try:
            yield self
        finally:
            if self._bar is not None:
                self._bar.stop()

    def start(self, total: int) -> None:
        if not self.enabled:
            return
        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
            console=Console(stderr=True),  # stdout carries only the output folder
        )
        self._bar.start()  # after the worker pool forked: the bar's thread stays in the parent
        self._task = self._bar.add_task("files", total=total)

    def advance(self, p: TaskProgress) -> None:
        if self._bar is not None and p.state is not TaskState.REDUCE:
            self._bar.advance(self._task)


def _report(outcome: RunOutcome) -> None:
    s = outcome.summary
    click.echo(
        f"{outcome.status}: {s['numCompleteFiles']} complete, {s['numFailedFiles']} failed, "
        f"{s['numStoppedAtCheckpoint']} stopped at checkpoint; {s['numRecords']} records",
        err=True,
    )
    for fr in outcome.files:
        if fr.status == "FAILED" and fr.error:
            click.echo(f"  failed: {fr.error}", err=True)
    click.echo(str(outcome.output_folder))
    sys.exit(outcome.exit_code)


@main.command("run")
@click.argument("binary", type=click.Path(path_type=Path), required=False)
@click.argument("input_dir", type=click.Path(path_type=Path), required=False)
@click.option("--output-dir", type=click.Path(path_type=Path), help="Default: INPUT_DIR/../out")
@click.option("--output-has-run-id", is_flag=True, help="Write into OUTPUT_DIR/<run_id>/.")
@click.option("--delete-out-dir", is_flag=True, help="Empty OUTPUT_DIR first (not with run ids).")
@click.option("--runtime-config", "runtime_config", help="JSON object handed to the flow.")
@click.option(
    "--log-to-timeline", is_flag=True, help="Write step and UDF logs to logs/timeline.jsonl."
)
@click.option("--no-save-binary", is_flag=True, help="Do not copy the binary into the output.")
@click.option(
    "--step-timeout",
    type=float,
    default=0,
    show_default=True,
    help="Seconds per step and file; 0 = the default (300 s), -1 = none.",
)
@click.option("--max-file-mb", type=float, default=50, show_default=True)
@click.option("--job-id", help="≤ 50 characters of A-Z a-z 0-9 . _ -")
@click.option(
    "--workers", type=click.IntRange(min=0), default=0, help="Worker processes; 0 = one per CPU."
)
@click.option(
    "--resume",
    "resume",
    type=click.Path(path_type=Path),
    help="Continue the run in this output folder.",
)
def run_cmd(
    binary: Path | None,
    input_dir: Path | None,
    output_dir: Path | None,
    output_has_run_id: bool,
    delete_out_dir: bool,
    runtime_config: str | None,
    log_to_timeline: bool,
    no_save_binary: bool,
    step_timeout: float,
    max_file_mb: float,
    job_id: str | None,
    workers: int,
    resume: Path | None,
) -> None:
    """Run BINARY over the files in INPUT_DIR (or --resume a run)."""
    progress = _Progress()
    try:
        if resume is not None:
            if binary is not None or input_dir is not None:
                _fail("--resume takes no BINARY or INPUT_DIR")
            with progress.running():
                outcome = resume_run(
                    resume, workers=workers, on_start=progress.start, on_progress=progress.advance
                )
            _report(outcome)
            return
        if binary is None or input_dir is None:
            _fail("BINARY and INPUT_DIR are required (or --resume OUTPUT_FOLDER)")
            return
        config: Any = {}
        if runtime_config:
            try:
                config = json.loads(runtime_config)
            except ValueError as exc:
                _fail(f"--runtime-config is not valid JSON: {exc}")
        if max_file_mb <= 0:
            _fail("--max-file-mb must be positive")
        settings = RunSettings(
            output_dir=output_dir,
            output_has_run_id=output_has_run_id,
            delete_out_dir=delete_out_dir,
            log_to_timeline=log_to_timeline,
            save_binary_to_output=not no_save_binary,
            runtime_config=config,
            step_timeout_s=_timeout(step_timeout),
            max_file_mb=max_file_mb,
            job_id=job_id,
            workers=workers,
        )
        with progress.running():
            outcome = start_run(
                binary, input_dir, settings, on_start=progress.start, on_progress=progress.advance
            )
    except RunInterrupted as exc:
        _fail(str(exc), EXIT_INTERRUPTED)
        return
    except FlowdError as exc:
        _fail(str(exc))
        return
    _report(outcome)


@main.group("config")
def config_group() -> None:
    """The daemon's configuration file."""


@config_group.command("check")
@click.option(
    "--config", "config_path", required=True, type=click.Path(path_type=Path), help="TOML file."
)
def config_check_cmd(config_path: Path) -> None:
    """Validate a configuration file (and FLOWD_ variables) without starting anything."""
    try:
        from flowd.config import load_config  # pydantic-settings: only this command needs it

        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_USAGE)
    click.echo(
        f"{config_path}: ok ({len(config.projects)} projects, {len(config.watches)} watches, "
        f"API on {config.api.host}:{config.api.port})"
    )


DEFAULT_STEP_TIMEOUT_S = 300.0


def _timeout(value: float) -> float | None:
    if value == 0:
        return DEFAULT_STEP_TIMEOUT_S
    if value < 0:
        if value != -1:
            _fail("--step-timeout must be positive, 0 (default) or -1 (none)")
        return None
    return value


def _add_remote_commands() -> None:
    from flowd.cli_remote import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_add_remote_commands()

if __name__ == "__main__":
    main()
