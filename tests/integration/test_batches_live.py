"""Run native batches on the real stack: gunicorn, Celery workers and beat, Redis and the engine."""

from __future__ import annotations

import json

import pytest
import requests

from mes.bench.processes import wait_until
from mes.client import MESClient
from tests.support.stack import ALICE, PrivateStack

pytestmark = pytest.mark.integration

BOB = {"Authorization": "Bearer bob-secret-22"}
LINE = {"model": "smollm2:135m", "options": {"max_tokens": 8}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with PrivateStack(tmp_path_factory.mktemp("batches"),
                      engine_args=("--token-ms", "5", "--load-ms", "5", "--num-parallel", "8"),
                      settings={"MES_REAPER_INTERVAL_S": "1", "MES_BACKEND_MAX_RETRIES": "3"},
                      web_workers=1) as stack:
        yield stack.start_all(beat=True)


def lines(n, prefix="q"):
    return [{**LINE, "custom_id": f"{prefix}-{i}", "prompt": f"question {i}"} for i in range(n)]


def post_batch(stack, body, **kwargs):
    return requests.post(stack.web_url + "/v1/batches", json=body, headers=ALICE, timeout=30,
                         **kwargs)


def batch(stack, batch_id, headers=ALICE):
    return requests.get(f"{stack.web_url}/v1/batches/{batch_id}", headers=headers, timeout=10)


def results(stack, batch_id, cursor=0):
    response = requests.get(f"{stack.web_url}/v1/batches/{batch_id}/results",
                            params={"cursor": cursor}, headers=ALICE, timeout=30)
    assert response.status_code == 200
    return [json.loads(line) for line in response.text.splitlines()]


def test_a_batch_runs_to_completion_with_results_in_order(stack):
    created = post_batch(stack, {"requests": lines(30), "metadata": {"suite": "live"}})
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    wait_until(lambda: batch(stack, batch_id).json()["status"] == "completed", 60,
               "the batch completed")
    done = batch(stack, batch_id).json()
    assert done["request_counts"]["succeeded"] == 30 and done["finished_at"]
    got = results(stack, batch_id)
    assert [line["custom_id"] for line in got] == [f"q-{i}" for i in range(30)]
    assert [line["index"] for line in got] == list(range(30))
    assert {line["job"]["status"] for line in got} == {"succeeded"}
    assert [line["custom_id"] for line in results(stack, batch_id, cursor=25)] == [
        f"q-{i}" for i in range(25, 30)]


def test_an_ndjson_batch_and_progress_counts(stack):
    body = "".join(json.dumps(line) + "\n" for line in lines(10, "n"))
    created = requests.post(stack.web_url + "/v1/batches", data=body, timeout=30,
                            headers={**ALICE, "Content-Type": "application/x-ndjson"})
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    seen = set()

    def progressed():
        counts = batch(stack, batch_id).json()["request_counts"]
        assert sum(counts[s] for s in ("queued", "running", "succeeded", "failed", "cancelled",
                                       "expired")) == counts["total"] == 10
        seen.add(counts["succeeded"])
        return counts["succeeded"] == 10
    wait_until(progressed, 60, "the NDJSON batch completed")
    assert 10 in seen


def test_cancelling_a_half_done_batch(stack):
    created = post_batch(stack, {"requests": [{**line, "options": {"max_tokens": 64}}
                                              for line in lines(40, "c")]})
    batch_id = created.json()["id"]
    wait_until(lambda: batch(stack, batch_id).json()["request_counts"]["succeeded"] >= 4, 60,
               "some jobs done")
    cancelled = requests.delete(f"{stack.web_url}/v1/batches/{batch_id}", headers=ALICE,
                                timeout=30)
    assert cancelled.status_code == 200
    wait_until(lambda: batch(stack, batch_id).json()["status"] == "cancelled", 30,
               "the batch ended as cancelled")
    counts = batch(stack, batch_id).json()["request_counts"]
    assert counts["cancelled"] > 0 and counts["succeeded"] >= 4
    assert counts["succeeded"] + counts["cancelled"] + counts["failed"] == 40
    assert len(results(stack, batch_id)) == 40


def test_another_keys_batch_is_not_found(stack):
    batch_id = post_batch(stack, {"requests": lines(1, "k")}).json()["id"]
    assert batch(stack, batch_id, headers=BOB).status_code == 404
    listing = requests.get(stack.web_url + "/v1/batches", headers=BOB, timeout=10).json()
    assert batch_id not in [b["id"] for b in listing["batches"]]


def test_the_client_submits_waits_and_reads_results(stack):
    with MESClient(stack.web_url, ALICE["Authorization"].split()[1]) as client:
        submitted = client.submit_batch(lines(12, "cl"), metadata={"via": "client"})
        progress = []
        final = client.wait_batch(submitted["id"], timeout_s=60, poll_s=0.2,
                                  on_progress=lambda b: progress.append(
                                      b["request_counts"]["succeeded"]))
        assert final["status"] == "completed" and progress
        got = list(client.iter_batch_results(submitted["id"]))
        assert [line["custom_id"] for line in got] == [f"cl-{i}" for i in range(12)]
        assert client.batch(submitted["id"])["id"] == submitted["id"]


def test_mes_batch_submit_wait_and_results(stack, tmp_path):
    import io

    from mes.cli import main
    path = tmp_path / "suite.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines(20, "cli")))
    env = {"MES_URL": stack.web_url, "MES_API_KEY": ALICE["Authorization"].split()[1]}
    out, err = io.StringIO(), io.StringIO()
    assert main(["batch", "submit", str(path), "--wait"], environ=env, stdout=out,
                stderr=err) == 0, err.getvalue()
    batch_id = json.loads(out.getvalue())["id"]
    assert json.loads(out.getvalue())["status"] == "completed"
    assert f"{batch_id} completed 20/20" in err.getvalue()  # progress lines off a terminal
    out = io.StringIO()
    assert main(["batch", "results", batch_id], environ=env, stdout=out,
                stderr=io.StringIO()) == 0
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["custom_id"] for line in got] == [f"cli-{i}" for i in range(20)]


def test_a_jobs_timeout_counts_from_its_hand_over_not_from_the_batch(stack):
    # 150 jobs of about 85 ms on 2 slots take 6 s or more: counted from the batch's creation,
    # most would expire after 2 s; counted from each job's hand-over, none does.
    requests_ = [{**line, "options": {"max_tokens": 16}} for line in lines(150, "t")]
    done, got = run_to_its_end(stack, {"requests": requests_, "timeout_s": 2})
    assert done["status"] == "completed", done["request_counts"]
    assert done["request_counts"]["succeeded"] == 150
    assert max(_seconds(line["job"]["started_at"]) for line in got) - _seconds(
        done["created_at"]) > 2  # the last jobs did wait longer than their timeout
    for line in got:  # each ran under its own 2 s, from when it was handed over
        job = line["job"]
        assert _seconds(job["deadline_at"]) - _seconds(job["started_at"]) <= 2


def test_jobs_still_held_when_the_window_ends_expire(stack):
    done, got = run_to_its_end(stack, {"requests": lines(150, "w"), "completion_window_s": 2})
    counts = done["request_counts"]
    assert done["status"] == "expired", counts
    assert counts["expired"] > 0 and counts["succeeded"] > 0
    assert counts["succeeded"] + counts["expired"] + counts["failed"] == 150
    expired = [line["job"] for line in got if line["job"]["status"] == "expired"]
    assert {job["error"]["code"] for job in expired} == {"expired"}
    assert {job["deadline_at"] for job in expired} == {done["expires_at"]}


def run_to_its_end(stack, body):
    """Post a batch, wait until it ends, and return it and its results."""
    created = post_batch(stack, body)
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    wait_until(lambda: batch(stack, batch_id).json()["finished_at"], 120, "the batch ended")
    return batch(stack, batch_id).json(), results(stack, batch_id)


def _seconds(stamp: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
