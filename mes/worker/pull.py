"""Run a model pull: stream the backend's /api/pull and record its progress as it goes.

Ollama sends one line per step: "pulling manifest", then for each layer "pulling <digest>"
with that layer's `total` and `completed` bytes, then "verifying sha256 digest", "writing
manifest" and "success". The operation's progress sums the layers' bytes and keeps the
distinct status lines; it is written on each new status and otherwise at most every
WRITE_EVERY_S, so a fast download does not turn into a stream of Redis writes.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from mes.backends.ollama import OllamaClient
from mes.clock import SystemClock, iso
from mes.jobs import Job
from mes.registry import ModelSpec
from mes.store.progress import ProgressStore

log = logging.getLogger("mes.worker.pull")

WRITE_EVERY_S = 0.5
KEEP_LINES = 20


class PullProgress:
    """Sum a pull's progress lines into bytes done and to do, and write them now and then."""

    def __init__(self, job_id: str, store: ProgressStore | None, clock: SystemClock,
                 write_every_s: float = WRITE_EVERY_S):
        self.job_id = job_id
        self.store = store
        self.clock = clock
        self.write_every_s = write_every_s
        self.status: str | None = None
        self.lines: list[str] = []
        self._layers: dict[str, tuple[int, int]] = {}  # digest -> (total, completed)
        self._next_write = 0.0

    def observe(self, line: dict[str, Any]) -> None:
        """Take one progress line from the backend."""
        digest, total = line.get("digest"), line.get("total")
        if digest and isinstance(total, int):
            completed = line.get("completed")
            self._layers[digest] = (total, completed if isinstance(completed, int) else 0)
        status = line.get("status")
        new_status = bool(status) and status != self.status
        if new_status:
            self.status = status
            self.lines = (self.lines + [status])[-KEEP_LINES:]
        if new_status or self.clock.monotonic() >= self._next_write:
            self.write()

    def snapshot(self) -> dict[str, Any]:
        """Return the progress as the operation shows it."""
        layers = self._layers.values()
        return {"status": self.status,
                "completed": sum(done for _, done in layers) if layers else None,
                "total": sum(total for total, _ in layers) if layers else None,
                "lines": list(self.lines), "updated_at": iso(self.clock.now())}

    def write(self) -> None:
        """Record the progress now; a Redis hiccup only delays it, never fails the pull."""
        self._next_write = self.clock.monotonic() + self.write_every_s
        if self.store is None:
            return
        try:
            self.store.write(self.job_id, self.snapshot())
        except Exception as exc:  # noqa: BLE001 - progress is best-effort, the pull is not
            log.warning("event=pull_progress_not_saved job_id=%s error=%s", self.job_id,
                        exc.__class__.__name__)


def pull_model(job: Job, spec: ModelSpec, backend: OllamaClient, clock: SystemClock,
               should_stop: Callable[[], bool]) -> dict[str, Any]:
    """Pull the job's model on the backend, recording progress; return the job's result.

    A StopCheck (what the runner passes) says where to record progress; a bare callable
    records none.
    """
    progress = PullProgress(job.id, getattr(should_stop, "progress_store", None), clock)
    backend.pull(spec.id, on_progress=progress.observe, should_stop=should_stop)
    progress.write()
    log.info("event=pull_done job_id=%s model=%s queue=%s total=%s", job.id, spec.id,
             spec.queue, progress.snapshot()["total"])
    return {"text": "", "done_reason": None, "pull": progress.snapshot(),
            "usage": {"prompt_tokens": 0, "completion_tokens": 0},
            "timings": {"queue_ms": 0, "load_ms": 0, "prompt_ms": 0, "generate_ms": 0,
                        "total_ms": 0}}
