"""Injected faults for tests: failures, hangs, broken streams, bad JSON and refused connections.

Set over HTTP (``POST /mes-engine/faults``) or at startup (``MES_ENGINE_FAULTS``). Keys
(missing keys leave a fault unchanged on update):

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
- ``refuse_s`` (float): close the listening socket now, so new connections are refused,
  and listen again on the same port after that many seconds. Connections already open
  keep working. Reading the faults shows the seconds left; clearing them listens again.
- ``bad_json_next`` (int): the next N generate/chat requests that carry a ``format``
  answer broken JSON of the kind ``bad_json_kind`` says.
- ``bad_json_kind`` (str, default "invalid"): "invalid" (syntactically invalid JSON),
  "fenced" (a valid document in a json code fence with prose around it), "truncated"
  (a document cut off mid-way) or "prose" (plain prose, no JSON at all).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping

_POLL_S = 0.05
BAD_JSON_KINDS = ("invalid", "fenced", "truncated", "prose")
DEFAULTS: dict[str, Any] = {
    "fail_next": 0,
    "fail_status": 500,
    "hang": False,
    "drop_mid_stream": 0,
    "error_mid_stream": 0,
    "load_ms": None,
    "refuse_s": 0.0,
    "bad_json_next": 0,
    "bad_json_kind": "invalid",
}


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{key} must be a non-negative number")
    return float(value)


def _check(key: str, value: Any) -> Any:
    if key == "hang":
        if not isinstance(value, bool):
            raise ValueError("hang must be a boolean")
        return value
    if key == "load_ms":
        return None if value is None else _number(key, value)
    if key == "refuse_s":
        return _number(key, value)
    if key == "bad_json_kind":
        if value not in BAD_JSON_KINDS:
            raise ValueError(f"bad_json_kind must be one of: {', '.join(BAD_JSON_KINDS)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer")
    if key == "fail_status" and not 400 <= value <= 599:
        raise ValueError("fail_status must be between 400 and 599")
    return value


class Faults:
    """Hold the current faults; every method is thread-safe.

    ``on_refuse`` is called (outside the lock) after an update that starts a refusal
    window; the server uses it to close its listening socket before the update returns.
    """

    def __init__(self, initial: Mapping[str, Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._cond = threading.Condition()
        self._clock = clock
        self._state = dict(DEFAULTS)
        self._refuse_until = 0.0
        self.on_refuse: Callable[[], None] | None = None
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
        refuse = checked.pop("refuse_s", None)
        with self._cond:
            self._state.update(checked)
            if refuse is not None:
                self._refuse_until = self._clock() + refuse if refuse > 0 else 0.0
            self._cond.notify_all()
        if refuse and self.on_refuse is not None:
            self.on_refuse()
        return self.snapshot()

    def clear(self) -> dict[str, Any]:
        """Remove every fault, wake hung requests and end a refusal window."""
        with self._cond:
            self._state = dict(DEFAULTS)
            self._refuse_until = 0.0
            self._cond.notify_all()
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """Return the current faults (``refuse_s`` is the time left in the refusal window)."""
        with self._cond:
            return {**self._state, "refuse_s": round(self._refuse_left_locked(), 3)}

    def _refuse_left_locked(self) -> float:
        return max(0.0, self._refuse_until - self._clock())

    @property
    def load_ms(self) -> float | None:
        """Return the load latency override, if any."""
        with self._cond:
            return self._state["load_ms"]

    def refusing(self) -> bool:
        """Return True while a refusal window is open."""
        with self._cond:
            return self._refuse_left_locked() > 0

    def wait_while_refusing(self, should_stop: Callable[[], bool]) -> None:
        """Block until the refusal window ends (or is cleared), or should_stop() turns true."""
        with self._cond:
            while self._refuse_left_locked() > 0 and not should_stop():
                self._cond.wait(min(_POLL_S, self._refuse_left_locked()))

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

    def take_bad_json(self) -> str | None:
        """Consume one `bad_json_next` and return its kind, or None."""
        with self._cond:
            if self._state["bad_json_next"] <= 0:
                return None
            self._state["bad_json_next"] -= 1
            return self._state["bad_json_kind"]

    def wait_while_hung(self, should_stop: Callable[[], bool]) -> bool:
        """Block while `hang` is set; return False if should_stop() turned true first."""
        with self._cond:
            while self._state["hang"]:
                if should_stop():
                    return False
                self._cond.wait(_POLL_S)
            return True
