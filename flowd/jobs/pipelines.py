"""Pipelines: named groups of jobs that a job list can be filtered by (SPEC §6).

A job is linked to pipelines when it is created (:func:`link_pipelines`, called by
:meth:`~flowd.jobs.store.JobStore.create_job`) or later (:meth:`PipelinesMixin.set_pipelines`).
The link keeps the job's ``created_at`` so that a pipeline's jobs list newest first from an index.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence

from flowd.errors import JobNotFoundError, PipelineNotFoundError
from flowd.jobs.database import Database
from flowd.jobs.queries import JobRow, PipelineRow, read_job


def link_pipelines(
    conn: sqlite3.Connection, job_id: str, pipeline_ids: Sequence[str], created_at: float
) -> None:
    """Link a job to pipelines, in order; :class:`~flowd.errors.PipelineNotFoundError` for an
    unknown one (the caller's transaction then rolls back)."""
    for position, pipeline_id in enumerate(pipeline_ids):
        known = conn.execute(
            "SELECT 1 FROM pipelines WHERE pipeline_id = ?", (pipeline_id,)
        ).fetchone()
        if known is None:
            raise PipelineNotFoundError(pipeline_id)
        conn.execute(
            "INSERT INTO job_pipelines (job_id, pipeline_id, position, created_at) "
            "VALUES (?, ?, ?, ?)",
            (job_id, pipeline_id, position, created_at),
        )


class PipelinesMixin:
    """:class:`~flowd.jobs.store.JobStore`'s pipelines."""

    _db: Database
    _clock: Callable[[], float]

    def create_pipeline(self, name: str, pipeline_id: str | None = None) -> PipelineRow:
        """A new pipeline (``pipeline_id`` a uuid4 unless given; a taken one is a ``ValueError``)."""
        if not name or not isinstance(name, str):
            raise ValueError("a pipeline needs a name")
        pipeline_id = pipeline_id or str(uuid.uuid4())
        now = self._clock()
        with self._db.write() as conn:
            try:
                conn.execute(
                    "INSERT INTO pipelines (pipeline_id, name, created_at) VALUES (?, ?, ?)",
                    (pipeline_id, name, now),
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"pipeline {pipeline_id!r} exists already") from exc
        return PipelineRow(pipeline_id, name, now)

    def list_pipelines(self) -> list[PipelineRow]:
        """Every pipeline, oldest first."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT pipeline_id, name, created_at FROM pipelines "
                "ORDER BY created_at, pipeline_id"
            )
            return [PipelineRow(*r) for r in rows]

    def set_pipelines(self, job_id: str, pipeline_ids: Sequence[str]) -> JobRow:
        """Replace a job's pipelines (an empty list clears them); every id must exist."""
        with self._db.write() as conn:
            row = conn.execute("SELECT created_at FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFoundError(job_id)
            conn.execute("DELETE FROM job_pipelines WHERE job_id = ?", (job_id,))
            link_pipelines(conn, job_id, tuple(dict.fromkeys(pipeline_ids)), row[0])
            return read_job(conn, job_id)
