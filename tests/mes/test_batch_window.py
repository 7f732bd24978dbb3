"""A batch job waits against its batch's window; its own timeout starts when it is handed over."""

from __future__ import annotations

from mes.intake.batches import DEFAULT_WINDOW_S, BatchRequest, submit_batch
from mes.jobs import Job, JobKind, JobStatus
from mes.store.batches import BatchStore
from mes.store.held import HeldQueues

NOW = 1_700_000_000.0


def job(**changes) -> Job:
    fields = dict(id="job_1", owner="alice", model="smollm2:135m", queue="mes.smollm",
                  kind=JobKind.INFERENCE, status=JobStatus.QUEUED, created_at=NOW,
                  deadline_at=NOW + 600, batch_id="batch_1", custom_id="a",
                  request={"prompt": "Hi", "timeout_s": 30, "window_s": 600})
    return Job(**{**fields, **changes})


def test_a_batch_jobs_run_deadline_is_its_timeout_from_hand_over_within_the_window():
    assert job().run_deadline(NOW + 10) == NOW + 40
    assert job().run_deadline(NOW + 590) == NOW + 600  # never past the window's end
    single = job(batch_id=None, deadline_at=NOW + 60, request={"prompt": "Hi", "timeout_s": 5})
    assert single.run_deadline(NOW + 10) == NOW + 60  # outside a batch: from submission
    made_before = job(request={"prompt": "Hi"}, deadline_at=NOW + 180)
    assert made_before.run_deadline(NOW + 10) == NOW + 180


def test_submit_batch_sets_the_window_as_each_jobs_deadline(store, registry, clock):
    lines = [BatchRequest("a", {"model": "smollm2:135m", "prompt": "Hi"}),
             BatchRequest("b", {"model": "smollm2:135m", "prompt": "Hi", "timeout_s": 7})]
    batches = BatchStore(store)
    made = submit_batch(lines, owner="alice", store=store, batches=batches, registry=registry,
                        clock=clock, max_timeout_s=1740)
    jobs = store.get_many(batches.job_ids(made.id, 0, 10))
    assert len(jobs) == 2
    assert {j.deadline_at - j.created_at for j in jobs} == {DEFAULT_WINDOW_S}
    by_id = {j.custom_id: j for j in jobs}
    spec = registry.get("smollm2:135m")
    assert by_id["a"].request["timeout_s"] == spec.timeout_s
    assert by_id["b"].request["timeout_s"] == 7
    assert made.extra["window_s"] == DEFAULT_WINDOW_S
    short = submit_batch(lines, owner="alice", store=store, batches=batches,
                         registry=registry, clock=clock, max_timeout_s=1740, window_s=90)
    assert short.extra["window_s"] == 90


def test_start_clocks_stamps_queued_batch_jobs_and_leaves_the_others(store):
    waiting, cancelled = job(id="job_w"), job(id="job_c")
    alone = job(id="job_s", batch_id=None, deadline_at=NOW + 60)
    saved = {j.id: store.create(j) for j in (waiting, cancelled, alone)}
    store.save(saved["job_c"].evolve(status=JobStatus.CANCELLED, finished_at=NOW + 1))
    held = HeldQueues(store.redis)
    got = held.start_clocks([saved["job_w"], saved["job_c"], saved["job_s"]], NOW + 100)
    assert got[0].deadline_at == NOW + 130 and got[0].version == saved["job_w"].version + 1
    assert store.get("job_w").deadline_at == NOW + 130
    assert store.get("job_w").version == got[0].version
    assert got[1].status is JobStatus.CANCELLED  # changed since it was read: as it now is
    assert store.get("job_c").deadline_at == NOW + 600
    assert got[2] is saved["job_s"] and store.get("job_s").deadline_at == NOW + 60
    again = held.start_clocks([got[0]], NOW + 100)  # nothing to change: no write
    assert again[0] is got[0]
