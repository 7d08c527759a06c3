"""Listing jobs: :meth:`ListingMixin.list_jobs` and the SQL behind it (the job list API).

A page is read in the order of one index that already holds the filter's jobs newest first (see
the indexes in :mod:`flowd.jobs.store`), so a page costs about the same however large the store
grows; :class:`~flowd.jobs.queries.JobCursor` pages cost the same however deep they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowd.jobs.database import Database
from flowd.jobs.queries import JOB_COLUMNS, JobCursor, JobPage, job_row, read_labels
from flowd.jobs.states import JobState

MAX_PAGE = 1000


@dataclass(frozen=True)
class JobFilter:
    status: JobState | None = None
    tag: str | None = None
    pipeline_id: str | None = None
    binary_path: str | None = None
    since: float | None = None  # created at or after (Unix seconds)


def list_jobs_sql(
    f: JobFilter, limit: int, offset: int, after: JobCursor | None
) -> tuple[str, list[Any]]:
    """The SELECT of one page of jobs, newest first (``created_at DESC, job_id DESC``).

    The query is driven by one index that already holds the filter's rows in that order — the
    tag's (``job_tags_by_tag``), the pipeline's, the binary's, the state's, or plain creation
    time — so a page reads about ``offset + limit`` index entries whatever the store's size;
    the other filters are checked on those rows. Fetches ``limit + 1`` rows to tell whether a next
    page exists.
    """
    params: list[Any] = []
    where: list[str] = []
    if f.tag is not None:
        source = "job_tags AS d JOIN jobs AS j ON j.job_id = d.job_id"
        where.append("d.tag = ?")
        params.append(f.tag)
        if f.pipeline_id is not None:
            where.append(
                "EXISTS (SELECT 1 FROM job_pipelines AS p "
                "WHERE p.job_id = j.job_id AND p.pipeline_id = ?)"
            )
            params.append(f.pipeline_id)
    elif f.pipeline_id is not None:
        source = "job_pipelines AS d JOIN jobs AS j ON j.job_id = d.job_id"
        where.append("d.pipeline_id = ?")
        params.append(f.pipeline_id)
    else:
        source = "jobs AS j"
    d = "d" if source != "jobs AS j" else "j"
    if f.binary_path is not None:
        where.append("j.binary_path = ?")
        params.append(f.binary_path)
    if f.status is not None:
        where.append("j.state = ?")
        params.append(str(f.status))
    if f.since is not None:
        where.append(f"{d}.created_at >= ?")
        params.append(f.since)
    if after is not None:
        where.append(f"({d}.created_at, {d}.job_id) < (?, ?)")
        params += [after.created_at, after.job_id]
    sql = f"SELECT {JOB_COLUMNS} FROM {source}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {d}.created_at DESC, {d}.job_id DESC LIMIT ? OFFSET ?"
    params += [limit + 1, offset]
    return sql, params


class ListingMixin:
    """:class:`~flowd.jobs.store.JobStore`'s job list."""

    _db: Database

    def list_jobs(
        self,
        *,
        status: JobState | None = None,
        tag: str | None = None,
        pipeline_id: str | None = None,
        binary_path: str | None = None,
        since: float | None = None,
        limit: int = 50,
        offset: int = 0,
        after: JobCursor | None = None,
    ) -> JobPage:
        """One page of jobs matching every filter given, newest first.

        ``since`` keeps jobs created at or after it. Page with ``offset`` or, cheaper for deep
        pages, with ``after`` = the previous page's ``next_cursor``. ``limit`` is 1–1000.
        """
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise ValueError(f"limit must be 1-{MAX_PAGE} and offset >= 0")
        f = JobFilter(status, tag, pipeline_id, binary_path, since)
        sql, params = list_jobs_sql(f, limit, offset, after)
        with self._db.read() as conn:
            rows = conn.execute(sql, params).fetchall()
            page = rows[:limit]
            tags, pipelines = read_labels(conn, [r["job_id"] for r in page])
        jobs = tuple(
            job_row(r, tags.get(r["job_id"], ()), pipelines.get(r["job_id"], ())) for r in page
        )
        more = len(rows) > limit
        cursor = JobCursor(jobs[-1].created_at, jobs[-1].job_id) if more and jobs else None
        return JobPage(jobs, cursor)
