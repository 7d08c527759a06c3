"""The one exception tree of flowd.

Every error a user can meet is a :class:`FlowdError` carrying the fields the user needs (file, line,
column, path, step) and a message that says what was wrong and, where it helps, what to do.
Control-flow signals (a record stopped at a checkpoint, a filtered record) are *not* errors: they are
statuses on records.
"""

from __future__ import annotations

from dataclasses import dataclass


class FlowdError(Exception):
    """Base of every error flowd raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem in a project file: ``file:line:col: message``."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class CompileError(FlowdError):
    """A project does not compile; ``problems`` lists every located error found."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "compile failed")


class FormulaError(FlowdError):
    """A formula does not parse or names an unknown function or name.

    ``line`` and ``col`` are 1-based positions inside the formula text.
    """

    def __init__(self, message: str, line: int = 1, col: int = 1) -> None:
        super().__init__(message)
        self.line = line
        self.col = col


class FormulaRuntimeError(FlowdError):
    """A formula failed while it was evaluated; the field gets the value ``ERROR``."""


class BinaryError(FlowdError):
    """A ``.ibflowbin`` cannot be loaded: missing, not a zip, truncated, altered or of a wrong version."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(f"{path}: {cause}")
        self.path = path
        self.cause = cause


class DocumentError(FlowdError):
    """An input file cannot be read (corrupt, encrypted, unsupported, empty, …).

    This is a *permanent* failure of that one file: retrying will not help.
    """

    def __init__(self, file: str, cause: str) -> None:
        super().__init__(f"{file}: {cause}")
        self.file = file
        self.cause = cause


class MissingDependencyError(DocumentError):
    """A file needs a system program that is not installed (for example Tesseract for OCR)."""


class StepTimeoutError(FlowdError):
    """A step ran longer than its timeout on one file. Transient: a retry may succeed."""

    def __init__(self, step: str, file: str, timeout_s: float) -> None:
        super().__init__(f"{file}: step {step} timed out after {timeout_s:g} s")
        self.step = step
        self.file = file
        self.timeout_s = timeout_s


class StepError(FlowdError):
    """A step failed on one file (a UDF raised, a module misbehaved)."""

    def __init__(self, step: str, file: str, cause: str) -> None:
        super().__init__(f"{file}: step {step} failed: {cause}")
        self.step = step
        self.file = file
        self.cause = cause


class StepOutputError(FlowdError):
    """A stored step output (``.ibdoc``/``.ibmsg``) exists but cannot be read back."""


class RunSettingsError(FlowdError):
    """The settings of a run are invalid (bad runtime_config, bad output folder, …)."""


class ResumeError(FlowdError):
    """A run folder cannot be resumed (not a flowd run, already complete, binary gone, …)."""


class RunInterrupted(FlowdError):
    """A run was interrupted (Ctrl-C); its folder keeps every finished step and can be resumed."""

    def __init__(self, output_folder: object) -> None:
        super().__init__(
            f"interrupted; finished steps are kept, continue with: flowd run --resume {output_folder}"
        )
        self.output_folder = output_folder


class JobStateError(FlowdError):
    """A job or task cannot make the state change asked of it (HTTP 409).

    Either the transition table does not allow it (``why`` lists what is allowed instead), or the
    state changed underneath the caller — another process or thread won the race.
    ``task_id`` is set when the state is a task's.
    """

    def __init__(
        self,
        job_id: str,
        from_state: str,
        to_state: str,
        why: str,
        task_id: int | None = None,
    ) -> None:
        subject = f"job {job_id}" if task_id is None else f"task {task_id} of job {job_id}"
        super().__init__(f"{subject}: cannot go from {from_state} to {to_state}: {why}")
        self.job_id = job_id
        self.from_state = from_state
        self.to_state = to_state
        self.why = why
        self.task_id = task_id


class JobNotFoundError(FlowdError):
    """No job with this ``job_id`` is in the job store (HTTP 404)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class TaskNotFoundError(FlowdError):
    """No task with this ``task_id`` is in the job store."""

    def __init__(self, task_id: int) -> None:
        super().__init__(f"task {task_id} not found")
        self.task_id = task_id


class DuplicateJobError(FlowdError):
    """A job with this ``job_id`` exists already; job ids are never reused or overwritten."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job_id {job_id!r} is already taken; choose another or omit it")
        self.job_id = job_id


class PipelineNotFoundError(FlowdError):
    """A pipeline id names no pipeline (create it first with the pipeline API)."""

    def __init__(self, pipeline_id: str) -> None:
        super().__init__(f"pipeline {pipeline_id!r} not found; create it first")
        self.pipeline_id = pipeline_id


class JobStoreError(FlowdError):
    """The job store file cannot be used (written by a newer flowd, not a job store, …)."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(f"{path}: {cause}")
        self.path = path
        self.cause = cause


class ConfigError(FlowdError):
    """The daemon's configuration cannot be used.

    ``problems`` holds one line per problem, each starting with where it is — ``file:line:``, the
    dotted key (``[watches][1].settings.priority``) or the ``FLOWD_…`` variable that set it — so
    every mistake can be fixed in one pass instead of one restart per mistake.
    """

    def __init__(self, path: str, problems: list[str] | tuple[str, ...]) -> None:
        self.path = path
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems) or f"{path}: invalid configuration")


class NotificationError(FlowdError):
    """A job's notification settings cannot be used: a ``webhook_config`` without a usable ``url``
    or with headers that are not a JSON object of strings, or a malformed ``notification_emails``.
    Raised when the settings are checked (at submission); a job that ends with them anyway gets its
    notification recorded as not sent, with this message as the reason."""


class PathNotFoundError(FlowdError):
    """A path named in a request does not exist (HTTP 404): ``what`` says which one (the binary,
    the input folder, …)."""

    def __init__(self, what: str, path: str, cause: str = "does not exist") -> None:
        super().__init__(f"{what} {path!r} {cause}")
        self.what = what
        self.path = path


class PathRefusedError(FlowdError):
    """A path named in a request resolves outside the daemon's ``data_root`` and ``allowed_roots``
    (through ``..``, an absolute path, or a symlink), or is otherwise not allowed (HTTP 403)."""

    def __init__(self, what: str, path: str, cause: str) -> None:
        super().__init__(f"{what} {path!r} is refused: {cause}")
        self.what = what
        self.path = path


class RequestError(FlowdError):
    """A request is malformed: a missing or mistyped field, a value out of range (HTTP 400)."""


class ServiceUnavailableError(FlowdError):
    """The daemon cannot take the request now: it is shutting down, or a limit is reached (503)."""
