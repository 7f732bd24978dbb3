"""Tell a running job's backend call to stop: at its deadline, or as soon as it is cancelled.

A cancel publishes the job's id (mes.store.jobs.RedisJobStore.request_cancel). One listener
per worker process hears it and keeps the ids of its own running jobs that were cancelled,
so a generating job costs no Redis round trip to watch for a cancel. A message can be missed
while the listener reconnects, so a long job also reads the flag itself, rarely.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from mes.clock import SystemClock
from mes.jobs import Job
from mes.store.jobs import RedisJobStore
from mes.store.channel import listen
from mes.store.names import CANCEL_CHANNEL
from mes.store.progress import ProgressStore

log = logging.getLogger(__name__)

FALLBACK_POLL_S = 5.0


class CancelListener:
    """Hear cancels for the jobs this process runs, from one pub/sub connection."""

    def __init__(self, redis_factory: Callable[[], object]):
        self._redis_factory = redis_factory
        self._lock = threading.Lock()
        self._watched: dict[str, bool] = {}
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()
        self._closed = False

    def watch(self, job_id: str) -> None:
        """Start listening for a job's cancel; subscribes on first use."""
        with self._lock:
            self._watched[job_id] = False
            if self._thread is None or not self._thread.is_alive():
                self._subscribed.clear()
                self._thread = threading.Thread(target=self._listen, name="mes-cancels",
                                                daemon=True)
                self._thread.start()
        # The first job waits for the subscription; a cancel sent before it is read from
        # the flag by the claim script instead.
        self._subscribed.wait(2)

    def unwatch(self, job_id: str) -> None:
        """Stop listening for a job."""
        with self._lock:
            self._watched.pop(job_id, None)

    def cancelled(self, job_id: str) -> bool:
        """Tell whether a cancel was heard for the job."""
        return self._watched.get(job_id, False)

    def close(self) -> None:
        """Stop listening (the thread ends within a second)."""
        self._closed = True

    def _listen(self) -> None:
        listen(self._redis_factory, CANCEL_CHANNEL, on_message=self._heard,
               keep_going=lambda: not self._closed, subscribed=self._subscribed,
               name="cancel_listener")

    def _heard(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._watched:
                self._watched[job_id] = True


class StopCheck:
    """Answer a streaming call's "stop now?" from memory; read the flag only every few seconds."""

    def __init__(self, job: Job, store: RedisJobStore, clock: SystemClock,
                 listener: CancelListener):
        self._job = job
        self._store = store
        self._clock = clock
        self._listener = listener
        self._next_poll = clock.monotonic() + FALLBACK_POLL_S
        self.reason: str | None = None

    @property
    def progress_store(self) -> ProgressStore:
        """Return where the job's operation records its progress while it runs (a pull)."""
        return ProgressStore(self._store.redis, self._store.ttl_s)

    def __call__(self) -> bool:
        if self._clock.now() >= self._job.deadline_at:
            self.reason = "deadline"
            return True
        if self._listener.cancelled(self._job.id):
            self.reason = "cancelled"
            return True
        now = self._clock.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + FALLBACK_POLL_S
            try:
                if self._store.cancel_requested(self._job.id):
                    self.reason = "cancelled"
                    return True
            except Exception as exc:  # noqa: BLE001 - Redis away: keep generating, ask later
                log.warning("event=cancel_poll_failed job_id=%s error=%s", self._job.id,
                            exc.__class__.__name__)
        return False
