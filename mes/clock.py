"""Tell the time, and make job ids that sort by it."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class SystemClock:
    """Read the wall clock; tests pass their own clock with the same two methods."""

    def now(self) -> float:
        """Return seconds since the epoch."""
        return time.time()

    def monotonic(self) -> float:
        """Return seconds on a clock that never goes back, for measuring spans."""
        return time.monotonic()


def iso(ts: float | None) -> str | None:
    """Format epoch seconds as RFC 3339 in UTC with milliseconds."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def new_id(prefix: str, now: float) -> str:
    """Return `<prefix>_<ULID>`: 48 bits of milliseconds then 80 random bits, Crockford base32."""
    value = (int(now * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
