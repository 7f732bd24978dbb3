"""Serve OpenAI's Files API at /openai/v1/files: upload, read, list and delete a key's files.

Uploads are kept in Redis (mes.store.files), never on this host's disk: the multipart body is
parsed into memory, under MES_MAX_BATCH_BYTES a file and MES_MAX_FILE_BYTES_PER_KEY a key.
A batch's output and error files are views over its jobs (batches_output.py). A key sees its
own files and batches only; any other id is 404.
"""

from __future__ import annotations

import io

from flask import Blueprint, Response, request, stream_with_context
from werkzeug.datastructures import FileStorage
from werkzeug.formparser import FormDataParser

from mes.errors import InvalidRequest, NotFound, PayloadTooLarge
from mes.settings import Settings
from mes.store.batches import BatchRecord
from mes.store.files import FileStore, StoredFile
from web.auth import current_key, require
from web.context import ctx
from web.doors.openai import files
from web.doors.openai.batches import batch_object, is_door_batch
from web.doors.openai.batches_output import view_bytes, view_lines
from web.views.batches import batch_store

bp = Blueprint("openai_files", __name__, url_prefix="/openai/v1")

FORM_SLACK = 64 * 1024  # the multipart framing and form fields around the file itself
CONTENT_TYPE = "application/octet-stream"  # what OpenAI serves; the SDK asks for binary


def file_store() -> FileStore:
    """Return the file store over this process's Redis."""
    return FileStore(ctx().services.redis)


def owned_file(file_id: str) -> StoredFile:
    """Return the caller's uploaded file, or raise NotFound (another key's looks missing)."""
    stored = file_store().get(file_id)
    if stored is None or stored.owner != current_key().name:
        raise NotFound(f"No such File object: {file_id}", {"param": "file_id"})
    return stored


def owned_batch(batch_id: str) -> BatchRecord:
    """Return the caller's batch made through this door, or raise NotFound."""
    batch = batch_store().get(batch_id)
    if batch is None or batch.owner != current_key().name or not is_door_batch(batch):
        raise NotFound(f"No such Batch object: {batch_id}", {"param": "batch_id"})
    return batch


def owned_view(file_id: str) -> tuple[BatchRecord, str] | None:
    """Return (batch, view) for a batch's output or error file id, None for any other id.

    The id must be one the caller's batch shows (it has ended, and has such lines), else 404.
    """
    found = files.view_of(file_id)
    if found is None:
        return None
    batch_id, view = found
    batch = batch_store().get(batch_id)
    if (batch is None or batch.owner != current_key().name or not is_door_batch(batch)
            or file_id not in (batch_object(batch)[f] for f in ("output_file_id",
                                                                "error_file_id"))):
        raise NotFound(f"No such File object: {file_id}", {"param": "file_id"})
    return batch, view


def _upload(settings: Settings) -> tuple[dict, FileStorage]:
    """Parse the multipart body in memory; return its checked fields and its file part."""
    limit = settings.max_batch_bytes + FORM_SLACK
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the upload is {request.content_length} bytes; a file may be "
                              f"{settings.max_batch_bytes} (MES_MAX_BATCH_BYTES)",
                              {"param": "file", "limit_bytes": settings.max_batch_bytes})
    if request.mimetype != "multipart/form-data":
        raise InvalidRequest("the body must be multipart/form-data with a file and "
                             "purpose=batch", {"param": "file"})
    parser = FormDataParser(stream_factory=lambda *args, **kwargs: io.BytesIO(),
                            max_form_memory_size=FORM_SLACK, max_content_length=limit,
                            max_form_parts=16)
    _, form, parts = parser.parse_from_environ(request.environ)
    fields = files.FileUploadForm().load(form.to_dict())
    upload = parts.get("file")
    if upload is None:
        raise InvalidRequest("a file part named 'file' is required", {"param": "file"})
    return fields, upload


def _ttl_s(fields: dict, settings: Settings) -> int:
    """Return how long the file is kept: MES_BATCH_TTL_S, or expires_after if within it."""
    if ("anchor" in fields) != ("seconds" in fields):
        raise InvalidRequest("expires_after needs both anchor and seconds",
                             {"param": "expires_after"})
    seconds = fields.get("seconds", settings.batch_ttl_s)
    if seconds > settings.batch_ttl_s:
        raise InvalidRequest(f"expires_after.seconds may be at most {settings.batch_ttl_s} "
                             "(MES_BATCH_TTL_S)", {"param": "expires_after.seconds"})
    return seconds


@bp.post("/files")
@require("jobs")
def create_file():
    """Upload a batch input file (multipart, purpose=batch); it is kept until it expires."""
    s = ctx().services
    fields, upload = _upload(s.settings)
    data = upload.stream.getvalue()
    text = files.upload_text(data, s.settings.max_batch_bytes)
    stored = file_store().create(
        owner=current_key().name, filename=(upload.filename or "upload.jsonl")[:255],
        purpose=fields["purpose"], text=text, size=len(data), now=s.clock.now(),
        ttl_s=_ttl_s(fields, s.settings), cap_bytes=s.settings.max_file_bytes_per_key)
    return files.file_object(stored)


@bp.get("/files")
@require("jobs")
def list_files():
    """List the caller's uploaded files, newest first (order=asc for oldest first)."""
    query = files.FileListQuery().load(request.args)
    if query.get("purpose", "batch") != "batch":
        return files.cursor_page([], False)  # MES keeps files for batches only
    found, more = file_store().list_owned(current_key().name, limit=query["limit"],
                                          after=query.get("after"),
                                          ascending=query["order"] == "asc")
    return files.cursor_page([files.file_object(stored) for stored in found], more)


@bp.get("/files/<file_id>")
@require("jobs")
def get_file(file_id: str):
    """Return a file: an upload, or a batch's output or error file (sized as it is read)."""
    view = owned_view(file_id)
    if view is None:
        return files.file_object(owned_file(file_id))
    batch, name = view
    size = view_bytes(batch, name, batch_store())
    return files.view_object(batch, name, size, ctx().services.settings.batch_ttl_s)


@bp.get("/files/<file_id>/content")
@require("jobs")
def file_content(file_id: str):
    """Stream a file's content; a batch's output or error file is built from its jobs."""
    view = owned_view(file_id)
    if view is None:
        pieces = file_store().pieces(owned_file(file_id).id)
    else:
        batch, name = view
        pieces = view_lines(batch, name, batch_store())
    return Response(stream_with_context(pieces), mimetype=CONTENT_TYPE)


@bp.delete("/files/<file_id>")
@require("jobs")
def delete_file(file_id: str):
    """Delete an uploaded file; a batch's output stays with its batch (deleted: false)."""
    if owned_view(file_id) is not None:
        return files.deleted(file_id, False)
    file_store().delete(owned_file(file_id))
    return files.deleted(file_id, True)
