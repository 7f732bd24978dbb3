"""Call the batch API from MESClient: submit many jobs at once, follow them, read the results."""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

FINAL_BATCH = frozenset({"completed", "cancelled", "expired"})


class BatchCalls:
    """The batch half of MESClient (it needs the client's `_json`, `_request` and clock)."""

    def submit_batch(self, requests: list[dict[str, Any]], *, priority: str = "batch",
                     metadata: dict[str, Any] | None = None,
                     timeout_s: int | None = None,
                     completion_window_s: int | None = None) -> dict[str, Any]:
        """Submit a batch (each request a job body with its custom_id); return it as accepted.

        `timeout_s` bounds each job from the moment a worker is given it; jobs not given to
        one within `completion_window_s` (24 h by default) expire.
        """
        body: dict[str, Any] = {"requests": requests, "priority": priority,
                                "metadata": metadata or {}}
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        if completion_window_s is not None:
            body["completion_window_s"] = completion_window_s
        # A batch is one request: without an answer nobody knows whether it was stored.
        return self._json("POST", "/v1/batches", body=body, idempotent=False)[1]

    def batch(self, batch_id: str) -> dict[str, Any]:
        """Return a batch with its counts."""
        return self._json("GET", f"/v1/batches/{batch_id}", idempotent=True)[1]

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        """Cancel every job of the batch not yet final; return the batch."""
        return self._json("DELETE", f"/v1/batches/{batch_id}", idempotent=True)[1]

    def wait_batch(self, batch_id: str, timeout_s: float = 86400, poll_s: float = 2.0, *,
                   on_progress: Callable[[dict[str, Any]], None] | None = None
                   ) -> dict[str, Any]:
        """Poll a batch until it ends (or timeout_s passes); call on_progress at each poll."""
        deadline = self._monotonic() + timeout_s
        while True:
            current = self.batch(batch_id)
            if on_progress is not None:
                on_progress(current)
            if current["status"] in FINAL_BATCH or self._monotonic() >= deadline:
                return current
            self._sleep(poll_s)

    def iter_batch_results(self, batch_id: str, *, cursor: int = 0, poll_s: float = 2.0,
                           timeout_s: float = 86400) -> Iterator[dict[str, Any]]:
        """Yield every result line of a batch in request order, waiting for jobs still running."""
        deadline = self._monotonic() + timeout_s
        while True:
            response = self._request("GET", f"/v1/batches/{batch_id}/results",
                                     params={"cursor": cursor}, idempotent=True, stream=True)
            total = int(response.headers.get("X-MES-Batch-Total", "0"))
            with response:
                for raw in response.iter_lines(decode_unicode=True):
                    if raw:
                        line = json.loads(raw)
                        cursor = line["index"] + 1
                        yield line
            if cursor >= total or self._monotonic() >= deadline:
                return
            self._sleep(poll_s)  # the next job is not final yet
