"""Follow jobs' event logs for open streams: one reader per process fans out to every stream.

An open stream first reads its backlog itself (a replay, or what happened before it
connected), then asks the process's hub for what comes next. The hub keeps one Redis
connection blocked in a single XREAD over every followed job, so a thousand open streams
cost one connection and one read per batch of new events, not a thread or a connection
each. A new follower interrupts the blocked read (CLIENT UNBLOCK, from another connection)
so that its job joins the read at once instead of after the block timeout.
Under gunicorn's gevent workers the threads here are greenlets and the blocking calls yield.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable, Iterator

from mes.store.events import Event, EventLog

log = logging.getLogger(__name__)

# Well below the reader connection's socket timeout (mes.services), so a blocked read always
# ends with Redis's own empty answer, never a timeout that costs a reconnect.
BLOCK_MS = 2000


def id_key(event_id: str) -> tuple[int, int]:
    """Order stream ids: "1733072000000-3" as (1733072000000, 3)."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


class Follower:
    """Receive one job's new events from the hub."""

    def __init__(self, job_id: str, after: str):
        self.job_id = job_id
        self.cursor = after
        self.pending: deque[Event] = deque()
        self.wake = threading.Event()

    def take(self, timeout_s: float) -> list[Event]:
        """Return the events that arrived, waiting up to timeout_s for some."""
        if not self.pending:
            self.wake.wait(timeout_s)
        self.wake.clear()
        taken = []
        while self.pending:
            taken.append(self.pending.popleft())
        return taken


class StreamHub:
    """Fan the new events of every followed job out to its followers, from one reader."""

    def __init__(self, reader_log: Callable[[], EventLog], control: EventLog,
                 block_ms: int = BLOCK_MS):
        self._reader_log = reader_log  # builds a log on a connection of its own
        self._control = control
        self._block_ms = block_ms
        self._lock = threading.Lock()
        self._followers: dict[str, list[Follower]] = {}
        self._changed = threading.Event()
        self._reader_id: int | None = None
        self._blocked = False
        self._thread: threading.Thread | None = None

    def follow(self, job_id: str, after: str) -> Follower:
        """Start receiving a job's events after the id `after`."""
        follower = Follower(job_id, after)
        with self._lock:
            self._followers.setdefault(job_id, []).append(follower)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mes-stream-hub",
                                                daemon=True)
                self._thread.start()
            blocked, reader_id = self._blocked, self._reader_id
        self._changed.set()
        if blocked and reader_id is not None:
            try:
                self._control.unblock(reader_id)
            except Exception as exc:  # noqa: BLE001 - the read ends by its timeout anyway
                log.warning("event=stream_unblock_failed error=%s", exc.__class__.__name__)
        return follower

    def leave(self, follower: Follower) -> None:
        """Stop receiving for one follower."""
        with self._lock:
            followers = self._followers.get(follower.job_id, [])
            if follower in followers:
                followers.remove(follower)
            if not followers:
                self._followers.pop(follower.job_id, None)

    def followed(self) -> int:
        """Return how many followers are open."""
        with self._lock:
            return sum(len(followers) for followers in self._followers.values())

    def _positions(self) -> dict[str, str]:
        with self._lock:
            return {job_id: min((f.cursor for f in followers), key=id_key)
                    for job_id, followers in self._followers.items() if followers}

    def _run(self) -> None:
        reader = None
        while True:
            try:
                if reader is None:
                    reader = self._reader_log()
                    self._reader_id = _client_id(reader)
                positions = self._positions()
                if not positions:
                    self._changed.wait(1.0)
                    self._changed.clear()
                    continue
                self._changed.clear()
                with self._lock:
                    self._blocked = True
                # Without a client id nobody can cut the read short: keep it brief instead.
                block_ms = self._block_ms if self._reader_id is not None else 200
                try:
                    found = reader.read_new(positions, block_ms)
                finally:
                    with self._lock:
                        self._blocked = False
                self._deliver(found)
            except Exception as exc:  # noqa: BLE001 - Redis restarting: reconnect, keep serving
                log.warning("event=stream_hub_reconnect error=%s", exc.__class__.__name__)
                reader = None
                self._reader_id = None
                self._changed.wait(0.5)

    def _deliver(self, found: dict[str, list[Event]]) -> None:
        with self._lock:
            for job_id, events in found.items():
                for follower in self._followers.get(job_id, []):
                    fresh = [e for e in events if id_key(e.id) > id_key(follower.cursor)]
                    if fresh:
                        follower.pending.extend(fresh)
                        follower.cursor = fresh[-1].id
                        follower.wake.set()


def _client_id(reader: EventLog) -> int | None:
    try:
        return reader.client_id()
    except Exception as exc:  # noqa: BLE001 - a server without CLIENT ID (a fake): poll briefly
        log.info("event=stream_hub_no_client_id error=%s", exc.__class__.__name__)
        return None


def follow_job(job_id: str, *, after: str | None, log: EventLog, hub: StreamHub,
               heartbeat_s: float, gone: Callable[[], bool] = lambda: False
               ) -> Iterator[Event | None]:
    """Yield a job's events after `after` until its `done` event; None when a heartbeat is due.

    `gone` tells whether the reader went away (checked at least once a second).
    """
    backlog = log.read(job_id, after, count=10_000)
    while backlog:
        for event in backlog:
            yield event
            if event.type == "done":
                return
        after = backlog[-1].id
        backlog = log.read(job_id, after, count=10_000)
    follower = hub.follow(job_id, after or "0-0")
    try:
        quiet_s = 0.0
        while not gone():
            events = follower.take(min(1.0, heartbeat_s))
            if not events:
                quiet_s += min(1.0, heartbeat_s)
                if quiet_s >= heartbeat_s:
                    quiet_s = 0.0
                    yield None
                continue
            quiet_s = 0.0
            for event in events:
                yield event
                if event.type == "done":
                    return
    finally:
        hub.leave(follower)
