"""Name every Redis key and channel MES uses; no other module spells a `mes:*` name.

One place makes the keyspace readable at a glance, keeps two modules from drifting apart
on a format, and lets a test check that nothing else writes a key by hand.
"""

from __future__ import annotations

PREFIX = "mes"

# Channels.
FINAL_CHANNEL = "mes:events:final"       # a job id, published when it becomes final
CANCEL_CHANNEL = "mes:events:cancel"     # a job id, published when a running job is cancelled

# Service-wide hashes.
COUNTERS = "mes:counters"                # jobs_submitted, jobs_<final state>
METRICS_PREFIX = "mes:metrics"           # histograms, tokens, backend errors, jobs by model
METRICS_JOBS = "mes:metrics:jobs"        # "<model>|<final state>" -> count
METRICS_DOORS = "mes:metrics:doors"      # door -> jobs accepted through it
LAST_USED = "mes:models:last_used"       # model -> when it last served a job
API_KEYS = "mes:apikeys"                 # key name -> record
API_KEYS_LIVE = "mes:apikeys:live"       # sha256(secret) -> {name, scopes}
RATE_LIMIT_PREFIX = "mes:ratelimit"      # Flask-Limiter's own keys start here


def job(job_id: str) -> str:
    """Return the hash of one job record."""
    return f"mes:job:{job_id}"


def queued_interactive(model_id: str) -> str:
    """Return the zset of a model's queued interactive jobs: the room its queue limit counts."""
    return f"mes:queued:m:{model_id}:interactive"


def held(model_id: str) -> str:
    """Return the zset of a model's jobs that MES holds back until a worker is free."""
    return f"mes:held:{model_id}"


def batch(batch_id: str) -> str:
    """Return the hash of a batch: its record and its counts by state."""
    return f"mes:batch:{batch_id}"


ACTIVE_BATCHES = "mes:batches:active"   # ids of the batches not ended yet


def batch_jobs(batch_id: str) -> str:
    """Return the list of a batch's job ids, in the order of its requests."""
    return f"mes:batch:{batch_id}:jobs"


def owner_batches(owner: str) -> str:
    """Return the zset of an API key's batches, scored by creation (ms)."""
    return f"mes:owner:{owner}:batches"


def file(file_id: str) -> str:
    """Return the hash of an uploaded file's record (OpenAI's Files API)."""
    return f"mes:file:{file_id}"


def file_content(file_id: str) -> str:
    """Return the list of an uploaded file's text, in pieces of at most a million characters."""
    return f"mes:file:{file_id}:content"


def owner_files(owner: str) -> str:
    """Return the zset of an API key's file ids, all scored 0: ids sort by creation."""
    return f"mes:owner:{owner}:files"


def owner_file_expiry(owner: str) -> str:
    """Return the zset of an API key's file ids, scored by when they expire (s)."""
    return f"mes:owner:{owner}:files:expiry"


def owner_file_bytes(owner: str) -> str:
    """Return the hash of an API key's live files: id -> bytes (its per-key cap counts them)."""
    return f"mes:owner:{owner}:files:bytes"


def grant(backend: str) -> str:
    """Return the hash of a backend's grants: model -> {since, state} (active or draining)."""
    return f"mes:sched:{backend}:grant"


def backend_loaded(backend: str) -> str:
    """Return what the backend last said it has loaded (a short-lived cache of /api/ps)."""
    return f"mes:sched:{backend}:loaded"


def model_costs(backend: str) -> str:
    """Return the hash of each model's last load time and run time per job on a backend."""
    return f"mes:sched:{backend}:costs"


def sched_counters(backend: str) -> str:
    """Return the hash of a backend's scheduling counts: loads, load seconds, swaps avoided."""
    return f"mes:sched:{backend}:counters"


def sched_lock(backend: str) -> str:
    """Return the lock one scheduler holds while it decides for a backend."""
    return f"mes:sched:{backend}:lock"


def release_lock(queue: str) -> str:
    """Return the lock one releaser holds while it hands a family's held jobs to workers."""
    return f"mes:release:{queue}:lock"


def job_events(job_id: str) -> str:
    """Return the stream of a job's events: its state changes and the text it generates."""
    return f"mes:job:{job_id}:events"


def progress(job_id: str) -> str:
    """Return the JSON progress an operation records while it runs (a model pull's bytes)."""
    return f"mes:progress:{job_id}"


def queued_in_queue(queue: str) -> str:
    """Return the zset of a family queue's queued job ids, scored by creation (ms)."""
    return f"mes:queued:q:{queue}"


def queued_for_model(model_id: str) -> str:
    """Return the zset of a model's queued job ids, scored by creation (ms)."""
    return f"mes:queued:m:{model_id}"


def running(model_id: str) -> str:
    """Return the set of a model's running job ids."""
    return f"mes:running:{model_id}"


def owner_jobs(owner: str) -> str:
    """Return the zset of an API key's job ids, scored by creation (ms)."""
    return f"mes:owner:{owner}:jobs"


OWNER_JOBS_PATTERN = "mes:owner:*:jobs"


def done_times(model_id: str) -> str:
    """Return the list of a model's recent completion times."""
    return f"mes:done:{model_id}"


def cancel_flag(job_id: str) -> str:
    """Return the flag that asks a running job's worker to stop."""
    return f"mes:cancel:{job_id}"


def idempotency(owner: str, key: str) -> str:
    """Return the binding of an owner's Idempotency-Key to (body hash, job id)."""
    return f"mes:idem:{owner}:{key}"


def batch_idempotency(owner: str, key: str) -> str:
    """Return the binding of an owner's Idempotency-Key to (body hash, batch id)."""
    return f"mes:idem-batch:{owner}:{key}"  # apart from the jobs' keys: one key may name both


def lease(job_id: str) -> str:
    """Return the key a worker holds while it runs the job."""
    return f"mes:lease:{job_id}"


def slots(model_id: str) -> str:
    """Return the zset of a model's concurrency slot holders, scored by expiry (ms)."""
    return f"mes:slots:{model_id}"


def workers(queue: str) -> str:
    """Return the zset of live workers consuming a queue, scored by heartbeat expiry (s)."""
    return f"mes:workers:{queue}"


def breaker(backend: str) -> str:
    """Return the hash of a backend's circuit breaker."""
    return f"mes:breaker:{backend}"


def resident(backend: str) -> str:
    """Return the zset of models MES let a backend load, scored by when."""
    return f"mes:resident:{backend}"


def residency_lock(backend: str) -> str:
    """Return the lock under which a backend's residency is decided."""
    return f"mes:residency:{backend}:lock"
