"""OpenAI's Files API on the door: the upload form, the list query, and the file objects.

Two kinds of file: those a key uploads (purpose `batch`, kept by mes.store.files), and each
ended batch's output and error files (purpose `batch_output`), which are views over the batch's
jobs built when read, never stored. A view's id is its batch's: `file_<batch ULID>_output` or
`_errors`, so it needs no record of its own.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields, validate

from mes.errors import InvalidRequest, PayloadTooLarge
from mes.store.batches import BatchRecord
from mes.store.files import StoredFile
from web.doors.openai.answers import Answer
from web.doors.openai.protocol import UNSUPPORTED

VIEWS = ("output", "errors")  # a batch's two files
MIN_TTL_S = 3600  # OpenAI's floor for expires_after.seconds


def view_id(batch_id: str, view: str) -> str:
    """Return the id of a batch's output or error file."""
    return f"file_{batch_id.removeprefix('batch_')}_{view}"


def view_of(file_id: str) -> tuple[str, str] | None:
    """Return (batch id, view) for the id of a batch's output or error file, else None."""
    head, _, view = file_id.rpartition("_")
    if view not in VIEWS or not head.startswith("file_") or len(head) <= len("file_"):
        return None
    return "batch_" + head.removeprefix("file_"), view


class FileUploadForm(Schema):
    """Validate the form fields of POST /openai/v1/files (the file part is read apart)."""

    class Meta:
        unknown = RAISE

    purpose = fields.String(required=True, validate=validate.OneOf(
        ["batch"], error=UNSUPPORTED + "MES keeps files for batches only: purpose must be "
                                       "'batch'"), metadata={"enum": ["batch"]})
    anchor = fields.String(data_key="expires_after[anchor]",
                           validate=validate.Equal("created_at"))
    seconds = fields.Integer(data_key="expires_after[seconds]",
                             validate=validate.Range(min=MIN_TTL_S))


class FileListQuery(Schema):
    """Validate the query of GET /openai/v1/files as the SDK sends it."""

    class Meta:
        unknown = RAISE

    after = fields.String(validate=validate.Length(1, 200))
    limit = fields.Integer(load_default=10_000, validate=validate.Range(1, 10_000))
    order = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))
    purpose = fields.String(validate=validate.Length(1, 64))


def upload_text(data: bytes, limit_bytes: int) -> str:
    """Return an uploaded file's text; refuse one over the limit, or not UTF-8."""
    if len(data) > limit_bytes:
        raise PayloadTooLarge(f"the file is {len(data)} bytes; the limit is {limit_bytes} "
                              "(MES_MAX_BATCH_BYTES)",
                              {"param": "file", "limit_bytes": limit_bytes})
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("a batch input file must be UTF-8 text (JSONL)",
                             {"param": "file"}) from None


def file_object(stored: StoredFile) -> dict[str, Any]:
    """Describe an uploaded file as OpenAI's File object."""
    return {"id": stored.id, "object": "file", "bytes": stored.bytes,
            "created_at": int(stored.created_at), "expires_at": int(stored.expires_at),
            "filename": stored.filename, "purpose": stored.purpose, "status": "processed",
            "status_details": None}


def view_object(batch: BatchRecord, view: str, size: int, ttl_s: int) -> dict[str, Any]:
    """Describe an ended batch's output or error file (`size` is its JSONL's bytes)."""
    ended = batch.finished_at or batch.created_at
    return {"id": view_id(batch.id, view), "object": "file", "bytes": size,
            "created_at": int(ended), "expires_at": int(ended + ttl_s),
            "filename": f"{batch.id}_{view}.jsonl", "purpose": "batch_output",
            "status": "processed", "status_details": None}


def cursor_page(objects: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """Shape a page of objects (files, batches) as OpenAI's cursor page."""
    return {"object": "list", "data": objects,
            "first_id": objects[0]["id"] if objects else None,
            "last_id": objects[-1]["id"] if objects else None, "has_more": has_more}


def deleted(file_id: str, done: bool) -> dict[str, Any]:
    """Answer a delete: `deleted` is false for a batch's output, which goes with its batch."""
    return {"id": file_id, "object": "file", "deleted": done}


class FileObject(Answer):
    """Shape OpenAI's File object."""

    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("file"))
    bytes = fields.Integer(required=True)
    created_at = fields.Integer(required=True)
    expires_at = fields.Integer(required=True)
    filename = fields.String(required=True)
    purpose = fields.String(required=True, validate=validate.OneOf(["batch", "batch_output"]))
    status = fields.String(required=True, validate=validate.Equal("processed"))
    status_details = fields.String(required=True, allow_none=True)


class CursorPage(Answer):
    """Shape what every page of the Files and Batches lists holds besides its data."""

    object = fields.String(required=True, validate=validate.Equal("list"))
    first_id = fields.String(required=True, allow_none=True)
    last_id = fields.String(required=True, allow_none=True)
    has_more = fields.Boolean(required=True)


class FilePage(CursorPage):
    """Shape the answer of GET /openai/v1/files."""

    data = fields.List(fields.Nested(FileObject), required=True)


class FileDeleted(Answer):
    """Shape the answer of DELETE /openai/v1/files/{file_id}."""

    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("file"))
    deleted = fields.Boolean(required=True)
