"""Define MES's one error hierarchy.

    MESError
    ├── RequestError              (the caller's fault; never retried)
    │   ├── InvalidRequest            400 invalid_request
    │   ├── UnknownModel              400 unknown_model
    │   ├── InvalidSchema             400 invalid_schema
    │   ├── Unauthorized              401 unauthorized
    │   ├── Forbidden                 403 forbidden
    │   ├── NotFound                  404 not_found
    │   ├── Conflict                  409 conflict
    │   ├── PayloadTooLarge           413 payload_too_large
    │   ├── IdempotencyMismatch       422 idempotency_mismatch
    │   ├── RateLimited               429 rate_limited
    │   └── QueueFull                 429 queue_full
    ├── BackendError              (the model server failed us)
    │   ├── BackendUnavailable        503 backend_unavailable   retryable
    │   ├── BackendTimeout            504 backend_timeout       retryable
    │   ├── BackendBusy               503 backend_busy          retryable
    │   ├── BackendServerError        502 backend_error         retryable
    │   ├── BackendRejected           502 backend_rejected
    │   └── ModelNotFound             502 model_not_found
    ├── JobError                  (why a job ended without a result)
    │   ├── JobTimeout                504 timeout
    │   ├── JobExpired                504 expired
    │   ├── JobCancelled              409 cancelled
    │   ├── OutputInvalid             502 output_invalid
    │   └── WorkerLost                500 worker_lost
    └── ConfigError               (settings or models file are wrong; reported at startup)

Every error keeps its constructor arguments in ``.args`` so that it survives pickling
across Celery's process boundary, and carries ``code``, ``http_status`` and ``retryable``
as class attributes so that the web mapper and the task retry policy read one table.
"""

from __future__ import annotations

from typing import Any


class MESError(Exception):
    """Base of every error MES raises on purpose."""

    code = "internal_error"
    http_status = 500
    retryable = False

    def __init__(self, message: str = "", details: dict[str, Any] | None = None):
        super().__init__(message, details)
        self.message = message or self.__class__.__doc__ or self.code
        self.details = details or {}

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """Return the API's error shape (without the outer ``error`` key)."""
        return {"code": self.code, "message": self.message, "details": self.details}


class RequestError(MESError):
    """Refuse a request that the caller must change."""

    http_status = 400


class InvalidRequest(RequestError):
    """The body or query fails validation."""

    code = "invalid_request"


class UnknownModel(RequestError):
    """The model is not in the registry."""

    code = "unknown_model"


class InvalidSchema(RequestError):
    """The format is not a valid JSON Schema."""

    code = "invalid_schema"


class Unauthorized(RequestError):
    """The API key is missing or unknown."""

    code = "unauthorized"
    http_status = 401


class Forbidden(RequestError):
    """The API key lacks the scope."""

    code = "forbidden"
    http_status = 403


class NotFound(RequestError):
    """No such resource for this caller."""

    code = "not_found"
    http_status = 404


class Conflict(RequestError):
    """The state forbids the action."""

    code = "conflict"
    http_status = 409


class PayloadTooLarge(RequestError):
    """The body or prompt is over the configured limit."""

    code = "payload_too_large"
    http_status = 413


class IdempotencyMismatch(RequestError):
    """An Idempotency-Key is reused with a different body."""

    code = "idempotency_mismatch"
    http_status = 422


class RateLimited(RequestError):
    """The key is over its rate."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str = "", details: dict[str, Any] | None = None,
                 retry_after_s: int = 1):
        super().__init__(message, details)
        self.args = (message, details, retry_after_s)
        self.retry_after_s = retry_after_s


class QueueFull(RateLimited):
    """The model's queue is at its configured depth."""

    code = "queue_full"


class BackendError(MESError):
    """The model server failed to serve the request."""

    code = "backend_error"
    http_status = 502


class BackendUnavailable(BackendError):
    """The model server cannot be reached."""

    code = "backend_unavailable"
    http_status = 503
    retryable = True


class BackendTimeout(BackendError):
    """The model server did not answer in time."""

    code = "backend_timeout"
    http_status = 504
    retryable = True


class BackendBusy(BackendError):
    """The model server refused the request because its queue is full."""

    code = "backend_busy"
    http_status = 503
    retryable = True


class BackendServerError(BackendError):
    """The model server answered with a 5xx or a broken stream."""

    code = "backend_error"
    retryable = True


class BackendRejected(BackendError):
    """The model server refused the request as invalid."""

    code = "backend_rejected"


class ModelNotFound(BackendError):
    """The model server does not have the model."""

    code = "model_not_found"


class JobError(MESError):
    """Explain why a job ended without a result."""


class JobTimeout(JobError):
    """The job ran past its deadline."""

    code = "timeout"
    http_status = 504


class JobExpired(JobError):
    """The job's deadline passed before it could start."""

    code = "expired"
    http_status = 504

    def __init__(self, message: str = "the deadline passed before the job could start",
                 details: dict[str, Any] | None = None):
        super().__init__(message, details)


class JobCancelled(JobError):
    """The job was cancelled."""

    code = "cancelled"
    http_status = 409


class OutputInvalid(JobError):
    """No attempt produced output that matches the schema."""

    code = "output_invalid"
    http_status = 502


class WorkerLost(JobError):
    """The job's worker died while running it, too many times."""

    code = "worker_lost"


class ConfigError(MESError):
    """Settings or configuration files are invalid."""

    code = "config_error"

    def __init__(self, problems: list[str]):
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems),
                         {"problems": list(problems)})
        self.args = (list(problems),)
        self.problems = list(problems)
