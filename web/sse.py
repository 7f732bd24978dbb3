"""Write Server-Sent Events: the native event stream's wire format, and nothing else."""

from __future__ import annotations

import json
from typing import Any

HEADERS = {
    "Cache-Control": "no-cache",
    # nginx and some proxies buffer responses unless told not to: tokens must not wait.
    "X-Accel-Buffering": "no",
}


def event(kind: str, data: Any, event_id: str | None = None) -> str:
    """Return one SSE event: its id, its type and its JSON data."""
    head = f"id: {event_id}\n" if event_id else ""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"{head}event: {kind}\ndata: {body}\n\n"


def comment(text: str) -> str:
    """Return an SSE comment line, which clients ignore (a heartbeat)."""
    return f": {text}\n\n"


def retry(ms: int) -> str:
    """Return the field that tells a client how long to wait before reconnecting."""
    return f"retry: {ms}\n\n"
