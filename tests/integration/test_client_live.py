"""Drive MESClient and the `mes` CLI against the real stack: happy path, a 429 retry, timeouts."""

from __future__ import annotations

import io
import json

import pytest
import requests

from mes import client as mc
from mes.cli import main as cli
from tests.support.stub_server import StubServer

pytestmark = pytest.mark.integration

ALICE_KEY = "alice-secret-1"
ROOT_KEY = "root-secret-4444"
FORWARDED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID")


class RefusingProxy:
    """Forward to the real web server, but answer the first `refuse` POSTs with 429 queue_full.

    The queue_full refusal is the real API's shape; it stands in for a full queue because the
    shared stack's models have a max_queue too large to reach in a test.
    """

    def __init__(self, target: str, refuse: int = 1, retry_after: str = "1"):
        self.target = target
        self.refuse = refuse
        self.retry_after = retry_after
        self.forwarded: list[tuple[str, str]] = []
        self.stub = StubServer(self._answer)
        self.url = self.stub.url

    @property
    def seen(self) -> list[tuple[str, str]]:
        """Return (method, path) of every request, refused or forwarded."""
        return [(request["method"], request["target"]) for request in self.stub.requests]

    def _answer(self, request):
        if request["method"] == "POST" and self.refuse > 0:
            self.refuse -= 1
            return (429, {"error": {"code": "queue_full", "message": "the model's queue is full",
                                    "details": {"model": "smollm2:135m"}}},
                    {"Retry-After": self.retry_after})
        self.forwarded.append((request["method"], request["target"]))
        headers = {k: v for k, v in request["headers"].items() if k in FORWARDED_HEADERS}
        upstream = requests.request(request["method"], self.target + request["target"],
                                    data=request["raw"] or None, headers=headers, timeout=120)
        keep = {k: v for k, v in upstream.headers.items()
                if k in ("Content-Type", "Location", "Retry-After", "X-Request-ID")}
        return upstream.status_code, upstream.content, keep

    def stop(self):
        self.stub.stop()


@pytest.fixture
def alice(web):
    with mc.MESClient(web, ALICE_KEY, timeout_s=30) as api:
        yield api


def test_submit_then_wait(alice):
    job = alice.submit("smollm2:135m", "Capital of France?", options={"max_tokens": 8},
                       metadata={"run": "client-live"})
    assert job["status"] in ("queued", "running", "succeeded")
    done = alice.wait(job["id"], timeout_s=60)
    assert done["status"] == "succeeded" and done["result"]["text"].strip()
    assert done["metadata"] == {"run": "client-live"}
    assert alice.get(job["id"]) == done


def test_infer_with_messages(alice):
    job = alice.infer("phi3:mini", messages=[{"role": "user", "content": "Hi"}], wait_s=30)
    assert job["status"] == "succeeded" and job["result"]["text"]


def test_typed_errors_from_the_real_api(web, alice):
    with pytest.raises(mc.UnknownModel) as info:
        alice.submit("gpt-5:1", "hi")
    assert info.value.status == 400 and info.value.request_id
    with pytest.raises(mc.NotFound):
        alice.get("job_does_not_exist")
    with pytest.raises(mc.Forbidden):
        alice.status()
    with pytest.raises(mc.Unauthorized):
        mc.MESClient(web, "not-a-key").models()
    done = alice.infer("smollm2:135m", "quick", wait_s=30)
    with pytest.raises(mc.Conflict):
        alice.cancel(done["id"])


def test_status_and_models_for_admin(web):
    with mc.MESClient(web, ROOT_KEY) as root:
        status = root.status()
        models = {model["id"] for model in root.models()}
    assert status["queues"]["mes.smollm"]["workers"] >= 1
    assert status["backend"]["status"] == "ok" and status["backend"]["version"]
    assert status["counters"]["jobs_submitted"] >= 1
    assert {"smollm2:135m", "phi3:mini"} <= models


def test_429_is_retried_after_retry_after_then_the_job_runs(web):
    proxy = RefusingProxy(web, refuse=1, retry_after="1")
    try:
        with mc.MESClient(proxy.url, ALICE_KEY) as api:
            job = api.submit("smollm2:135m", "after a refusal")
            done = api.wait(job["id"], timeout_s=60)
    finally:
        proxy.stop()
    assert done["status"] == "succeeded"
    # Refused once, sent again once: exactly one job was made.
    assert [p for p in proxy.seen if p[0] == "POST"] == [("POST", "/v1/jobs")] * 2
    assert [p for p in proxy.forwarded if p[0] == "POST"] == [("POST", "/v1/jobs")]


def test_429_past_the_retries_raises_queue_full(web):
    proxy = RefusingProxy(web, refuse=3, retry_after="0")
    try:
        with mc.MESClient(proxy.url, ALICE_KEY, max_retries=2) as api:
            with pytest.raises(mc.QueueFull) as info:
                api.submit("smollm2:135m", "never sent")
    finally:
        proxy.stop()
    assert info.value.retry_after_s == 0 and info.value.details == {"model": "smollm2:135m"}
    assert proxy.forwarded == []


def test_wait_and_infer_time_out_while_the_engine_hangs(alice, engine_faults):
    engine_faults(hang=True)
    jobs = []
    try:
        job = alice.submit("smollm2:135m", "this will hang")
        jobs.append(job["id"])
        with pytest.raises(mc.WaitTimeout) as info:
            alice.wait(job["id"], timeout_s=2)
        assert info.value.job["id"] == job["id"]
        assert info.value.job["status"] in ("queued", "running")
        # infer: the service answers 202 after wait_s, then the client's own wait runs out.
        with pytest.raises(mc.WaitTimeout) as info:
            alice.infer("smollm2:135m", "this will hang too", wait_s=1, timeout_s=2)
        jobs.append(info.value.job["id"])
        assert info.value.job["status"] in ("queued", "running")
    finally:
        engine_faults(hang=False)
        for job_id in jobs:  # free the engine and worker slots for the tests after this one
            try:
                alice.cancel(job_id)
            except mc.Conflict:
                pass


def test_cli_submit_wait_against_the_stack(web):
    out, err = io.StringIO(), io.StringIO()
    code = cli(["submit", "--model", "smollm2:135m", "--prompt", "from the CLI", "--wait",
                "--option", "max_tokens=8"],
               environ={"MES_URL": web, "MES_API_KEY": ALICE_KEY}, stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    job = json.loads(out.getvalue())
    assert job["status"] == "succeeded" and job["id"] in err.getvalue()
