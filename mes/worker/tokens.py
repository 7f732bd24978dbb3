"""Send a job's generated text to its event log as it comes, a few tokens to a write.

Policy: the first piece is written at once (it sets the time to first token), then pieces
are gathered and written when FLUSH_S has passed since the last write or FLUSH_PIECES have
gathered, whichever comes first. So a 1,000-token reply costs about 1000 / FLUSH_PIECES
writes from a fast backend and one write per FLUSH_S from a slow one; what is left at the
end rides along with the job's final save. The figures are in docs/benchmarks.md.
"""

from __future__ import annotations

from typing import Callable

from mes.store.events import EventLog, token_command

FLUSH_S = 0.025
FLUSH_PIECES = 16


class TokenWriter:
    """Gather a job's text pieces and append them to its event log in coalesced writes."""

    def __init__(self, log: EventLog, job_id: str, clock: Callable[[], float]):
        self._log = log
        self._job_id = job_id
        self._clock = clock
        self._pending: list[str] = []
        self._last_write: float | None = None
        self.writes = 0

    def __call__(self, piece: str) -> None:
        """Take one piece of generated text."""
        self._pending.append(piece)
        now = self._clock()
        if (self._last_write is None or now - self._last_write >= FLUSH_S
                or len(self._pending) >= FLUSH_PIECES):
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Write what has gathered, if anything."""
        if not self._pending:
            return
        self._log.append_text(self._job_id, "".join(self._pending))
        self._pending.clear()
        self._last_write = self._clock() if now is None else now
        self.writes += 1

    def restart(self, reason: str) -> None:
        """Write what has gathered, then mark a restart: the next text replaces it."""
        self.flush()
        self._log.append_restart(self._job_id, {"reason": reason})
        self._last_write = None  # the new try's first piece is written at once, too

    def rest_commands(self) -> list[tuple]:
        """Return the command that writes what is left, to ride along with the final save."""
        if not self._pending:
            return []
        text = "".join(self._pending)
        self._pending.clear()
        return [token_command(self._job_id, text)]
