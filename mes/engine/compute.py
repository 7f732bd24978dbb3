"""Run one Llama instance's decoding on a thread of its own, whichever thread asks.

llama.cpp's CPU backend parallelises each decode with OpenMP, and libgomp keeps a team of
threads for every thread that starts a parallel region, for as long as that thread lives.
The engine's HTTP server serves each connection on a thread of its own, so every keep-alive
connection that had decoded once kept a team; with more teams than cores, libgomp stops
spinning at its barriers and sleeps there instead. SmolLM2-135M, whose tokens are hundreds of
tiny parallel regions, decoded at 30 tokens/s instead of 84 whenever a second connection
stayed open (a MES worker keeps one per slot). One compute thread per instance means one team.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable


class ComputeThread:
    """Run callables one at a time on one long-lived thread and hand back their results."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args = job
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - the caller's own thread re-raises it
                future.set_exception(exc)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call fn(*args) on this thread, wait for it, and return or raise what it did."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future.result()

    def stop(self) -> None:
        """Let the thread end once the calls already asked for are done."""
        self._jobs.put(None)
