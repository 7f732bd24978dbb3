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


def test_interactive_work_waits_for_the_quantum_then_goes_first():
    work = {"a": batch("a", 40, loaded=True, in_flight=2),
            "b": ModelWork("b", interactive=1, batch=10, oldest_interactive=NOW - 1,
                           oldest_batch=NOW - 1, load_s=2, run_s=0.1),
            "c": batch("c", 40, age=100)}  # older batch work than b's
    grants = {"a": {"since": NOW - 1, "state": "active"}}  # well within its quantum
    within = decide(work, grants, KNOBS, NOW)
    assert within.grants["a"]["state"] == "active" and within.release == {"a": 40}
    # At the quantum's end, a drains at the next job boundary (its running jobs finish) ...
    over = decide(work, grants, KNOBS, NOW + 29.5)
    assert over.grants["a"]["state"] == "draining" and over.release == {}
    # ... and b's interactive job takes the slot before c's older batch work, with b's batch.
    drained = {**work, "a": dataclasses.replace(work["a"], in_flight=0)}
    after = decide(drained, over.grants, KNOBS, NOW + 30)
    assert after.release == {"b": 11} and set(after.grants) == {"b"}


def test_interactive_work_takes_a_free_slot_at_once():
    work = {"b": ModelWork("b", interactive=1, oldest_interactive=NOW)}
    decision = decide(work, {}, KNOBS, NOW)
    assert decision.release == {"b": 1} and decision.grants["b"]["state"] == "active"


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


def test_interactive_work_that_waited_a_quantum_cuts_a_young_grant_short():
    work = {"a": batch("a", 40, loaded=True, in_flight=2),
            "b": ModelWork("b", interactive=1, oldest_interactive=NOW - 29.85)}
    grants = {"a": {"since": NOW - 5, "state": "active"}}  # its own quantum is far from over
    # 29.85 s waited, and a's two jobs in flight still need 0.2 s: a quantum of batch work.
    assert decide(work, grants, KNOBS, NOW).grants["a"]["state"] == "draining"
    early = {**work, "b": dataclasses.replace(work["b"], oldest_interactive=NOW - 29.7)}
    assert decide(early, grants, KNOBS, NOW).grants["a"]["state"] == "active"


def test_a_grant_that_loaded_serves_twice_its_load_before_it_yields():
    work = {"a": batch("a", 400, loaded=True, in_flight=1), "b": batch("b", 40, age=500)}
    grants = {"a": {"since": NOW - 50, "state": "active", "load_s": 40.0}}  # a 40 s load
    assert decide(work, grants, KNOBS, NOW).grants["a"]["state"] == "active"
    assert decide(work, grants, KNOBS, NOW + 31).grants["a"]["state"] == "draining"


def test_a_granted_model_records_the_load_it_is_about_to_pay():
    work = {"a": batch("a", 40), "b": batch("b", 40, loaded=True, age=5)}
    decision = decide(work, {}, dataclasses.replace(KNOBS, cap=2), NOW)
    assert decision.grants["a"]["load_s"] == 2 and decision.grants["b"]["load_s"] == 0


def test_a_model_that_yielded_goes_behind_the_others_that_wait():
    work = {"a": batch("a", 40, age=60, loaded=True), "b": batch("b", 40, age=50)}
    grants = {"a": {"since": NOW - 40, "state": "draining", "why": "quantum"}}
    decision = decide(work, grants, KNOBS, NOW)
    assert set(decision.grants) == {"b"}  # a's remaining work is older, but it had its turn


def test_a_model_without_a_live_worker_gives_the_backend_up():
    work = {"a": batch("a", 40, loaded=True, in_flight=2, servable=False),
            "b": batch("b", 40, age=5)}
    decision = decide(work, {"a": {"since": NOW - 1, "state": "active"}}, KNOBS, NOW)
    assert set(decision.grants) == {"b"} and decision.release == {"b": 40}
    assert not decide({"a": work["a"]}, {}, KNOBS, NOW).grants  # no grant while it has none


def test_work_in_flight_without_a_grant_holds_a_slot_until_it_ends():
    # a's worker came back with jobs it had been sent; b holds the grant meanwhile.
    work = {"a": batch("a", 0, in_flight=3), "b": batch("b", 40, loaded=True, in_flight=2)}
    decision = decide(work, {"b": {"since": NOW - 1, "state": "active"}}, KNOBS, NOW)
    assert decision.grants["a"]["state"] == "draining"
    assert decision.grants["b"]["state"] == "draining"  # over the cap of 1: no more of b
    assert decision.release == {}
    ended = {"a": batch("a", 0), "b": dataclasses.replace(work["b"], in_flight=0)}
    after = decide(ended, decision.grants, KNOBS, NOW + 1)
    assert set(after.grants) == {"b"} and after.release == {"b": 40}


def test_a_decider_that_finds_the_lock_taken_knocks_and_the_holder_decides_again(
        store, registry, clock, scheduler):
    from mes.store.health import Heartbeats
    Heartbeats(store.redis).beat(["mes.smollm", "mes.phi"], "w@h", ttl_s=60)
    rounds = []

    class Counting(Scheduler):
        def _decide(self, records, dispatch, now):
            rounds.append(now)
            if len(rounds) == 1:  # a job ends elsewhere while we decide
                assert self.run(dispatch, now) is None
            return super()._decide(records, dispatch, now)

    counting = Counting(store=store, registry=registry, backend="b1", knobs=scheduler.knobs,
                        clock=clock.now)
    assert counting.run(lambda job: None, clock.now()) is not None
    assert len(rounds) == 2 and not counting.records().take_knock()


def test_a_job_records_the_backend_time_it_took_and_the_load_it_paid(redis):
    from mes.store.grants import GrantRecords
    records = GrantRecords(redis, "b1")
    timings = {"load_ms": 2000, "prompt_ms": 10, "generate_ms": 90}
    for command in records.cost_commands("a", timings, wall_s=2.5):
        redis.execute_command(*command)
    # A job that waited for another job's load has a long wall time but pays nothing.
    waited = {"load_ms": 0, "prompt_ms": 10, "generate_ms": 90}
    for command in records.cost_commands("a", waited, wall_s=2.0):
        redis.execute_command(*command)
    assert records.costs() == {"a": {"run": 0.1, "load": 2.0}}
    assert records.counters() == {"loads|a": 1.0, "load_s|a": 2.0}


def test_a_model_the_backend_dropped_by_itself_is_counted_apart_from_mes_unloads(redis):
    from mes.store.grants import GrantRecords
    records = GrantRecords(redis, "b1")
    assert records.set_loaded({"a", "b", "c"}) == []
    records.count("unloads|b")                    # MES made room by unloading b
    for command in records.requested_unload_commands("c"):  # someone asked c to go
        redis.execute_command(*command)
    assert records.set_loaded({"d"}) == ["a"]     # a went by itself: its keep_alive ran out
    assert records.loaded() == {"d"}
    assert records.set_loaded({"d"}) == []        # counted once, not at every look
    counters = records.counters()
    assert counters["self_unloads|a"] == 1
    assert "self_unloads|b" not in counters and "self_unloads|c" not in counters


def test_an_older_loaded_record_is_read_and_never_counted(redis):
    from mes.store import names
    from mes.store.grants import GrantRecords
    redis.set(names.backend_loaded("b1"), '["a"]')  # written before the counts were kept
    records = GrantRecords(redis, "b1")
    assert records.loaded() == {"a"}
    assert records.set_loaded(set()) == [] and records.counters() == {}


def test_status_shows_grants_held_work_and_counts(store, registry, clock, scheduler):
    from mes.store.health import Heartbeats
    Heartbeats(store.redis).beat(["mes.smollm", "mes.phi"], "w@h", ttl_s=60)
    for model in ("smollm2:135m", "phi3:mini"):
        submit_job({"model": model, "prompt": "hi", "priority": "batch"}, owner="alice",
                   store=store, registry=registry, dispatcher=ListDispatcher(), clock=clock,
                   max_timeout_s=600, schedule=lambda: None)
        clock.advance(0.01)
    scheduler.run(lambda job: None, clock.now())
    scheduler.records().count("unloads|phi3:mini")
    scheduler.records().add_seconds("unload_s|phi3:mini", 0.25)
    scheduler.records().set_loaded({"smollm2:135m"})
    scheduler.records().set_loaded(set())  # the backend let smollm2 go by itself
    status = scheduler.status(clock.now() + 2)
    assert status["enabled"] and status["cap"] == 1
    assert status["grants"] == {"smollm2:135m": {"state": "active", "since_s": 2.0}}
    assert status["held"] == {"phi3:mini": {"interactive": 0, "batch": 1}}
    assert status["unloads"] == {"phi3:mini": 1} and status["loads"] == {}
    assert status["unload_s"] == {"phi3:mini": 0.25}
    assert status["self_unloads"] == {"smollm2:135m": 1}


def test_the_oldest_interactive_job_decides_not_the_oldest_batch_work():
    work = {"a": batch("a", 40, loaded=True, in_flight=0),
            "b": ModelWork("b", interactive=1, batch=5, oldest_interactive=NOW - 5,
                           oldest_batch=NOW - 100, load_s=2, run_s=0.1),
            "c": ModelWork("c", interactive=1, batch=5, oldest_interactive=NOW - 30,
                           oldest_batch=NOW - 50, load_s=2, run_s=0.1)}
    grants = {"a": {"since": NOW - 5, "state": "active"}}
    draining = decide(work, grants, KNOBS, NOW)
    assert draining.grants["a"]["state"] == "draining"  # for c, whose job waited a quantum
    after = decide(work, draining.grants, KNOBS, NOW + 1)
    assert set(after.grants) == {"c"}
