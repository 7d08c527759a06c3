"""Drive a run's tasks through barriers until each is done, failed, or stopped at a checkpoint.

This loop is shared by ``flowd run`` (with a worker pool) and in-memory runs (inline). Rounds:
advance every task to its end or next barrier; then, if any record failed a checkpoint, stop (the
run is ``STOPPED_AT_CHECKPOINT``); else release tasks held at checkpoints and run reduce UDFs whose
records have all arrived, and go on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from flowd.engine.executor import Advance, Call, Executor, Reduce
from flowd.engine.pipeline import Task, TaskProgress, TaskState

ProgressHook = Callable[[TaskProgress], None]


def drive(
    tasks: list[Task],
    executor: Executor,
    *,
    fresh: bool,
    on_progress: ProgressHook | None = None,
) -> dict[str, TaskProgress]:
    """Run ``tasks`` on ``executor``; return the last progress of every task by key."""
    latest: dict[str, TaskProgress] = {}
    calls: list[Call] = [Advance(t, fresh=fresh) for t in tasks]
    first_round = True
    while calls:
        reduced: list[Task] = []
        for call, progresses in executor.run(calls):
            if isinstance(call, Reduce) and not progresses:
                reduced.extend(call.tasks)  # stored; they go on in the next round
            for p in progresses:
                latest[p.task.key] = p
                if on_progress is not None and (first_round or p.state is not TaskState.CHECKPOINT):
                    on_progress(p)
        first_round = False
        calls = [Advance(t, fresh=False) for t in reduced] if reduced else _next_calls(latest)
    return latest


def _next_calls(latest: dict[str, TaskProgress]) -> list[Call]:
    held = [p for p in latest.values() if p.state is TaskState.CHECKPOINT]
    if any(p.checkpoint_failed for p in held):
        return []  # the run stops at the checkpoint for review
    calls: list[Call] = [Advance(p.task, fresh=False, release=True) for p in held]
    if calls:
        return calls
    groups: dict[tuple[str | None, str | None, int], list[Task]] = defaultdict(list)
    for p in latest.values():
        if p.state is TaskState.REDUCE:
            groups[(p.task.flow, p.route, p.position)].append(p.task)
    return [
        Reduce(tuple(ts), pos, route)
        for (_flow, route, pos), ts in sorted(
            groups.items(), key=lambda kv: (kv[0][2], str(kv[0][0]), str(kv[0][1]))
        )
    ]
