"""Serve OpenAI's Batches API at /openai/v1/batches: each batch is a native MES batch.

POST /batches reads the uploaded input file and checks every line (batches_input.py): a bad
file makes a batch with status `failed` and its `errors`, and nothing is queued; a good one is
submitted with mes.intake.batches.submit_batch, its jobs held in MES and released as workers
free up, like any batch. Cancel is mes.intake.batches.cancel_batch.
"""

from __future__ import annotations

from flask import Blueprint, g, request

from mes.errors import InvalidRequest, NotFound
from mes.intake.batches import cancel_batch, idempotent_batch, submit_batch
from mes.intake.submit import request_hash
from mes.store.batches import BatchRecord
from web.auth import current_key, require
from web.context import ctx
from web.doors.openai import batches
from web.doors.openai.batches_input import CheckedFile, error, read_file
from web.doors.openai.files_routes import file_store, owned_batch, owned_file
from web.doors.openai.routes import wire_body
from web.submission import idempotency_key
from web.views.batches import batch_store, release

bp = Blueprint("openai_batches", __name__, url_prefix="/openai/v1")


def _checked(input_file_id: str, endpoint: str) -> CheckedFile:
    """Read and check the caller's input file."""
    s = ctx().services
    stored = owned_file(input_file_id)
    if stored.purpose != "batch":
        raise InvalidRequest(f"file {input_file_id} is not a batch input file",
                             {"param": "input_file_id"})
    if stored.bytes > s.settings.max_batch_bytes:  # uploaded before the limit was lowered
        return CheckedFile(errors=[error(
            "file_too_large", f"the input file is {stored.bytes} bytes; the limit is "
            f"{s.settings.max_batch_bytes} (MES_MAX_BATCH_BYTES)")])
    return read_file(file_store().text(stored.id), endpoint, registry=s.registry,
                     settings=s.settings)


@bp.post("/batches")
@require("jobs")
def create_batch():
    """Create a batch from an uploaded file; a file with bad lines makes a failed batch.

    With an Idempotency-Key, the same key and body give back the first batch (as POST
    /v1/jobs does), so an SDK retry after a lost answer never makes a second one.
    """
    s = ctx().services
    wire = wire_body(batches.BatchCreateRequest())
    key = idempotency_key()
    window_s = batches.WINDOWS[wire["completion_window"]]
    made, _ = idempotent_batch(
        lambda batch_id: _create(wire, batch_id, window_s), owner=current_key().name,
        key=key, body_hash=request_hash(wire), batches=batch_store(), clock=s.clock,
        keep_s=int(s.store.batch_ttl_s + window_s + 3600))  # as long as its batch is kept
    return batches.batch_object(made)


def _create(wire: dict, batch_id: str, window_s: int) -> BatchRecord:
    """Check the input file and make the batch: failed, or its jobs held and released."""
    s = ctx().services
    checked = _checked(wire["input_file_id"], wire["endpoint"])
    extra = batches.door_extra(wire, window_s=window_s, base64=checked.base64,
                               total=len(checked.lines), errors=checked.errors or None)
    owner, metadata = current_key().name, wire.get("metadata") or {}
    if checked.errors:
        batch_store().create_failed(batch_id, owner, created_at=s.clock.now(),
                                    metadata=metadata, extra=extra)
    else:
        made = submit_batch(checked.lines, owner=owner, store=s.store, batches=batch_store(),
                            registry=s.registry, clock=s.clock, metadata=metadata,
                            max_timeout_s=s.settings.task_soft_time_limit_s,
                            window_s=window_s, extra=extra,
                            request_id=g.get("request_id"), batch_id=batch_id)
        release(made)
    return batch_store().get(batch_id)


@bp.get("/batches")
@require("jobs")
def list_batches():
    """List the caller's batches made through this door, newest first."""
    query = batches.BatchListQuery().load(request.args)
    found, more = _page(current_key().name, query["limit"], query.get("after"))
    return batches.batch_page(found, more)


def _page(owner: str, limit: int, after: str | None) -> tuple[list[BatchRecord], bool]:
    """Return up to `limit` of the owner's door batches older than `after`, and if more follow."""
    store = batch_store()
    before_ms = None
    if after is not None:
        anchor = store.get(after)
        if anchor is None or anchor.owner != owner:
            raise NotFound(f"No such Batch object: {after}", {"param": "after"})
        before_ms = int(anchor.created_at * 1000) + 1  # its own ms too: ids order within one
    found: list[BatchRecord] = []
    while len(found) <= limit:
        page, before_ms = store.list_owned(owner, limit=limit + 1, before_ms=before_ms)
        found.extend(batch for batch in page if batches.is_door_batch(batch)
                     and (after is None or batch.id < after))
        if before_ms is None:
            break
    return found[:limit], len(found) > limit


@bp.get("/batches/<batch_id>")
@require("jobs")
def get_batch(batch_id: str):
    """Return a batch with its status, counts and output file ids."""
    return batches.batch_object(owned_batch(batch_id))


@bp.post("/batches/<batch_id>/cancel")
@require("jobs")
def cancel(batch_id: str):
    """Cancel every request of the batch not yet final; it is cancelled once they all end."""
    s = ctx().services
    batch = cancel_batch(owned_batch(batch_id), store=s.store, batches=batch_store(),
                         clock=s.clock)
    return batches.batch_object(batch)
