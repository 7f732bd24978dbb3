"""Stand in for the Celery dispatcher: keep sent jobs in memory, or fail like a broker that is down."""

from __future__ import annotations

from typing import Any, Callable


class RecordingDispatcher:
    """Keep sent jobs (or what `keep` takes of each) in memory instead of publishing them."""

    def __init__(self, keep: Callable[[Any], Any] = lambda job: job):
        self.sent = []
        self.fail = False
        self.keep = keep

    def send(self, job):
        """Record the job, or raise ConnectionError when `fail` is set."""
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append(self.keep(job))
