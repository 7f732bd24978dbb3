"""Accept, describe and cancel batches: many jobs in one request, all or nothing.

Ingest is a bulk operation: every request is checked first (nothing of a refused batch is
stored), the jobs are written in pipelined chunks and held per model, and a release hands
them to the workers as they free up (mes.scheduling.release), never 10,000 broker publishes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from mes.clock import SystemClock, new_id
from mes.errors import Conflict, IdempotencyMismatch, InvalidRequest, MESError, QueueFull
from mes.intake.cancel import cancel_job
from mes.intake.submit import REQUEST_FIELDS, request_timeout
from mes.jobs import RUN_TIMEOUT, WINDOW, Job, JobKind, JobStatus
from mes.registry import ModelRegistry
from mes.store.batches import BatchRecord, BatchStore
from mes.store.jobs import RedisJobStore

MAX_LINE_ERRORS = 50
# How long a batch's jobs may wait for a worker, by default and at most: OpenAI's one
# completion window, and the retention a batch is kept for anyway.
DEFAULT_WINDOW_S = 86400
MAX_WINDOW_S = 7 * 86400
CANCEL_CHUNK = 500
YIELD_EVERY = 100  # lines checked or built between two turns for the process's other requests
# A turn is a sleep this long, not sleep(0): gevent runs a sleep(0) as a callback, and its hub
# runs up to 50 callbacks before it polls sockets or fires timers again, so a loop yielding
# with sleep(0) every 5 ms starved the process's other requests for 250 ms at a time. A timer,
# however short, makes the hub go round its loop (the ingest's 100 turns cost about 10 ms).
YIELD_S = 0.0001


@dataclass(frozen=True)
class BatchRequest:
    """Hold one checked line of a batch: its custom_id, its job body and its kind."""

    custom_id: str
    body: dict[str, Any]
    kind: JobKind = JobKind.INFERENCE


def let_others_run(index: int) -> None:
    """Sleep a moment every YIELD_EVERY lines, so a long ingest does not stall its process.

    The web's gevent workers patch time.sleep: the sleep lets the process's other requests run
    (a client reading its job would otherwise wait for the whole batch); elsewhere it only
    gives up the GIL for a moment.
    """
    if index and index % YIELD_EVERY == 0:
        time.sleep(YIELD_S)


def check_lines(raw_lines: list[Any], registry: ModelRegistry, *,
                parse: Callable[[Any], BatchRequest], max_timeout_s: int) -> list[BatchRequest]:
    """Check every line as a single job would be checked; raise one error naming the bad ones.

    `parse` turns a raw line into a BatchRequest (the door's own validation) or raises a
    MESError saying why not.
    """
    bad: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    lines: list[BatchRequest] = []
    for index, raw in enumerate(raw_lines):
        let_others_run(index)
        custom_id = raw.get("custom_id") if isinstance(raw, dict) else None
        try:
            line = parse(raw)
            custom_id = line.custom_id
            if custom_id in seen:
                raise InvalidRequest(f"custom_id {custom_id!r} is used by line {seen[custom_id]} too")
            seen[custom_id] = index
            request_timeout(line.body, registry.get(line.body["model"]), max_timeout_s)
            lines.append(line)
        except MESError as exc:
            bad.append({"line": index, "custom_id": custom_id, "error": exc.message,
                        **({"fields": exc.details["fields"]} if "fields" in exc.details else {})})
    if bad:
        raise InvalidRequest(f"{len(bad)} of the batch's {len(raw_lines)} requests are invalid; "
                             "nothing was queued", {"lines": bad[:MAX_LINE_ERRORS],
                                                    "invalid": len(bad)})
    return lines


def check_room(lines: list[BatchRequest], store: RedisJobStore, registry: ModelRegistry) -> None:
    """Refuse the batch as a whole if it would push a model past its queue limit."""
    wanted: dict[str, int] = {}
    for line in lines:
        model = registry.get(line.body["model"]).id
        wanted[model] = wanted.get(model, 0) + 1
    counts = store.model_counts(sorted(wanted))
    for model, count in wanted.items():
        spec = registry.get(model)
        queued = counts[model][0]
        if spec.max_queue is not None and queued + count > spec.max_queue:
            raise QueueFull(f"the batch would put {queued + count} jobs in the queue of {model} "
                            f"(limit {spec.max_queue})",
                            {"model": model, "queued": queued, "batch": count,
                             "max_queue": spec.max_queue}, retry_after_s=60)


def submit_batch(lines: list[BatchRequest], *, owner: str, store: RedisJobStore,
                 batches: BatchStore, registry: ModelRegistry, clock: SystemClock,
                 priority: str = "batch", metadata: dict[str, Any] | None = None,
                 max_timeout_s: int, window_s: int = DEFAULT_WINDOW_S,
                 extra: dict[str, Any] | None = None, request_id: str | None = None,
                 batch_id: str | None = None) -> BatchRecord:
    """Store a checked batch and its jobs (held, in request order); return the batch.

    A batch job's deadline is the batch's window until a release hands it to a worker; its
    `timeout_s` then counts from there (HeldQueues.start_clocks), so the last of
    10,000 jobs is not expired for waiting behind the other 9,999.
    """
    if not lines:
        raise InvalidRequest("a batch needs at least one request")
    check_room(lines, store, registry)
    now = clock.now()
    batch_id = batch_id or new_id("batch", now)
    jobs = []
    for index, line in enumerate(lines):
        let_others_run(index)
        spec = registry.get(line.body["model"])
        request = {key: line.body[key] for key in REQUEST_FIELDS
                   if line.body.get(key) is not None}
        request[RUN_TIMEOUT] = request_timeout(line.body, spec, max_timeout_s)
        request[WINDOW] = window_s
        jobs.append(Job(
            id=new_id("job", now), owner=owner, model=spec.id, queue=spec.queue,
            kind=line.kind, status=JobStatus.QUEUED, created_at=now,
            deadline_at=now + window_s, request=request,
            priority=priority, metadata=line.body.get("metadata") or {},
            request_id=request_id, batch_id=batch_id, custom_id=line.custom_id))
    batches.create(batch_id, owner, jobs, created_at=now, priority=priority,
                   metadata=metadata or {}, extra={**(extra or {}), "window_s": window_s},
                   keep_s=int(store.batch_ttl_s + window_s + 3600))
    return batches.get(batch_id)


def idempotent_batch(make: Callable[[str], BatchRecord], *, owner: str, key: str | None,
                     body_hash: str, batches: BatchStore, clock: SystemClock,
                     keep_s: int) -> tuple[BatchRecord, bool]:
    """Make a batch with `make(batch_id)` once per Idempotency-Key; return it and if it is new.

    As for a job: the same key and body give back the first batch, another body is refused.
    The key is bound to the new id before the batch is made, so two requests racing with one
    key make one batch; if making it fails, the key is freed for a retry.
    """
    batch_id = new_id("batch", clock.now())
    if key is None:
        return make(batch_id), True
    binding = f"{body_hash}:{batch_id}"
    bound = batches.bind_key(owner, key, binding, keep_s)
    if bound is not None:
        first_hash, _, first_id = bound.partition(":")
        if first_hash != body_hash:
            raise IdempotencyMismatch("this Idempotency-Key was used with a different body",
                                      {"idempotency_key": key})
        first = batches.get(first_id)
        if first is None:  # bound a moment ago by a request still making it
            raise Conflict("the batch of this Idempotency-Key is still being made; retry",
                           {"idempotency_key": key})
        return first, False
    try:
        return make(batch_id), True
    except BaseException:
        batches.unbind_key(owner, key, binding)
        raise


def cancel_batch(batch: BatchRecord, *, store: RedisJobStore, batches: BatchStore,
                 clock: SystemClock) -> BatchRecord:
    """Cancel every job of the batch that is not final yet; the batch ends as cancelled."""
    if batch.finished_at is not None:
        raise Conflict(f"batch {batch.id} is already {batch.status}", {"status": batch.status})
    batches.request_cancel(batch.id)
    start = 0
    while True:
        ids = batches.job_ids(batch.id, start, CANCEL_CHUNK)
        if not ids:
            break
        live = [job for job in store.get_many(ids) if not job.status.is_final]
        batches.unhold(live)
        for job in live:
            try:
                cancel_job(job, store=store, clock=clock)
            except Conflict:
                pass  # it ended on its own meanwhile
        start += len(ids)
    return batches.get(batch.id) or batch


def batch_view(batch: BatchRecord, now: float) -> dict[str, Any]:
    """Describe a batch for the API: status, counts, times and the time left at the current rate."""
    counts = {"total": batch.total, **batch.counts}
    ended = sum(batch.counts[state] for state in ("succeeded", "failed", "cancelled", "expired"))
    status = batch.status
    if batch.finished_at is None:
        status = ("cancelling" if batch.cancel_requested else
                  "in_progress" if batch.started_at is not None else "queued")
    eta = None
    if batch.finished_at is None and batch.started_at is not None and ended:
        rate = ended / max(1e-6, now - batch.started_at)
        eta = round((batch.total - ended) / rate, 1)
    return {"id": batch.id, "status": status, "request_counts": counts, "models": batch.models,
            "priority": batch.priority, "metadata": batch.metadata,
            "created_at": batch.created_at, "started_at": batch.started_at,
            "finished_at": batch.finished_at, "expires_at": expires_at(batch),
            "estimated_seconds_left": eta}


def expires_at(batch: BatchRecord) -> float | None:
    """Return when the batch's window ends: jobs not handed to a worker by then expire."""
    window_s = batch.extra.get("window_s")
    return None if window_s is None else batch.created_at + window_s
