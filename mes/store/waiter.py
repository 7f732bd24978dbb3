"""Wait for jobs to become final without polling: one pub/sub listener per process."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from mes.jobs import Job
from mes.store.channel import listen
from mes.store.jobs import FINAL_CHANNEL, RedisJobStore

log = logging.getLogger(__name__)


class FinalWaiter:
    """Block callers until a job is final, woken by the store's final-state messages.

    One subscriber connection serves every waiter in the process, so 200 waiting clients
    cost 200 cheap events (greenlets under gevent), not 200 Redis connections.
    """

    def __init__(self, store: RedisJobStore, redis_factory: Callable[[], object]):
        self._store = store
        self._redis_factory = redis_factory
        self._lock = threading.Lock()
        self._events: dict[str, list[threading.Event]] = {}
        self._listener: threading.Thread | None = None
        self._subscribed = threading.Event()
        self._stopping = False

    def wait(self, job_id: str, timeout_s: float,
             check: Callable[[Job | None], object] | None = None) -> Job | None:
        """Return the job once it is final, or as it stands when the timeout runs out.

        `check` sees the first read (and may raise, say NotFound), so a caller that must
        look at the job before waiting on it needs no read of its own.
        """
        if timeout_s <= 0:
            job = self._store.get(job_id)
            if check is not None:
                check(job)
            return job
        deadline = time.monotonic() + timeout_s
        event = threading.Event()
        self._register(job_id, event)
        try:
            while True:
                # Read after subscribing: the job may have finished in between.
                job = self._store.get(job_id)
                if check is not None:
                    check(job)
                    check = None
                remaining = deadline - time.monotonic()
                if job is None or job.status.is_final or remaining <= 0:
                    return job
                if not event.wait(remaining):
                    return job  # nothing was published: the job is as last read
                event.clear()
        finally:
            self._unregister(job_id, event)

    def _register(self, job_id: str, event: threading.Event) -> None:
        with self._lock:
            self._events.setdefault(job_id, []).append(event)
            if self._listener is None or not self._listener.is_alive():
                self._subscribed.clear()
                self._listener = threading.Thread(target=self._listen, name="mes-final-waiter",
                                                  daemon=True)
                self._listener.start()
        # A message published before SUBSCRIBE completes would be missed; the re-read in
        # wait() covers that gap, so a short bound here is enough.
        self._subscribed.wait(5)

    def _unregister(self, job_id: str, event: threading.Event) -> None:
        with self._lock:
            waiters = self._events.get(job_id, [])
            if event in waiters:
                waiters.remove(event)
            if not waiters:
                self._events.pop(job_id, None)

    def _wake(self, job_id: str) -> None:
        with self._lock:
            for event in self._events.get(job_id, []):
                event.set()

    def _wake_all(self) -> None:
        with self._lock:
            for waiters in self._events.values():
                for event in waiters:
                    event.set()

    def _listen(self) -> None:
        listen(self._redis_factory, FINAL_CHANNEL, on_message=self._wake,
               keep_going=self._keep_going, subscribed=self._subscribed,
               # Waiters re-read the store when woken, so waking them early is safe.
               on_reconnect=self._wake_all, name="waiter")

    def _keep_going(self) -> bool:
        if self._stopping:
            return False
        with self._lock:
            if not self._events:
                # Cleared under the lock, so the next waiter starts a new listener.
                self._listener = None
                return False
        return True

    def close(self) -> None:
        """Stop the listener thread."""
        self._stopping = True
