"""Check `mes bench swap`'s figures from constructed job records."""

from __future__ import annotations

from mes.bench.swap_figures import foreseen, foreseen_fewest_loads, loads_for_batch


def test_arrivals_inside_their_models_block_cost_no_load():
    spans = {"a": 5.0, "b": 5.0}
    assert foreseen_fewest_loads(spans, [(1.0, "a"), (2.0, "b"), (9.0, "b")]) == 2


def test_the_best_order_puts_the_latest_asked_model_last():
    spans = {"a": 5.0, "b": 5.0, "c": 5.0}
    # a is asked for at 14 s: served first or second, its block is over by then; third, not.
    assert foreseen_fewest_loads(spans, [(14.0, "a")]) == 3
    # Each model asked for after every block could end: one of them can be last, the rest reload.
    assert foreseen_fewest_loads(spans, [(16.0, "a"), (16.0, "b"), (16.0, "c")]) == 5


def test_a_model_without_batch_work_needs_its_own_load():
    assert foreseen_fewest_loads({"a": 5.0}, [(1.0, "z"), (2.0, "z")]) == 2


def test_foreseen_reads_job_records():
    batch = [{"ok": True, "model": "a", "start": 100.0, "finished": 104.0},
             {"ok": True, "model": "b", "start": 104.0, "finished": 108.0}]
    late = [{"ok": True, "model": "a", "submitted": 109.0},
            {"ok": True, "model": "b", "submitted": 109.5}]
    assert foreseen(batch, late, started=100.0) == 3  # whichever goes last, the other reloads
    assert foreseen(batch, late[:1], started=100.0) == 2  # a goes last
    assert foreseen([], late, started=100.0) is None


def test_loads_for_batch_counts_loads_that_served_batch_work():
    batch = [{"ok": True, "model": "a", "start": 1.0, "paid_load": False},
             {"ok": True, "model": "b", "start": 5.0, "paid_load": True}]
    interactive = [{"ok": True, "model": "a", "start": 0.5, "paid_load": True},
                   {"ok": True, "model": "c", "start": 9.0, "paid_load": True}]
    assert loads_for_batch(batch, interactive) == 2  # a's load served batch work, c's did not
