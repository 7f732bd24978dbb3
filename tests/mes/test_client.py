"""Check MESClient against a real local HTTP server: the exact requests, retries and errors."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

from mes import client as mc
from mes.stack import free_port
from tests.support.stub_server import StubServer

QUEUED = {"id": "job_1", "status": "queued", "model": "smollm2:135m",
          "created_at": "2025-01-01T00:00:00Z", "deadline_at": "2025-01-01T00:01:00Z"}
RUNNING = {**QUEUED, "status": "running"}
DONE = {**QUEUED, "status": "succeeded", "result": {"text": "Paris"}}


class FakeTime:
    """Tell a time that only moves when the client sleeps."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def stub():
    with StubServer() as server:
        yield server


@pytest.fixture
def clock():
    return FakeTime()


@pytest.fixture
def api(stub, clock):
    with mc.MESClient(stub.url + "/", "sekrit-key", timeout_s=5, max_retries=3,
                      sleep=clock.sleep, monotonic=clock.monotonic) as api:
        yield api


def error(code, status, **extra):
    return (status, {"error": {"code": code, "message": f"{code} happened", "details": {"x": 1}}},
            {"X-Request-ID": "req-9", **extra})


def test_submit_sends_the_exact_body_and_headers(stub, api):
    stub.replies = [(202, QUEUED, {"Location": "/v1/jobs/job_1"})]
    job = api.submit("smollm2:135m", "Capital of France?", options={"max_tokens": 8},
                     metadata={"run": "r-1"}, format=None)
    assert job == QUEUED
    [sent] = stub.requests
    assert (sent["method"], sent["path"], sent["query"]) == ("POST", "/v1/jobs", {})
    assert sent["body"] == {"model": "smollm2:135m", "prompt": "Capital of France?",
                            "options": {"max_tokens": 8}, "metadata": {"run": "r-1"}}
    assert sent["headers"]["Authorization"] == "Bearer sekrit-key"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert "Idempotency-Key" not in sent["headers"]


def test_submit_with_messages_and_idempotency_key(stub, api):
    stub.replies = [(200, QUEUED)]
    messages = [{"role": "user", "content": "Hi"}]
    api.submit("phi3:mini", messages=messages, idempotency_key="run-17-item-4")
    [sent] = stub.requests
    assert sent["body"] == {"model": "phi3:mini", "messages": messages}
    assert sent["headers"]["Idempotency-Key"] == "run-17-item-4"


def test_get_long_polls_with_wait_and_quotes_the_id(stub, api):
    stub.default = (200, RUNNING)
    api.get("job_1")
    api.get("job_1", wait_s=5)
    api.get("a/b", wait_s=500)
    assert [(r["path"], r["query"]) for r in stub.requests] == [
        ("/v1/jobs/job_1", {}), ("/v1/jobs/job_1", {"wait": ["5"]}),
        ("/v1/jobs/a%2Fb", {"wait": ["60"]})]


def test_429_is_retried_after_retry_after_seconds(stub, api, clock):
    stub.replies = [error("queue_full", 429, **{"Retry-After": "2"}), (202, QUEUED)]
    assert api.submit("smollm2:135m", "hi") == QUEUED
    assert clock.sleeps == [2.0]
    assert len(stub.requests) == 2 and stub.requests[0]["body"] == stub.requests[1]["body"]


def test_retry_after_really_sleeps_with_the_default_sleep(stub):
    stub.replies = [error("rate_limited", 429, **{"Retry-After": "0"}), (202, QUEUED)]
    with mc.MESClient(stub.url, "k", max_retries=1) as api:
        assert api.submit("smollm2:135m", "hi")["id"] == "job_1"
    assert len(stub.requests) == 2


def test_retry_after_is_capped_and_http_dates_are_understood(stub):
    time = FakeTime()
    api = mc.MESClient(stub.url, "k", max_retries=2, max_retry_wait_s=3, sleep=time.sleep)
    stub.replies = [error("rate_limited", 429, **{"Retry-After": "3600"}),
                    error("backend_unavailable", 503,
                          **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
                    (200, DONE)]
    assert api.get("job_1") == DONE
    assert time.sleeps == [3, 0.0]  # capped; a date in the past means now


def test_503_without_retry_after_backs_off_with_jitter_within_the_cap(stub, api, clock):
    stub.replies = [error("backend_unavailable", 503), error("backend_unavailable", 503)]
    stub.default = (200, DONE)
    api.get("job_1")
    assert len(clock.sleeps) == 2 and all(0 <= s <= api.max_retry_wait_s for s in clock.sleeps)


def test_exhausted_retries_raise_the_typed_error(stub, api, clock):
    stub.default = error("queue_full", 429, **{"Retry-After": "1"})
    with pytest.raises(mc.QueueFull) as info:
        api.submit("smollm2:135m", "hi")
    exc = info.value
    assert isinstance(exc, mc.RateLimited) and isinstance(exc, mc.MESClientError)
    assert (exc.status, exc.code, exc.message, exc.details) == (
        429, "queue_full", "queue_full happened", {"x": 1})
    assert exc.retry_after_s == 1 and exc.request_id == "req-9"
    assert len(stub.requests) == 1 + api.max_retries and clock.sleeps == [1, 1, 1]


@pytest.mark.parametrize("code,status,cls", [
    ("invalid_request", 400, mc.InvalidRequest), ("unknown_model", 400, mc.UnknownModel),
    ("invalid_schema", 400, mc.InvalidSchema), ("unauthorized", 401, mc.Unauthorized),
    ("forbidden", 403, mc.Forbidden), ("not_found", 404, mc.NotFound),
    ("conflict", 409, mc.Conflict), ("payload_too_large", 413, mc.PayloadTooLarge),
    ("idempotency_mismatch", 422, mc.IdempotencyMismatch),
])
def test_error_codes_map_to_their_classes_without_retry(stub, api, code, status, cls):
    stub.default = error(code, status)
    with pytest.raises(cls) as info:
        api.get("job_1")
    assert (info.value.status, info.value.code, info.value.details) == (status, code, {"x": 1})
    assert len(stub.requests) == 1


def test_unknown_codes_and_non_json_bodies_stay_generic(stub, api):
    stub.replies = [error("internal_error", 500), (502, "<html>bad gateway</html>")]
    with pytest.raises(mc.MESClientError) as info:
        api.models()
    assert type(info.value) is mc.MESClientError and info.value.code == "internal_error"
    with pytest.raises(mc.MESClientError) as info:
        api.models()
    assert (info.value.status, info.value.code) == (502, "http_error")
    assert "bad gateway" in info.value.message


def test_errors_survive_pickling():
    exc = mc.QueueFull("full", status=429, details={"model": "m"}, retry_after_s=2,
                       request_id="r1")
    copy = pickle.loads(pickle.dumps(exc))
    assert (type(copy), copy.status, copy.code, copy.details, copy.retry_after_s,
            copy.request_id) == (mc.QueueFull, 429, "queue_full", {"model": "m"}, 2, "r1")


def test_dropped_connection_retries_get_but_not_a_plain_post(stub, api, clock):
    stub.replies = ["drop", (200, DONE)]
    assert api.get("job_1") == DONE
    stub.replies = ["drop", (202, QUEUED)]
    with pytest.raises(mc.MESConnectionError):
        api.submit("smollm2:135m", "hi")
    assert [r["method"] for r in stub.requests] == ["GET", "GET", "POST"]


def test_dropped_connection_retries_a_post_with_an_idempotency_key(stub, api):
    stub.replies = ["drop", (200, QUEUED)]
    assert api.submit("smollm2:135m", "hi", idempotency_key="k-1") == QUEUED
    assert [r["headers"]["Idempotency-Key"] for r in stub.requests] == ["k-1", "k-1"]


def test_refused_connection_is_retried_even_for_post_then_raises():
    time = FakeTime()
    api = mc.MESClient(f"http://127.0.0.1:{free_port()}", "k", max_retries=2, sleep=time.sleep)
    with pytest.raises(mc.MESConnectionError) as info:
        api.submit("smollm2:135m", "hi")
    assert info.value.code == "connection_error" and info.value.status is None
    assert len(time.sleeps) == 2


def test_wait_long_polls_until_final(stub, api):
    stub.replies = [(200, QUEUED), (200, RUNNING), (200, DONE)]
    seen = []
    job = api.wait("job_1", timeout_s=300, poll_s=20,
                   on_progress=lambda job, elapsed: seen.append(job["status"]))
    assert job == DONE and seen == ["queued", "running", "succeeded"]
    assert [r["query"] for r in stub.requests] == [{}, {"wait": ["20"]}, {"wait": ["20"]}]


def test_wait_caps_the_long_poll_at_60_and_at_the_time_left(stub, clock):
    class SlowClock(FakeTime):
        def monotonic(self):  # every look at the clock finds 25 s gone: no real waiting
            self.now += 25
            return self.now

    slow = SlowClock()
    api = mc.MESClient(stub.url, "k", sleep=slow.sleep, monotonic=slow.monotonic)
    stub.default = (200, RUNNING)
    with pytest.raises(mc.WaitTimeout) as info:
        api.wait("job_1", timeout_s=200)
    assert info.value.job == RUNNING and info.value.code == "wait_timeout"
    waits = [r["query"].get("wait", ["0"])[0] for r in stub.requests]
    assert waits[0] == "0" and all(0 < float(w) <= 60 for w in waits[1:])
    assert slow.sleeps == []  # every poll took its time on the server


def test_wait_times_out_with_the_last_job(stub, api):
    stub.default = (200, RUNNING)
    with pytest.raises(mc.WaitTimeout) as info:
        api.wait("job_1", timeout_s=0)
    assert info.value.job == RUNNING and len(stub.requests) == 1


def test_wait_paces_polls_when_the_server_answers_at_once(stub, api, clock):
    stub.default = (200, RUNNING)  # a server (or proxy) that ignores ?wait=
    with pytest.raises(mc.WaitTimeout):
        api.wait("job_1", timeout_s=3)
    assert clock.sleeps == [1.0, 1.0, 1.0] and len(stub.requests) == 4


def test_infer_returns_the_final_job_on_200(stub, api):
    stub.replies = [(200, DONE)]
    assert api.infer("smollm2:135m", "hi", wait_s=30, format="json") == DONE
    [sent] = stub.requests
    assert (sent["method"], sent["path"]) == ("POST", "/v1/inference")
    assert sent["body"] == {"model": "smollm2:135m", "prompt": "hi", "format": "json",
                            "wait_s": 30}


def test_infer_keeps_waiting_after_202(stub, api):
    stub.replies = [(202, RUNNING, {"Location": "/v1/jobs/job_1"}), (200, RUNNING), (200, DONE)]
    assert api.infer("smollm2:135m", "hi", wait_s=999) == DONE
    assert stub.requests[0]["body"]["wait_s"] == 300
    assert [(r["method"], r["path"]) for r in stub.requests[1:]] == [
        ("GET", "/v1/jobs/job_1"), ("GET", "/v1/jobs/job_1")]
    assert stub.requests[2]["query"] == {"wait": ["60"]}


def test_cancel_and_conflict(stub, api):
    stub.replies = [(200, {**QUEUED, "status": "cancelled"}), error("conflict", 409)]
    assert api.cancel("job_1")["status"] == "cancelled"
    with pytest.raises(mc.Conflict):
        api.cancel("job_1")
    assert [r["method"] for r in stub.requests] == ["DELETE", "DELETE"]


def test_models_status_and_listing(stub, api):
    stub.replies = [(200, {"models": [{"id": "smollm2:135m"}]}), (200, {"id": "org/m:1"}),
                    (200, {"queues": {}}),
                    (200, {"jobs": [QUEUED], "next_cursor": "17"}),
                    (200, {"jobs": [DONE], "next_cursor": None})]
    assert api.models() == [{"id": "smollm2:135m"}]
    assert api.model("org/m:1") == {"id": "org/m:1"}
    assert api.status() == {"queues": {}}
    assert list(api.iter_jobs(status="queued", limit=1)) == [QUEUED, DONE]
    assert [(r["path"], r["query"]) for r in stub.requests] == [
        ("/v1/models", {}), ("/v1/models/org/m:1", {}), ("/v1/status", {}),
        ("/v1/jobs", {"status": ["queued"], "limit": ["1"]}),
        ("/v1/jobs", {"status": ["queued"], "limit": ["1"], "cursor": ["17"]})]


def test_client_imports_without_flask_or_celery():
    code = ("import sys, mes.client; "
            "bad = {m.split('.')[0] for m in sys.modules} & {'flask', 'celery', 'kombu', 'redis'}; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the CLI, on top of the client -------------------------------------------------------------

import io  # noqa: E402

from mes.cli import main as cli  # noqa: E402


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run_cli(stub, *argv, env=None, stderr=None):
    out, err = io.StringIO(), stderr or io.StringIO()
    environ = {"MES_URL": stub.url, "MES_API_KEY": "env-key"} if env is None else env
    code = cli(list(argv), environ=environ, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_submit_prints_the_job_as_json(stub):
    stub.replies = [(202, QUEUED)]
    code, out, err = run_cli(stub, "submit", "--model", "smollm2:135m", "--prompt", "Hi",
                             "--option", "temperature=0.2", "--option", "stop=END",
                             "--priority", "batch", "--idempotency-key", "k1")
    assert (code, json.loads(out), err) == (0, QUEUED, "")
    [sent] = stub.requests
    assert sent["body"] == {"model": "smollm2:135m", "prompt": "Hi", "priority": "batch",
                            "options": {"temperature": 0.2, "stop": "END"}}
    assert sent["headers"]["Authorization"] == "Bearer env-key"
    assert sent["headers"]["Idempotency-Key"] == "k1"


def test_cli_submit_messages_and_format_then_wait_with_progress(stub, tmp_path):
    messages = [{"role": "user", "content": "Hi"}]
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    (tmp_path / "m.json").write_text(json.dumps(messages))
    (tmp_path / "f.json").write_text(json.dumps(schema))
    stub.replies = [(202, QUEUED), (200, RUNNING), (200, DONE)]
    code, out, err = run_cli(stub, "submit", "--model", "smollm2:135m", "--messages-file",
                             str(tmp_path / "m.json"), "--format-file", str(tmp_path / "f.json"),
                             "--wait")
    assert code == 0 and json.loads(out) == DONE
    assert stub.requests[0]["body"] == {"model": "smollm2:135m", "messages": messages,
                                        "format": schema}
    assert stub.requests[2]["query"] == {"wait": ["10"]}
    # Not a terminal: one line per change of status.
    assert [line.split()[:2] for line in err.splitlines()] == [
        ["job_1", "running"], ["job_1", "succeeded"]]


def test_cli_progress_rewrites_one_line_on_a_terminal(stub):
    stub.replies = [(200, QUEUED), (200, QUEUED), (200, DONE)]
    terminal = Terminal()
    code, out, _ = run_cli(stub, "jobs", "get", "job_1", "--wait", stderr=terminal)
    assert code == 0 and json.loads(out) == DONE
    shown = terminal.getvalue()
    assert shown.count("\r") == 2 and shown.endswith("\n") and shown.count("\n") == 1
    assert "job_1 queued" in shown and "job_1 succeeded" in shown
    assert stub.requests[2]["query"] == {"wait": ["2"]}


def test_cli_exit_code_1_for_a_failed_job(stub):
    stub.default = (200, {**QUEUED, "status": "failed", "error": {"code": "timeout"}})
    code, out, _ = run_cli(stub, "jobs", "get", "job_1", "--wait")
    assert code == 1 and json.loads(out)["status"] == "failed"


def test_cli_wait_timeout_prints_the_job_and_exits_2(stub):
    stub.default = (200, RUNNING)
    code, out, err = run_cli(stub, "jobs", "get", "job_1", "--wait", "--wait-timeout", "0")
    assert code == 2 and json.loads(out) == RUNNING and "still running" in err


def test_cli_api_errors_exit_2_with_the_code(stub):
    stub.default = error("unknown_model", 400)
    code, out, err = run_cli(stub, "submit", "--model", "gpt-5", "--prompt", "Hi")
    assert code == 2 and out == ""
    assert "400 unknown_model: unknown_model happened" in err and '"x": 1' in err


def test_cli_flags_win_over_the_environment(stub):
    stub.replies = [(200, {"models": [{"id": "m:1"}]}), (200, {"queues": {}})]
    code, out, _ = run_cli(stub, "models", "--url", stub.url, "--key", "flag-key",
                           env={"MES_URL": "http://127.0.0.1:9", "MES_API_KEY": "env-key"})
    assert code == 0 and json.loads(out) == {"models": [{"id": "m:1"}]}
    code, out, _ = run_cli(stub, "status")
    assert code == 0 and json.loads(out) == {"queues": {}}
    assert [r["headers"]["Authorization"] for r in stub.requests] == [
        "Bearer flag-key", "Bearer env-key"]


def test_cli_usage_errors_exit_2(stub, capsys):
    code, _, err = run_cli(stub, "models", env={"MES_URL": stub.url})
    assert code == 2 and "MES_API_KEY" in err
    code, _, err = run_cli(stub, "submit", "--model", "m:1", "--messages-file", "/nope.json")
    assert code == 2 and "cannot read messages" in err
    with pytest.raises(SystemExit) as info:
        run_cli(stub, "submit", "--model", "m:1", "--prompt", "a", "--messages-file", "f")
    assert info.value.code == 2
    assert stub.requests == []
