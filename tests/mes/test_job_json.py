"""Job.to_json builds its dict by hand; it must stay the JSON dataclasses.asdict gave."""

import dataclasses
import json

from mes.jobs import Job, JobKind, JobStatus


def asdict_json(job: Job) -> str:
    """Serialise as to_json did before it built the dict by hand."""
    data = dataclasses.asdict(job)
    data["status"] = job.status.value
    data["kind"] = job.kind.value
    del data["version"]
    return json.dumps(data, separators=(",", ":"))


def full_job() -> Job:
    """Return a job with every field set to something other than its default."""
    return Job(
        id="job_1", owner="alice", model="smollm2:135m", queue="mes.smollm",
        kind=JobKind.EMBED, status=JobStatus.FAILED, created_at=1_700_000_000.125,
        deadline_at=1_700_000_030.5,
        request={"prompt": "Hi ünïcode", "options": {"max_tokens": 8, "stop": ["\n"]},
                 "format": {"type": "object", "properties": {"a": {"type": "integer"}}}},
        priority="batch", metadata={"run": "r-17", "nested": {"k": [1, 2.5, None, True]}},
        started_at=1_700_000_001.0, finished_at=1_700_000_002.75, attempts=3, lost_runs=1,
        not_before=1_700_000_000.9, promoted_at=1_700_000_000.95,
        result={"text": "out", "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
        error={"code": "backend_error", "message": "boom"}, request_id="req_9",
        batch_id="batch_2", custom_id="line-0", version=7)


def test_to_json_is_byte_for_byte_the_asdict_form():
    job = full_job()
    assert job.to_json() == asdict_json(job)


def test_to_json_of_a_default_job_is_the_asdict_form():
    job = Job(id="job_2", owner="bob", model="m", queue="q", kind=JobKind.INFERENCE,
              status=JobStatus.QUEUED, created_at=1.0, deadline_at=2.0)
    assert job.to_json() == asdict_json(job)


def test_every_field_but_version_is_serialised():
    # A field added to Job must be added to to_json too, or it would be lost on save.
    names = [f.name for f in dataclasses.fields(Job) if f.name != "version"]
    assert list(json.loads(full_job().to_json())) == names


def test_to_json_round_trips():
    job = full_job()
    assert Job.from_json(job.to_json(), job.version) == job
