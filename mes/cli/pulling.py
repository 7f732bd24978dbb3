"""Follow a pull operation to its end, showing its progress on stderr.

At a terminal a rich progress bar shows the bytes and the backend's status line; elsewhere
one line is written per new status, so a log stays short.
"""

from __future__ import annotations

from typing import Any, TextIO

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                           TimeRemainingColumn, TransferSpeedColumn)

POLL_S = 1  # each poll is a one-second long poll: the bar moves about once a second


class PullDisplay:
    """Turn each look at a pull operation into a bar update or a line of text."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", None) and stream.isatty())
        self._last: str | None = None
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> "PullDisplay":
        if self.tty:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=Console(file=self.stream), transient=False)
            self._bar.start()
            self._task = self._bar.add_task("waiting for a worker", total=None)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, operation: dict[str, Any], elapsed_s: float) -> None:
        progress = operation.get("progress") or {}
        status = progress.get("status") or operation.get("status") or "?"
        if operation.get("status") in ("failed", "cancelled", "expired"):
            status = f"{operation['status']}: {(operation.get('error') or {}).get('message')}"
        if self._bar is not None:
            self._bar.update(self._task, description=status, total=progress.get("total"),
                             completed=progress.get("completed") or 0)
        elif status != self._last:
            line = status
            if progress.get("total"):
                line += (f" ({progress.get('completed') or 0}/{progress['total']} bytes)")
            self.stream.write(f"{line} after {elapsed_s:.0f}s\n")
            self.stream.flush()
        self._last = status


def follow_pull(client, operation: dict[str, Any], stderr: TextIO) -> dict[str, Any]:
    """Poll the operation until it is final, showing its progress; return it as it ended."""
    from mes.client import job_wait_budget_s
    with PullDisplay(stderr) as display:
        return client.wait(operation["id"], job_wait_budget_s(operation), poll_s=POLL_S,
                           on_progress=display)
