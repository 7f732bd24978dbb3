"""Announce a live worker on each queue it consumes, from a background thread."""

from __future__ import annotations

import logging
import threading

from mes.store.health import Heartbeats

log = logging.getLogger(__name__)


class WorkerHeartbeat:
    """Refresh the worker's heartbeat on every consumed queue until stopped."""

    def __init__(self, redis, queues: list[str], hostname: str, interval_s: float):
        self._heartbeats = Heartbeats(redis)
        self._queues = queues
        self._hostname = hostname
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Refresh every queue once; three missed beats mark the worker dead."""
        self._heartbeats.beat(self._queues, self._hostname, ttl_s=max(1.0, self._interval_s * 3))

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
        """Stop beating and leave, so /ready sees the worker go at once."""
        self._stop.set()
        try:
            self._heartbeats.leave(self._queues, self._hostname)
        except Exception as exc:  # noqa: BLE001 - its beats expire by themselves
            log.warning("event=heartbeat_leave_failed error=%s", exc.__class__.__name__)
