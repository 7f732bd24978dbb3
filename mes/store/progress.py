"""Keep an operation's progress beside its record while it runs: a model pull's bytes and lines.

The record itself changes only through the job store's compare-and-set saves, which the run
that owns the job makes at its start and its end; progress in between goes to a key of its
own, so writing it never makes that run's final save stale. Readers of the job (the web's
GET /v1/jobs/{id}) add it to what they show.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from mes.store import names


class ProgressStore:
    """Write and read operations' progress records (JSON, kept as long as jobs)."""

    def __init__(self, redis, ttl_s: int):
        self._redis = redis
        self._ttl_s = ttl_s

    def write(self, job_id: str, progress: dict[str, Any]) -> None:
        """Replace a job's progress record."""
        self._redis.set(names.progress(job_id), json.dumps(progress, separators=(",", ":")),
                        ex=self._ttl_s)

    def read(self, job_id: str) -> dict[str, Any] | None:
        """Return a job's progress record, or None when it has none."""
        raw = self._redis.get(names.progress(job_id))
        return None if raw is None else json.loads(raw)

    def read_many(self, job_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return the progress records of several jobs in one round trip, by job id."""
        ids = list(job_ids)
        if not ids:
            return {}
        values = self._redis.mget([names.progress(job_id) for job_id in ids])
        return {job_id: json.loads(raw) for job_id, raw in zip(ids, values) if raw is not None}
