"""Generate load: closed loop (N clients) or open loop (a fixed rate), with live progress."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import requests

Call = Callable[[requests.Session], dict]


@dataclass
class Sample:
    """One request: when it started, how long it took, and what it returned."""

    start: float
    latency_s: float
    ok: bool
    info: dict = field(default_factory=dict)


class Progress:
    """Show done/total and the rate on one stderr line, rewritten in place on a terminal."""

    def __init__(self, label: str, total: int | None):
        self.label = label
        self.total = total
        self.done = 0
        self.errors = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def tick(self, ok: bool) -> None:
        """Count one finished request and redraw at most 10 times a second."""
        with self._lock:
            self.done += 1
            self.errors += 0 if ok else 1
            now = time.monotonic()
            if now - self._last >= 0.1 or self.done == self.total:
                self._last = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        total = f"/{self.total}" if self.total else ""
        line = (f"  {self.label}: {self.done}{total} done, {self.errors} errors, "
                f"{self.done / elapsed:.0f}/s, {elapsed:.1f}s")
        if self._tty:
            sys.stderr.write("\r" + line.ljust(78))
        elif self.done == self.total or self.done % 500 == 0:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        """End the progress line."""
        if self._tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def run_load(call: Call, *, label: str, concurrency: int, count: int | None = None,
             duration_s: float | None = None, rate: float | None = None) -> list[Sample]:
    """Run `call` from `concurrency` threads until `count` calls or `duration_s` have passed.

    With `rate`, requests start on a fixed schedule (open loop), so a slow server shows up
    as latency instead of as fewer requests.
    """
    samples: list[Sample] = []
    lock = threading.Lock()
    progress = Progress(label, count)
    started = time.monotonic()
    issued = 0

    def next_slot() -> float | None:
        nonlocal issued
        with lock:
            if count is not None and issued >= count:
                return None
            if duration_s is not None and time.monotonic() - started >= duration_s:
                return None
            slot = started + issued / rate if rate else 0.0
            issued += 1
            return slot

    def client() -> None:
        session = requests.Session()
        while (slot := next_slot()) is not None:
            if rate:
                delay = slot - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            begin = time.monotonic()
            try:
                info = call(session)
                ok = bool(info.pop("ok", True))
            except requests.RequestException as exc:
                info, ok = {"error": exc.__class__.__name__}, False
            sample = Sample(begin, time.monotonic() - begin, ok, info)
            with lock:
                samples.append(sample)
            progress.tick(ok)
        session.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    progress.close()
    return samples
