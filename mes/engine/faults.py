"""Injected faults for tests: failures, hangs and broken streams, set over HTTP or at startup.

Keys (missing keys leave a fault unchanged on update):

- ``fail_next`` (int): the next N generate/chat requests answer ``fail_status`` with
  ``{"error": "simulated failure"}`` before touching the scheduler.
- ``fail_status`` (int, default 500): the status used by ``fail_next``.
- ``hang`` (bool): generate/chat requests block without answering (holding their slot)
  until the fault is cleared or the client disconnects.
- ``drop_mid_stream`` (int): the next N generations close the TCP connection after a few
  tokens (non-streaming ones close it without any response).
- ``error_mid_stream`` (int): the next N generations send an in-band
  ``{"error": "simulated mid-stream failure"}`` line after a few tokens (non-streaming
  ones answer 500 with that body).
- ``load_ms`` (float or null): overrides every model's load latency; null removes it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

_POLL_S = 0.05
DEFAULTS: dict[str, Any] = {
    "fail_next": 0,
    "fail_status": 500,
    "hang": False,
    "drop_mid_stream": 0,
    "error_mid_stream": 0,
    "load_ms": None,
}


def _check(key: str, value: Any) -> Any:
    if key == "hang":
        if not isinstance(value, bool):
            raise ValueError("hang must be a boolean")
        return value
    if key == "load_ms":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError("load_ms must be a non-negative number or null")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer")
    if key == "fail_status" and not 400 <= value <= 599:
        raise ValueError("fail_status must be between 400 and 599")
    return value


class Faults:
    """Hold the current faults; every method is thread-safe."""

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        self._cond = threading.Condition()
        self._state = dict(DEFAULTS)
        if initial:
            self.update(initial)

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply CHANGES (validated all-or-nothing) and return the new state; raises ValueError."""
        if not isinstance(changes, Mapping):
            raise ValueError("faults must be a JSON object")
        unknown = sorted(set(changes) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
        checked = {key: _check(key, value) for key, value in changes.items()}
        with self._cond:
            self._state.update(checked)
            self._cond.notify_all()
            return dict(self._state)

    def clear(self) -> dict[str, Any]:
        """Remove every fault and wake hung requests."""
        with self._cond:
            self._state = dict(DEFAULTS)
            self._cond.notify_all()
            return dict(self._state)

    def snapshot(self) -> dict[str, Any]:
        """Return the current faults."""
        with self._cond:
            return dict(self._state)

    @property
    def load_ms(self) -> float | None:
        """Return the load latency override, if any."""
        with self._cond:
            return self._state["load_ms"]

    def take_failure(self) -> int | None:
        """Consume one `fail_next` and return the status to answer with, or None."""
        with self._cond:
            if self._state["fail_next"] <= 0:
                return None
            self._state["fail_next"] -= 1
            return self._state["fail_status"]

    def take_mid_stream(self) -> str | None:
        """Consume one mid-stream fault: "drop", "error" or None (drop wins when both are set)."""
        with self._cond:
            for key, kind in (("drop_mid_stream", "drop"), ("error_mid_stream", "error")):
                if self._state[key] > 0:
                    self._state[key] -= 1
                    return kind
            return None

    def wait_while_hung(self, should_stop: Callable[[], bool]) -> bool:
        """Block while `hang` is set; return False if should_stop() turned true first."""
        with self._cond:
            while self._state["hang"]:
                if should_stop():
                    return False
                self._cond.wait(_POLL_S)
            return True
