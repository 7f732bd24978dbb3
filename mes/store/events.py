"""Keep each job's event log in a Redis Stream: its state changes and the text it generates.

The store's save script appends the state changes (status, restart, done) in the same step
as the save. Workers append the text as `token` events, several tokens to an event. The ids
are the stream's own, so reading the log again, during the job or after it, gives the same
events with the same ids, and a reader resumes after any id without gaps or repeats.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mes.store import names

# Events kept per job (trimmed approximately past it). Tokens are coalesced, several to an
# event, so this holds replies far longer than any model's max_tokens.
EVENTS_CAP = 100_000

_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


@dataclass(frozen=True)
class Event:
    """Hold one logged event: its stream id, its type and its data."""

    id: str
    type: str
    data: dict[str, Any]


def valid_id(value: str) -> bool:
    """Tell whether a string is an event id (a stream id such as 1733072000000-0)."""
    return bool(_ID.match(value))


def parse(entries) -> list[Event]:
    """Turn XRANGE/XREAD entries into events."""
    return [Event(entry_id, fields.get("type", ""), json.loads(fields.get("data") or "{}"))
            for entry_id, fields in entries]


def token_command(job_id: str, text: str) -> tuple:
    """Return the command that appends generated text, to run alone or ride along with a save."""
    return ("XADD", names.job_events(job_id), "MAXLEN", "~", EVENTS_CAP, "*", "type", "token",
            "data", json.dumps({"text": text}, ensure_ascii=False, separators=(",", ":")))


class EventLog:
    """Append to and read the jobs' event streams."""

    def __init__(self, redis):
        self._redis = redis

    def append_text(self, job_id: str, text: str) -> None:
        """Append generated text as one token event."""
        self._redis.execute_command(*token_command(job_id, text))

    def append_restart(self, job_id: str, data: dict[str, Any]) -> None:
        """Tell readers to drop the text so far: a new try (a format repair) starts over."""
        self._redis.xadd(names.job_events(job_id), {"type": "restart", "data": json.dumps(data)},
                         maxlen=EVENTS_CAP, approximate=True)

    def read(self, job_id: str, after: str | None = None, count: int = 1000) -> list[Event]:
        """Return up to `count` events after the id `after` (from the start for None)."""
        low = "-" if after is None else f"({after}"
        return parse(self._redis.xrange(names.job_events(job_id), low, "+", count=count))

    def read_new(self, positions: dict[str, str], block_ms: int,
                 count: int = 500) -> dict[str, list[Event]]:
        """Block up to block_ms for events after each job's position; return them per job.

        `positions` maps job ids to the last id seen ("0-0" for none). One call serves
        every job, so one connection serves every open stream of a process.
        """
        if not positions:
            return {}
        streams = {names.job_events(job_id): after for job_id, after in positions.items()}
        replies = self._redis.xread(streams, count=count, block=block_ms) or []
        prefix, suffix = names.job_events("|").split("|")
        found = {}
        for key, entries in replies:
            key = key.decode() if isinstance(key, bytes) else key
            found[key[len(prefix):len(key) - len(suffix)]] = parse(entries)
        return found

    def client_id(self) -> int:
        """Return this connection's client id, so another connection can unblock its reads."""
        return int(self._redis.client_id())

    def unblock(self, client_id: int) -> None:
        """End another connection's blocking read now (it returns as if it timed out)."""
        self._redis.client_unblock(client_id)
