"""Call the MES HTTP API from Python: submit, poll, wait for and cancel jobs.

This is what backends such as Open Bench use. It needs only `requests`, so it can be
imported without flask or celery. Errors mirror the API's codes:

    MESClientError                 (.status, .code, .message, .details, .request_id)
    ├── InvalidRequest                 400 invalid_request
    ├── UnknownModel                   400 unknown_model
    ├── InvalidSchema                  400 invalid_schema
    ├── Unauthorized                   401 unauthorized
    ├── Forbidden                      403 forbidden
    ├── NotFound                       404 not_found
    ├── Conflict                       409 conflict
    ├── PayloadTooLarge                413 payload_too_large
    ├── IdempotencyMismatch            422 idempotency_mismatch
    ├── RateLimited                    429 rate_limited   (.retry_after_s)
    │   └── QueueFull                  429 queue_full
    ├── BackendUnavailable             503 backend_unavailable
    ├── MESConnectionError             no answer: refused, reset, or read timed out
    └── WaitTimeout                    the job was not final in time (.job holds it as last seen)

Any other error answer raises MESClientError itself, with the status and code it carried.
"""

from __future__ import annotations

import email.utils
import random
import time
from datetime import datetime
from typing import Any, Callable, Iterator
from urllib.parse import quote

import requests
from urllib3.exceptions import NewConnectionError

from mes.client_batches import BatchCalls
from mes.client_events import StreamEvent, follow
from mes.jobs import FINAL_STATES

FINAL_STATUSES = frozenset(status.value for status in FINAL_STATES)
MAX_LONG_POLL_S = 60  # the API's cap on ?wait=
MAX_INFERENCE_WAIT_S = 300  # the API's cap on wait_s
RETRY_STATUSES = frozenset({429, 503})


class MESClientError(Exception):
    """Base of every error the client raises."""

    code = "error"
    status: int | None = None

    def __init__(self, message: str = "", *, status: int | None = None, code: str | None = None,
                 details: dict[str, Any] | None = None, request_id: str | None = None):
        super().__init__(message)
        self.message = message or self.code
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.details = details or {}
        self.request_id = request_id

    def __str__(self) -> str:
        where = f"{self.status} " if self.status else ""
        return f"{where}{self.code}: {self.message}"

    def __reduce__(self):
        # Keyword-only arguments do not survive pickling through .args; keep them all.
        return (_rebuild, (self.__class__, self.message, self.__dict__))


def _rebuild(cls, message: str, state: dict[str, Any]) -> MESClientError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidRequest(MESClientError):
    """The body or query failed validation."""

    code, status = "invalid_request", 400


class UnknownModel(MESClientError):
    """The model is not in the registry."""

    code, status = "unknown_model", 400


class InvalidSchema(MESClientError):
    """`format` is not a valid JSON Schema."""

    code, status = "invalid_schema", 400


class Unauthorized(MESClientError):
    """The key is missing or unknown."""

    code, status = "unauthorized", 401


class Forbidden(MESClientError):
    """The key lacks the scope."""

    code, status = "forbidden", 403


class NotFound(MESClientError):
    """No such job for this key."""

    code, status = "not_found", 404


class Conflict(MESClientError):
    """The job's state forbids the action."""

    code, status = "conflict", 409


class PayloadTooLarge(MESClientError):
    """The body or prompt is over the limit."""

    code, status = "payload_too_large", 413


class IdempotencyMismatch(MESClientError):
    """The Idempotency-Key was used before with a different body."""

    code, status = "idempotency_mismatch", 422


class RateLimited(MESClientError):
    """The key is over its rate; retries ran out."""

    code, status = "rate_limited", 429

    def __init__(self, message: str = "", *, retry_after_s: float | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class QueueFull(RateLimited):
    """The model's queue is full; retries ran out."""

    code = "queue_full"


class BackendUnavailable(MESClientError):
    """The service refused work because its backend is down; retries ran out."""

    code, status = "backend_unavailable", 503

    def __init__(self, message: str = "", *, retry_after_s: float | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class MESConnectionError(MESClientError):
    """The service could not be reached, or gave no answer in time."""

    code = "connection_error"


class WaitTimeout(MESClientError):
    """The job was not final when the wait ran out; `.job` is the job as last seen."""

    code = "wait_timeout"

    def __init__(self, message: str = "", *, job: dict[str, Any] | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.job = job


_BY_CODE: dict[str, type[MESClientError]] = {
    cls.code: cls for cls in (InvalidRequest, UnknownModel, InvalidSchema, Unauthorized, Forbidden,
                              NotFound, Conflict, PayloadTooLarge, IdempotencyMismatch,
                              RateLimited, QueueFull, BackendUnavailable)}


def is_final(job: dict[str, Any]) -> bool:
    """Tell whether a job will never change again."""
    return job.get("status") in FINAL_STATUSES


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return a Retry-After header's delay in seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(response: requests.Response) -> MESClientError:
    """Build the typed error for an error answer, from its `{"error": {...}}` body."""
    try:
        error = response.json().get("error") or {}
        if not isinstance(error, dict):
            error = {"message": str(error)}
    except (ValueError, AttributeError):
        error = {}
    code = str(error.get("code") or "http_error")
    message = str(error.get("message") or response.text[:200] or response.reason or code)
    kwargs: dict[str, Any] = {"status": response.status_code, "code": code,
                              "details": error.get("details") or {},
                              "request_id": response.headers.get("X-Request-ID")}
    cls = _BY_CODE.get(code, MESClientError)
    if cls.status is not None and cls.status != response.status_code:
        cls = MESClientError  # a code we know on an unexpected status: keep it generic
    if issubclass(cls, (RateLimited, BackendUnavailable)):
        kwargs["retry_after_s"] = parse_retry_after(response.headers.get("Retry-After"))
    return cls(message, **kwargs)


class MESClient(BatchCalls):
    """Talk to one MES service through one pooled Session, with explicit timeouts."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 30,
                 max_retries: int = 5, session: requests.Session | None = None,
                 connect_timeout_s: float = 5.0, max_retry_wait_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s
        self.session = session or requests.Session()
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                         "User-Agent": "mes-client/1"}
        self._sleep = sleep
        self._monotonic = monotonic

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def __enter__(self) -> "MESClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- the one funnel -------------------------------------------------------------------

    def _request(self, method: str, path: str, *, body: dict | None = None,
                 params: dict | None = None, headers: dict | None = None,
                 idempotent: bool, extra_read_s: float = 0,
                 stream: bool = False) -> requests.Response:
        """Send a request, retrying 429/503 always and connection errors if idempotent."""
        timeout = (self.connect_timeout_s, self.timeout_s + extra_read_s)
        all_headers = {**self._headers, **(headers or {})}
        attempt = 0
        while True:
            try:
                response = self.session.request(method, self.base_url + path, json=body,
                                                params=params, headers=all_headers,
                                                timeout=timeout, stream=stream)
            except requests.exceptions.RequestException as exc:
                # A request that never got a connection cannot have queued a job, so even a
                # plain POST may go again; after that, only idempotent calls may.
                if attempt < self.max_retries and (idempotent or _never_sent(exc)):
                    self._sleep(self._backoff_s(attempt))
                    attempt += 1
                    continue
                raise MESConnectionError(f"{method} {self.base_url}{path} failed: {exc}",
                                         details={"url": self.base_url + path}) from exc
            if response.status_code < 400:
                return response
            error = error_from_response(response)
            # 429 and 503 mean the request was refused before any work: resending is safe.
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                delay = getattr(error, "retry_after_s", None)
                self._sleep(min(self.max_retry_wait_s, delay) if delay is not None
                            else self._backoff_s(attempt))
                attempt += 1
                continue
            raise error

    def _backoff_s(self, attempt: int) -> float:
        """Return a full-jitter exponential delay, capped."""
        return random.uniform(0, min(self.max_retry_wait_s, 0.5 * 2 ** attempt))

    def _json(self, method: str, path: str, **kwargs) -> tuple[int, dict[str, Any]]:
        response = self._request(method, path, **kwargs)
        try:
            return response.status_code, response.json()
        except ValueError as exc:
            raise MESClientError(f"{method} {path} answered with invalid JSON",
                                 status=response.status_code, code="invalid_response") from exc

    # -- jobs ------------------------------------------------------------------------------

    def submit(self, model: str, prompt: str | None = None,
               messages: list[dict[str, Any]] | None = None, *,
               idempotency_key: str | None = None, **fields: Any) -> dict[str, Any]:
        """Queue a job (POST /v1/jobs) and return it; fields are the API's body fields."""
        body = _job_body(model, prompt, messages, fields)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._json("POST", "/v1/jobs", body=body, headers=headers,
                          idempotent=idempotency_key is not None)[1]

    def get(self, job_id: str, wait_s: float = 0) -> dict[str, Any]:
        """Return a job, long-polling up to wait_s (at most 60) seconds for it to be final."""
        wait_s = max(0.0, min(float(wait_s), MAX_LONG_POLL_S))
        params = {"wait": _number(wait_s)} if wait_s > 0 else None
        return self._json("GET", f"/v1/jobs/{_quote(job_id)}", params=params, idempotent=True,
                          extra_read_s=wait_s)[1]

    def wait(self, job_id: str, timeout_s: float, poll_s: float = MAX_LONG_POLL_S, *,
             on_progress: Callable[[dict[str, Any], float], None] | None = None
             ) -> dict[str, Any]:
        """Return the job once final; raise WaitTimeout if it is not final within timeout_s.

        Each poll is a server-side long poll of up to poll_s seconds, so nothing spins.
        `on_progress(job, elapsed_s)` is called after every poll.
        """
        start = self._monotonic()
        poll_s = max(1.0, min(float(poll_s), MAX_LONG_POLL_S))
        job = self.get(job_id)
        while True:
            elapsed = self._monotonic() - start
            if on_progress is not None:
                on_progress(job, elapsed)
            if is_final(job):
                return job
            remaining = timeout_s - elapsed
            if remaining <= 0:
                raise WaitTimeout(f"job {job_id} was still {job.get('status')} after "
                                  f"{timeout_s:g}s", job=job, details={"job_id": job_id})
            # Never ask for less than a second: the server answers a tiny wait at once.
            asked = min(poll_s, max(1.0, remaining))
            before = self._monotonic()
            job = self.get(job_id, wait_s=asked)
            if not is_final(job) and self._monotonic() - before < min(1.0, asked) / 2:
                # Answered at once yet not final: something dropped ?wait= (a proxy, say).
                # Pace the polls rather than spin.
                self._sleep(1.0)

    def infer(self, model: str, prompt: str | None = None,
              messages: list[dict[str, Any]] | None = None, *, wait_s: int = 60,
              timeout_s: float | None = None, idempotency_key: str | None = None,
              **fields: Any) -> dict[str, Any]:
        """Run a job synchronously (POST /v1/inference) and return it once final.

        The service holds the request up to wait_s (at most 300) seconds; if the job is still
        going then (202), keep waiting with long polls until timeout_s from the start, or by
        default until the job's own deadline, and raise WaitTimeout after that.
        """
        start = self._monotonic()
        wait_s = int(max(0, min(wait_s, MAX_INFERENCE_WAIT_S)))
        body = {**_job_body(model, prompt, messages, fields), "wait_s": wait_s}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        status, job = self._json("POST", "/v1/inference", body=body, headers=headers,
                                 idempotent=idempotency_key is not None, extra_read_s=wait_s)
        if status == 200 or is_final(job):
            return job
        budget = timeout_s if timeout_s is not None else job_wait_budget_s(job)
        return self.wait(job["id"], budget - (self._monotonic() - start))

    def stream(self, model: str, prompt: str | None = None,
               messages: list[dict[str, Any]] | None = None, *,
               idempotency_key: str | None = None, **fields: Any) -> Iterator[StreamEvent]:
        """Submit a job and yield its events as they come (status, token, restart, done).

        A dropped connection is resumed with Last-Event-ID, so no event is lost or repeated.
        """
        body = {**_job_body(model, prompt, messages, fields), "stream": True}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return _guarded(follow(lambda: self._open_stream("POST", "/v1/inference", body=body,
                                                         headers=headers,
                                                         idempotent=idempotency_key is not None),
                               self._reopen))

    def stream_job(self, job_id: str, after: str | None = None) -> Iterator[StreamEvent]:
        """Yield a job's events after the id `after` (from its start by default) until done."""
        return _guarded(follow(lambda: self._reopen(job_id, after), self._reopen))

    def _reopen(self, job_id: str, last_id: str | None) -> requests.Response:
        headers = {"Last-Event-ID": last_id} if last_id else None
        return self._open_stream("GET", f"/v1/jobs/{_quote(job_id)}/events", headers=headers,
                                 idempotent=True)

    def _open_stream(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Accept": "text/event-stream", **(kwargs.pop("headers", None) or {})}
        return self._request(method, path, headers=headers, stream=True, **kwargs)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job and return it; raise Conflict if it was already final."""
        return self._json("DELETE", f"/v1/jobs/{_quote(job_id)}", idempotent=False)[1]

    def list_jobs(self, *, status: str | None = None, model: str | None = None,
                  limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """Return one page of this key's jobs, newest first: {"jobs", "next_cursor"}."""
        params = {k: v for k, v in {"status": status, "model": model, "limit": limit,
                                    "cursor": cursor}.items() if v is not None}
        return self._json("GET", "/v1/jobs", params=params or None, idempotent=True)[1]

    def iter_jobs(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Yield this key's jobs across every page."""
        cursor = None
        while True:
            page = self.list_jobs(cursor=cursor, **filters)
            yield from page.get("jobs") or []
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # -- models and service ----------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Return every model with its queue, concurrency and live counts."""
        return self._json("GET", "/v1/models", idempotent=True)[1].get("models") or []

    def model(self, model_id: str) -> dict[str, Any]:
        """Return one model; ids may contain ':' and '/'."""
        return self._json("GET", f"/v1/models/{quote(model_id, safe=':/')}", idempotent=True)[1]

    def pull(self, model_id: str) -> dict[str, Any]:
        """Have the backend download a model (models scope); return the queued operation.

        Follow it with get() or wait(): its `progress` holds the bytes and status lines.
        """
        return self._json("POST", f"/v1/models/{quote(model_id, safe=':/')}/pull",
                          idempotent=False)[1]

    def status(self) -> dict[str, Any]:
        """Return the service status (admin scope): queues, workers, models, counters."""
        return self._json("GET", "/v1/status", idempotent=True)[1]


def _guarded(events: Iterator[StreamEvent]) -> Iterator[StreamEvent]:
    """Raise a stream that could not be kept up as MESConnectionError, like any other call."""
    try:
        yield from events
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        raise MESConnectionError(f"the event stream broke off: {exc}") from exc


def _job_body(model: str, prompt: str | None, messages: list | None,
              fields: dict[str, Any]) -> dict[str, Any]:
    # The service checks that exactly one of prompt and messages is given.
    body: dict[str, Any] = {"model": model}
    if prompt is not None:
        body["prompt"] = prompt
    if messages is not None:
        body["messages"] = messages
    body.update({key: value for key, value in fields.items() if value is not None})
    return body


def job_wait_budget_s(job: dict[str, Any]) -> float:
    """Return how long a job can still take: its timeout (from the server's clock) plus grace."""
    created = _parse_time(job.get("created_at"))
    deadline = _parse_time(job.get("deadline_at"))
    if created is None or deadline is None:
        return 600.0
    # A job cannot run past its deadline; the grace covers the worker writing the final state.
    return max(0.0, deadline - created) + 30.0


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _never_sent(exc: requests.exceptions.RequestException) -> bool:
    """Tell whether no connection was made, so the service never saw the request."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    return isinstance(getattr(reason, "reason", reason), NewConnectionError)


def _quote(job_id: str) -> str:
    return quote(str(job_id), safe="")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


__all__ = [
    "MESClient", "MESClientError", "InvalidRequest", "UnknownModel", "InvalidSchema",
    "Unauthorized", "Forbidden", "NotFound", "Conflict", "PayloadTooLarge", "IdempotencyMismatch",
    "RateLimited", "QueueFull", "BackendUnavailable", "MESConnectionError", "WaitTimeout",
    "is_final", "error_from_response", "parse_retry_after", "job_wait_budget_s",
]
