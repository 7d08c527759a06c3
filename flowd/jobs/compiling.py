"""Running a compile job (SPEC §6: compile jobs are jobs too), with the UDF gate of SPEC §8.

Compiling imports a project's UDF scripts to check them, and importing is running: a ``.py`` that
someone dropped into a folder the API can reach must never become code execution. So a project
with UDF scripts compiles only when its root is one the operator trusts — a ``[[projects]]`` root
or a folder in ``udf_roots`` — and the decision is made from a *plan* of the project, loaded
without executing anything. (A local ``flowd compile`` is the operator's own act and has no gate.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowd.errors import CompileError, FlowdError, Problem
from flowd.flows.compiler import compile_project
from flowd.flows.project import CompileSettings, load_project
from flowd.flows.sources import DirectoryReader
from flowd.jobs.queries import JobRow


@dataclass(frozen=True)
class CompileOutcome:
    """``result`` is the compile job's JSON result: ``{"binary_path", "content_sha256",
    "written"}`` or ``{"problems": [...]}``; ``error`` the one-paragraph failure, if any."""

    ok: bool
    result: dict[str, Any]
    error: str | None = None


def trusted_roots(roots: Sequence[Path]) -> Callable[[Path], bool]:
    """A predicate: is a project root at or under one of ``roots`` (all resolved, symlinks too)?"""
    resolved = [Path(r).resolve() for r in roots]

    def allowed(root: Path) -> bool:
        real = root.resolve()
        return any(real == r or r in real.parents for r in resolved)

    return allowed


def run_compile(job: JobRow, udfs_allowed: Callable[[Path], bool]) -> CompileOutcome:
    """Compile the project a compile job names (its stored settings); never raises for a
    problem of the project — that is the job's failure, reported with every located problem."""
    settings = job.settings
    root = Path(settings["flow_project_root"])
    predefined = settings.get("predefined_binary_path")
    try:
        compile_settings = CompileSettings.from_dict(dict(settings["compile_settings"]))
        plan = load_project(DirectoryReader(root), compile_settings, run_udfs=False)
        if plan.udf_scripts and not udfs_allowed(root):
            raise CompileError(
                [
                    Problem(
                        str(root / plan.udf_scripts[0]),
                        1,
                        1,
                        "this project has UDF scripts ("
                        + ", ".join(plan.udf_scripts)
                        + "); the API compiles UDFs only from a [[projects]] root or a folder in "
                        "udf_roots — add the project there, or compile it with `flowd compile`",
                    )
                ]
            )
        compiled = compile_project(root, compile_settings, Path(predefined) if predefined else None)
    except CompileError as exc:
        problems = [str(p) for p in exc.problems] or [exc.message]
        return CompileOutcome(False, {"problems": problems}, "\n".join(problems))
    except FlowdError as exc:
        return CompileOutcome(False, {"problems": [exc.message]}, exc.message)
    except OSError as exc:
        message = f"{root}: cannot read the project: {exc.strerror or exc}"
        return CompileOutcome(False, {"problems": [message]}, message)
    return CompileOutcome(
        True,
        {
            "binary_path": str(compiled.path),
            "content_sha256": compiled.content_sha256,
            "written": compiled.written,
        },
    )
