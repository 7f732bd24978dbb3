"""Renew every lease a process holds from one background thread.

A thread per running job (lease, model slot) costs a start and a join on the hot path;
one thread per process that renews whatever is registered costs neither.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Renewer:
    """Call each registered renew function every `interval_s`, until it is removed."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._items: dict[int, Callable[[], bool]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def add(self, renew: Callable[[], bool]) -> int:
        """Register a renew function (it returns False once there is nothing left to renew)."""
        with self._lock:
            handle = next(self._ids)
            self._items[handle] = renew
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mes-renewer", daemon=True)
                self._thread.start()
        return handle

    def remove(self, handle: int) -> None:
        """Stop renewing one item."""
        with self._lock:
            self._items.pop(handle, None)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            with self._lock:
                items = list(self._items.items())
            for handle, renew in items:
                try:
                    if not renew():
                        self.remove(handle)
                except Exception as exc:  # noqa: BLE001 - Redis may be restarting; next round
                    log.warning("event=renew_failed error=%s", exc.__class__.__name__)
