"""Show the API's answers to people: aligned tables and short summaries, drawn with rich.

Scripts get the JSON: a command prints tables only when stdout is a terminal and --json is
not given (`wants_table`), so a pipe or a redirect sees exactly what it always saw.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any, TextIO

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

STATUS_STYLES = {"succeeded": "green", "failed": "red", "cancelled": "yellow",
                 "expired": "yellow", "running": "cyan", "queued": "blue"}


def json_option(*, keep_parents: bool = False) -> argparse.ArgumentParser:
    """Return the parent parser of --json; keep_parents: a sub-command's, leaving its parent's be."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--json", action="store_true",
                        default=argparse.SUPPRESS if keep_parents else False,
                        help="print JSON even at a terminal (it is always JSON in a pipe)")
    return parser


def wants_table(args: argparse.Namespace, stdout: TextIO) -> bool:
    """Tell whether to draw for people: stdout is a terminal and --json was not asked for."""
    isatty = getattr(stdout, "isatty", None)
    return not getattr(args, "json", False) and bool(isatty and isatty())


def show(renderable: Any, stdout: TextIO) -> None:
    """Draw a table or summary on stdout."""
    Console(file=stdout, highlight=False).print(renderable)


def _time(value: Any) -> str:
    return value[:19].replace("T", " ") if isinstance(value, str) else "-"


def _ago(value: Any, now: datetime | None = None) -> str:
    if not isinstance(value, str):
        return "never"
    then = datetime.fromisoformat(value.replace("Z", "+00:00"))
    seconds = int(((now or datetime.now(timezone.utc)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(0, seconds)}s ago"


def _took(job: dict[str, Any]) -> str:
    started, finished = job.get("started_at"), job.get("finished_at")
    if not isinstance(started, str) or not isinstance(finished, str):
        return "-"
    seconds = (datetime.fromisoformat(finished.replace("Z", "+00:00"))
               - datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds()
    return f"{seconds:.1f}s"


def _yes(value: Any) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _status(status: Any) -> Text:
    return Text(str(status), style=STATUS_STYLES.get(str(status), ""))


def models_view(models: list[dict[str, Any]]) -> Group:
    """Return the models as a table, with a word on those the backend lacks."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "FAMILY", "QUEUE", "ON BACKEND", "LOADED", "RUNNING", "QUEUED",
                   "MAX", "KEEP ALIVE", "LAST USED"):
        table.add_column(column, justify="right" if column in ("RUNNING", "QUEUED", "MAX")
                         else "left")
    for model in models:
        available = model.get("available_on_backend")
        table.add_row(model.get("id"), model.get("family"), model.get("queue"),
                      Text(_yes(available), style="red" if available is False else ""),
                      _yes(model.get("loaded")), str(model.get("running", "-")),
                      str(model.get("queued", "-")), str(model.get("max_concurrency", "-")),
                      str(model.get("keep_alive") or "-"), _ago(model.get("last_used_at")))
    missing = [m["id"] for m in models if m.get("available_on_backend") is False]
    parts: list[Any] = [table]
    if missing:
        parts.append(Text(f"\nThe backend lacks {len(missing)} model(s): {', '.join(missing)}. "
                          f"Pull one with `mes models pull ID`.", style="yellow"))
    return Group(*parts)


def status_view(status: dict[str, Any]) -> Group:
    """Return the service status as a few summary lines and a table of queues."""
    backend = status.get("backend") or {}
    breaker = status.get("breaker") or {}
    version = f" {backend['version']}" if backend.get("version") else ""
    lines = [f"redis {status.get('redis')} · backend {backend.get('status')}{version} · "
             f"breaker {breaker.get('state', '?')}"]
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("QUEUE", "FAMILY", "WORKERS", "CONCURRENCY", "INTERACTIVE", "BATCH",
                   "QUEUED", "RUNNING"):
        table.add_column(column, justify="left" if column in ("QUEUE", "FAMILY") else "right")
    for name, queue in (status.get("queues") or {}).items():
        lanes = queue.get("lanes") or {}
        workers = queue.get("workers")
        table.add_row(name, queue.get("family"),
                      Text(str(workers), style="red" if workers == 0 else ""),
                      str(queue.get("concurrency")), str(lanes.get("interactive", "-")),
                      str(lanes.get("batch", "-")), str(queue.get("queued")),
                      str(queue.get("running")))
    loaded = status.get("loaded_models")
    tail = [f"loaded: {', '.join(m['name'] for m in loaded) or 'none'}" if loaded is not None
            else "loaded: unknown (the backend did not answer)"]
    missing = status.get("missing_models")
    if missing:
        tail.append(f"missing on the backend: {', '.join(missing)} (`mes models pull ID`)")
    counters = status.get("counters") or {}
    if counters and "error" not in counters:
        tail.append("jobs: " + ", ".join(f"{name.removeprefix('jobs_')} {value}"
                                         for name, value in sorted(counters.items())))
    return Group(Text("\n".join(lines)), table, Text("\n".join(tail)))


def jobs_view(page: dict[str, Any]) -> Group:
    """Return one page of jobs as a table, with the cursor of the next page."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "KIND", "STATUS", "MODEL", "PRIORITY", "CREATED", "TOOK", "ERROR"):
        table.add_column(column)
    for job in page.get("jobs") or []:
        table.add_row(job.get("id"), job.get("kind", "inference"), _status(job.get("status")),
                      job.get("model"), job.get("priority"), _time(job.get("created_at")),
                      _took(job), (job.get("error") or {}).get("code") or "")
    parts: list[Any] = [table]
    if page.get("next_cursor"):
        parts.append(Text(f"more: --cursor {page['next_cursor']}", style="dim"))
    return Group(*parts)


def job_view(job: dict[str, Any]) -> Group:
    """Return one job as a short summary, then its text (or JSON) when it has a result."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows = [("id", job.get("id")), ("status", _status(job.get("status"))),
            ("model", job.get("model")), ("kind", job.get("kind", "inference")),
            ("priority", job.get("priority")), ("created", _time(job.get("created_at"))),
            ("started", _time(job.get("started_at"))), ("took", _took(job)),
            ("attempts", str(job.get("attempts", "-")))]
    if job.get("queue_position"):
        rows.append(("in queue", f"#{job['queue_position']}"))
    progress = job.get("progress")
    if progress:  # a pull: the backend's last status line and its bytes
        rows.append(("progress", str(progress.get("status")) + (
            f" ({progress.get('completed') or 0}/{progress['total']} bytes)"
            if progress.get("total") else "")))
    error = job.get("error")
    if error:
        rows.append(("error", f"{error.get('code')}: {error.get('message')}"))
    result = job.get("result") or {}
    usage = result.get("usage") or {}
    if usage:
        rows.append(("tokens", f"{usage.get('prompt_tokens')} in, "
                               f"{usage.get('completion_tokens')} out"))
    for name, value in rows:
        grid.add_row(name, value if isinstance(value, Text) else str(value))
    parts: list[Any] = [grid]
    if "json" in result:
        parts.append(Text("\n" + json.dumps(result["json"], indent=2, ensure_ascii=False)))
    elif result.get("text"):
        parts.append(Text("\n" + result["text"]))
    return Group(*parts)


def keys_view(keys: list[dict[str, Any]]) -> Table:
    """Return the stored keys as a table; secrets are never there to show."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "SCOPES", "CREATED", "REVOKED", "HASH"):
        table.add_column(column)
    for key in keys:
        table.add_row(key.get("name"), ",".join(key.get("scopes") or []),
                      _time(key.get("created_at")),
                      Text(_time(key.get("revoked_at")),
                           style="red" if key.get("revoked_at") else ""),
                      key.get("hash_prefix"))
    return table
