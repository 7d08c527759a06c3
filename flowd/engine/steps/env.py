"""The per-task environment a step runs in."""

from __future__ import annotations

from dataclasses import dataclass

from flowd.engine.context import RunContext, Timeline
from flowd.engine.document import Document


@dataclass(frozen=True)
class StepEnv:
    """One task's view of its run: the context, its document and where its outputs go."""

    ctx: RunContext
    timeline: Timeline
    file_name: str  # the task's input path relative to the input folder (display form)
    document: Document | None
    input_filepath: str | None
    step_folder: str | None  # absolute folder of the running step's outputs, None in memory
