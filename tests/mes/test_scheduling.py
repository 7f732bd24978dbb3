"""Check the swap-aware rule on constructed queue states, and its application on a fake Redis."""

from __future__ import annotations

import dataclasses

import pytest

from mes.intake.submit import submit_job
from mes.scheduling.backend import Scheduler
from mes.scheduling.swap import Knobs, ModelWork, decide
from tests.mes.conftest import ListDispatcher

NOW = 1000.0
KNOBS = Knobs(cap=1, quantum_s=30, group_factor=1.0, max_batch_wait_s=300)


def batch(model, n, age=10, **kw):
    return ModelWork(model, batch=n, oldest_batch=NOW - age, load_s=2, run_s=0.1, **kw)


def test_a_loaded_model_keeps_the_backend_while_it_has_work():
    work = {"a": batch("a", 40, age=5, loaded=True, in_flight=2), "b": batch("b", 40, age=50)}
    grants = {"a": {"since": NOW - 10, "state": "active"}}
    decision = decide(work, grants, KNOBS, NOW)
    assert decision.release == {"a": 40}  # b is older, but a is loaded and within its quantum
    assert decision.grants["a"]["state"] == "active" and "b" not in decision.grants
    assert decision.swaps_avoided == 1


def test_past_its_quantum_a_grant_drains_then_the_next_model_gets_it():
    work = {"a": batch("a", 40, loaded=True, in_flight=2), "b": batch("b", 40, age=50)}
    grants = {"a": {"since": NOW - 31, "state": "active"}}
    draining = decide(work, grants, KNOBS, NOW)
    assert draining.grants["a"]["state"] == "draining" and draining.release == {}
    # Its jobs in flight end: the slot goes to b (never two models over a cap of 1).
    drained = dataclasses.replace(work["a"], in_flight=0)
    after = decide({**work, "a": drained}, draining.grants, KNOBS, NOW + 1)
    assert set(after.grants) == {"b"} and after.release == {"b": 40}


def test_little_work_with_a_high_load_cost_waits_to_be_grouped():
    work = {"a": batch("a", 40, loaded=True, in_flight=1),
            "b": batch("b", 3, age=20)}  # 3 x 0.1 s of work against a 2 s load
    grants = {"a": {"since": NOW - 100, "state": "active"}}
    decision = decide(work, grants, KNOBS, NOW)
    assert decision.grants["a"]["state"] == "active"  # b is not worth a swap yet
    assert decision.release == {"a": 40}


def test_aging_lets_small_work_through_at_last():
    work = {"a": batch("a", 40, loaded=True, in_flight=1), "b": batch("b", 3, age=301)}
    grants = {"a": {"since": NOW - 100, "state": "active"}}
    assert decide(work, grants, KNOBS, NOW).grants["a"]["state"] == "draining"


def test_an_idle_backend_serves_whatever_waits():
    decision = decide({"b": batch("b", 3, age=1)}, {}, KNOBS, NOW)
    assert decision.release == {"b": 3} and "b" in decision.grants


def test_interactive_work_preempts_batch_work_at_the_next_job_boundary():
    work = {"a": batch("a", 40, loaded=True, in_flight=2),
            "b": ModelWork("b", interactive=1, oldest_interactive=NOW - 1)}
    grants = {"a": {"since": NOW - 1, "state": "active"}}  # well within its quantum
    decision = decide(work, grants, KNOBS, NOW)
    assert decision.grants["a"]["state"] == "draining"  # a's running jobs finish, no new ones
    assert decision.release == {}
    drained = {**work, "a": dataclasses.replace(work["a"], in_flight=0)}
    after = decide(drained, decision.grants, KNOBS, NOW + 0.5)
    assert after.release == {"b": 1} and set(after.grants) == {"b"}


def test_interactive_work_goes_before_batch_work_of_the_granted_model():
    work = {"a": ModelWork("a", interactive=2, batch=5, oldest_interactive=NOW,
                           oldest_batch=NOW - 60, loaded=True)}
    decision = decide(work, {"a": {"since": NOW, "state": "active"}}, KNOBS, NOW)
    assert decision.release == {"a": 7}  # the held queue yields interactive jobs first


def test_a_pinned_model_is_always_served_and_counts_against_the_cap():
    work = {"p": batch("p", 5, pinned=True, loaded=True), "a": batch("a", 40, age=5),
            "b": batch("b", 40, age=50)}
    knobs = dataclasses.replace(KNOBS, cap=2)  # one slot for the pinned, one to swap
    decision = decide(work, {}, knobs, NOW)
    assert decision.release == {"p": 5, "b": 40}
    assert set(decision.grants) == {"b"}  # pinned models need no grant


def test_a_cap_of_two_serves_two_models_at_once():
    work = {m: batch(m, 40, age=age) for m, age in (("a", 30), ("b", 20), ("c", 10))}
    decision = decide(work, {}, dataclasses.replace(KNOBS, cap=2), NOW)
    assert set(decision.release) == {"a", "b"}  # the two oldest


@pytest.fixture
def scheduler(store, registry):
    return Scheduler(store=store, registry=registry, backend="b1",
                     knobs=Knobs(cap=1, quantum_s=30, group_factor=0, max_batch_wait_s=300))


def test_held_jobs_are_released_only_for_the_granted_model(store, registry, clock, scheduler):
    from mes.store.health import Heartbeats
    Heartbeats(store.redis).beat(["mes.smollm", "mes.phi"], "w@h", ttl_s=60)
    sent = ListDispatcher()

    def submit(model, priority="batch"):
        job, _ = submit_job({"model": model, "prompt": "hi", "priority": priority},
                            owner="alice", store=store, registry=registry, dispatcher=sent,
                            clock=clock, max_timeout_s=600, schedule=lambda: None)
        clock.advance(0.01)
        return job.id
    a = [submit("smollm2:135m") for _ in range(3)]
    b = [submit("phi3:mini") for _ in range(3)]
    released = []
    decision = scheduler.run(lambda job: released.append(job.id), clock.now())
    assert set(decision.grants) == {"smollm2:135m"}  # the oldest work gets the backend
    assert released == a and not set(b) & set(released)
    assert scheduler.status(clock.now())["grants"]["smollm2:135m"]["state"] == "active"
