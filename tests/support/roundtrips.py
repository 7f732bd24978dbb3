"""Count the Redis round trips a piece of code makes, by wrapping the client it is given."""

from __future__ import annotations

import threading

import fakeredis
from redis.client import Pipeline


class CountingPipeline(Pipeline):
    """Count one round trip per execute, as a pipeline sends all its commands at once."""

    def execute(self, raise_on_error: bool = True):
        if self.command_stack:
            self._counter.record("PIPELINE[" + ",".join(
                str(args[0]) for args, _ in self.command_stack) + "]")
        return super().execute(raise_on_error)


class CountingRedis(fakeredis.FakeRedis):
    """A fakeredis client that records each round trip made from the counting thread."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []
        self.thread: int | None = None

    def record(self, name: str) -> None:
        """Remember a round trip if it came from the thread being counted."""
        if self.thread is None or threading.get_ident() == self.thread:
            self.calls.append(name)

    def execute_command(self, *args, **options):
        self.record(str(args[0]))
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint=None):
        pipe = CountingPipeline(self.connection_pool, self.response_callbacks, transaction,
                                shard_hint)
        pipe._counter = self
        return pipe

    def count_from_here(self) -> None:
        """Forget what was counted, and count only this thread's round trips from now on."""
        self.calls = []
        self.thread = threading.get_ident()
