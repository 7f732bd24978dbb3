"""Build an OpenAI batch's output and error files from its job records, when they are read.

Nothing is stored twice: each line is made from the job as it stands, in the order of the
input file. The lines are the ones OpenAI documents (and vLLM's run_batch writes):
`{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`.
- A succeeded job goes to the output file, its body the answer POST /openai/v1<endpoint>
  would have given (`id` is the job's id, readable with GET /v1/jobs/{id}).
- A failed job goes to the error file with the status and OpenAI error body the door would
  have answered (`response.body.error`), and `error: null`, as OpenAI writes it.
- A cancelled or expired job never answered: `response: null` and `error` {"code":
  "batch_cancelled" or "batch_expired", "message"}.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

from mes.jobs import Job, JobStatus
from mes.store.batches import BatchRecord, BatchStore
from web.doors.openai import translate

BASE64_LINES = "base64_lines"  # in a batch's extra: lines that asked for base64 vectors

CHUNK = 500  # jobs read per round trip

ANSWERS: dict[str, Callable[[Job, str], dict[str, Any]]] = {
    "/v1/chat/completions": lambda job, _: translate.chat_completion(job),
    "/v1/completions": lambda job, _: translate.text_completion(job),
    "/v1/embeddings": translate.embedding_list,
}
UNANSWERED = {
    JobStatus.CANCELLED: ("batch_cancelled", "was cancelled before it ran to the end"),
    JobStatus.EXPIRED: ("batch_expired", "could not run before its deadline (the batch's "
                                         "expires_at)"),
}


def encoding_of(extra: dict[str, Any]) -> Callable[[int], str]:
    """Return what tells the embeddings encoding the request at an index asked for."""
    everywhere = extra.get("encoding_format") == "base64"
    lines = set(extra.get(BASE64_LINES, ()))
    return lambda index: "base64" if everywhere or index in lines else "float"


def result_line(job: Job, *, endpoint: str, encoding: str = "float") -> tuple[str, dict]:
    """Return the file a final job's line belongs to ("output" or "errors"), and the line."""
    head = {"id": job.id, "custom_id": job.custom_id}
    request_id = job.request_id or job.id
    if job.status is JobStatus.SUCCEEDED:
        body = ANSWERS[endpoint](job, encoding)
        return "output", {**head, "response": {"status_code": 200, "request_id": request_id,
                                               "body": body}, "error": None}
    if job.status in UNANSWERED:
        code, words = UNANSWERED[job.status]
        return "errors", {**head, "response": None,
                          "error": {"code": code, "message": f"request {job.custom_id!r} "
                                                            f"(job {job.id}) {words}"}}
    status, body = translate.job_error(job)
    return "errors", {**head, "response": {"status_code": status, "request_id": request_id,
                                           "body": body}, "error": None}


def view_lines(batch: BatchRecord, view: str, batches: BatchStore) -> Iterator[str]:
    """Yield the JSONL lines of a batch's output or error file, in input order."""
    endpoint, encoding = batch.extra["endpoint"], encoding_of(batch.extra)
    for index, job in batches.final_jobs(batch.id, 0, CHUNK):
        kind, line = result_line(job, endpoint=endpoint, encoding=encoding(index))
        if kind == view:
            yield json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"


def view_bytes(batch: BatchRecord, view: str, batches: BatchStore) -> int:
    """Return the size of a batch's output or error file, in bytes of UTF-8."""
    return sum(len(line.encode()) for line in view_lines(batch, view, batches))
