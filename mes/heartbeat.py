"""Announce live workers per family in Redis, and count them for /ready."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


def heartbeat_key(queue: str, hostname: str) -> str:
    """Return the key a worker refreshes while it consumes a queue."""
    return f"mes:worker:{queue}:{hostname}"


class WorkerHeartbeat:
    """Refresh a short-lived key per consumed queue from a background thread."""

    def __init__(self, redis, queues: list[str], hostname: str, interval_s: float):
        self._redis = redis
        self._keys = [heartbeat_key(queue, hostname) for queue in queues]
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Refresh every key once; three missed beats mark the worker dead."""
        ttl = max(1, int(self._interval_s * 3))
        pipe = self._redis.pipeline(transaction=False)
        for key in self._keys:
            pipe.set(key, "1", ex=ttl)
        pipe.execute()

    def start(self) -> None:
        """Beat now, then every interval until stopped."""
        self._thread = threading.Thread(target=self._run, name="mes-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - Redis may be restarting; keep beating
                log.warning("event=heartbeat_failed error=%s", exc.__class__.__name__)
            self._stop.wait(self._interval_s)

    def stop(self) -> None:
        """Stop beating and remove the keys, so /ready sees the worker leave at once."""
        self._stop.set()
        try:
            self._redis.delete(*self._keys)
        except Exception:  # noqa: BLE001
            pass


def count_workers(redis, queues: list[str]) -> dict[str, int]:
    """Return how many live workers consume each queue."""
    return {queue: sum(1 for _ in redis.scan_iter(match=heartbeat_key(queue, "*"), count=100))
            for queue in queues}
