"""Stream jobs' events through the real stack: gunicorn (gevent), Celery, Redis and the engine."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlparse

import pytest
import requests

from mes.bench.processes import wait_until
from mes.client import MESClient
from mes.client_events import DoneEvent, RestartEvent, StatusEvent, TokenEvent, parse_sse
from tests.support.stack import ALICE, PrivateStack

pytestmark = pytest.mark.integration

BOB = {"Authorization": "Bearer bob-secret-22"}
SLOW = "smollm2:135m"  # 30 ms a token here: a reply takes about 2 s, so it is seen streaming
BODY = {"model": SLOW, "prompt": "Tell me about Paris.", "options": {"max_tokens": 48},
        "timeout_s": 120}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with PrivateStack(tmp_path_factory.mktemp("streaming"),
                      engine_args=("--model", "smollm2:135m,token_ms=30", "--model", "phi3:mini",
                                   "--load-ms", "5", "--num-parallel", "4"),
                      settings={"MES_STREAM_HEARTBEAT_S": "0.3", "MES_BACKEND_MAX_RETRIES": "3"},
                      web_workers=2) as stack:
        yield stack.start_all()


@pytest.fixture
def faults(stack):
    yield stack.set_faults
    stack.clear_faults()


def events_of(response) -> list:
    return list(parse_sse(response.iter_lines(decode_unicode=True)))


def submit(stack, headers=ALICE, **body) -> str:
    response = requests.post(stack.web_url + "/v1/jobs", json={**BODY, **body}, headers=headers,
                             timeout=10)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def open_events(stack, job_id, headers=ALICE, **params):
    return requests.get(f"{stack.web_url}/v1/jobs/{job_id}/events", headers=headers,
                        params=params, stream=True, timeout=30)


def text_of(events) -> str:
    kept = []
    for event in events:
        if isinstance(event, RestartEvent):
            kept = []
        elif isinstance(event, TokenEvent):
            kept.append(event.text)
    return "".join(kept)


def test_inference_streams_tokens_in_order_before_the_job_is_final(stack):
    response = requests.post(stack.web_url + "/v1/inference", json={**BODY, "stream": True},
                             headers=ALICE, stream=True, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    job_id = response.headers["X-MES-Job-ID"]
    seen, status_at_first_token = [], None
    for event in parse_sse(response.iter_lines(decode_unicode=True)):
        seen.append(event)
        if isinstance(event, TokenEvent) and status_at_first_token is None:
            status_at_first_token = requests.get(f"{stack.web_url}/v1/jobs/{job_id}",
                                                 headers=ALICE, timeout=5).json()["status"]
        if isinstance(event, DoneEvent):
            break
    assert status_at_first_token == "running"  # the text came while the job still ran
    statuses = [e.status for e in seen if isinstance(e, StatusEvent)]
    assert statuses == ["queued", "running", "succeeded"]
    assert isinstance(seen[-1], DoneEvent) and seen[-1].job["status"] == "succeeded"
    assert sum(isinstance(e, TokenEvent) for e in seen) > 1
    assert text_of(seen) == seen[-1].job["result"]["text"]
    final = requests.get(f"{stack.web_url}/v1/jobs/{job_id}", headers=ALICE, timeout=5).json()
    assert seen[-1].job == final  # done carries the job exactly as GET shows it


def test_a_final_job_replays_and_resumes_after_any_event(stack):
    job_id = submit(stack, options={"max_tokens": 8})
    whole = events_of(open_events(stack, job_id))
    assert isinstance(whole[-1], DoneEvent)
    again = events_of(open_events(stack, job_id))
    assert [(e.id, e.type, e.data) for e in again] == [(e.id, e.type, e.data) for e in whole]
    for cut, event in enumerate(whole[:-1]):
        resumed = events_of(requests.get(f"{stack.web_url}/v1/jobs/{job_id}/events",
                                         headers={**ALICE, "Last-Event-ID": event.id},
                                         stream=True, timeout=30))
        assert [e.id for e in resumed] == [e.id for e in whole[cut + 1:]]
    by_query = events_of(open_events(stack, job_id, after=whole[0].id))
    assert [e.id for e in by_query] == [e.id for e in whole[1:]]


def test_resuming_mid_job_has_no_gaps_or_repeats(stack):
    job_id = submit(stack)
    first = open_events(stack, job_id)
    lines = first.iter_lines(decode_unicode=True)
    part = []
    for event in parse_sse(lines):
        part.append(event)
        if sum(isinstance(e, TokenEvent) for e in part) == 2:
            break
    first.close()  # a dropped connection in the middle of the reply
    rest = events_of(requests.get(f"{stack.web_url}/v1/jobs/{job_id}/events",
                                  headers={**ALICE, "Last-Event-ID": part[-1].id},
                                  stream=True, timeout=30))
    joined = part + rest
    assert len({e.id for e in joined}) == len(joined)
    assert [e.id for e in joined] == [e.id for e in events_of(open_events(stack, job_id))]


def test_a_retried_job_emits_restart_before_its_new_text(stack, faults):
    faults(error_mid_stream=1)
    response = requests.post(stack.web_url + "/v1/inference", json={**BODY, "stream": True},
                             headers=ALICE, stream=True, timeout=60)
    seen = events_of(response)
    kinds = [e.type for e in seen]
    assert "restart" in kinds
    restart = kinds.index("restart")
    assert "token" in kinds[:restart]  # the failed attempt had streamed text first
    assert seen[-1].job["status"] == "succeeded" and seen[-1].job["attempts"] == 2
    assert text_of(seen) == seen[-1].job["result"]["text"]


def test_another_keys_job_is_not_found(stack):
    job_id = submit(stack, options={"max_tokens": 4})
    response = open_events(stack, job_id, headers=BOB)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    bad = requests.get(f"{stack.web_url}/v1/jobs/{job_id}/events",
                       headers={**ALICE, "Last-Event-ID": "not-an-id"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"


def test_a_job_waiting_in_the_queue_gets_heartbeats(stack, faults):
    faults(hang=True)  # the engine holds every generation: the slots fill, the next job waits
    blockers = [submit(stack) for _ in range(2)]
    waiting = submit(stack)
    response = open_events(stack, waiting)
    pings = 0
    for line in response.iter_lines(decode_unicode=True):
        if line == ": ping":
            pings += 1
            if pings == 3:
                break
    response.close()
    for job_id in [*blockers, waiting]:
        requests.delete(f"{stack.web_url}/v1/jobs/{job_id}", headers=ALICE, timeout=10)
    assert pings == 3


def test_closing_a_native_stream_leaves_the_job_running(stack):
    job_id = submit(stack, options={"max_tokens": 16})
    response = open_events(stack, job_id)
    for event in parse_sse(response.iter_lines(decode_unicode=True)):
        if isinstance(event, TokenEvent):
            break
    response.close()
    final = stack.settle([job_id], 60)[job_id]
    assert final["status"] == "succeeded"


def raw_stream(url: str, path: str, body: bytes | None = None) -> socket.socket:
    """Open a streaming request on a bare socket, so the test decides when it closes."""
    parts = urlparse(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    method = "POST" if body is not None else "GET"
    head = (f"{method} {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: {ALICE['Authorization']}\r\nAccept: text/event-stream\r\n")
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    sock.sendall(head.encode() + b"\r\n" + (body or b""))
    return sock


def test_a_stream_that_cancels_on_disconnect_stops_the_backend(stack):
    before = stack.engine_stats(SLOW)["cancelled"]
    job_id = submit(stack, options={"max_tokens": 64})
    sock = raw_stream(stack.web_url, f"/v1/jobs/{job_id}/events?cancel_on_disconnect=true")
    received = b""
    while b"event: token" not in received:
        received += sock.recv(4096)
    closed_at = time.monotonic()
    sock.close()
    wait_until(lambda: stack.jobs([job_id])[job_id]["status"] == "cancelled", 10,
               "the job cancelled after its stream closed")
    wait_until(lambda: stack.engine_stats(SLOW)["cancelled"] > before, 10,
               "the engine stopped generating")
    print(f"backend stopped {time.monotonic() - closed_at:.2f}s after the client went away")
    assert stack.engine_stats(SLOW)["active"] == 0


def test_the_client_streams_typed_events_and_resumes(stack):
    with MESClient(stack.web_url, ALICE["Authorization"].split()[1]) as client:
        events = list(client.stream(SLOW, "Hello", options={"max_tokens": 12}))
        assert isinstance(events[0], StatusEvent) and isinstance(events[-1], DoneEvent)
        job = events[-1].job
        assert text_of(events) == job["result"]["text"]
        middle = events[len(events) // 2]
        after = list(client.stream_job(job["id"], after=middle.id))
        assert [e.id for e in after] == [e.id for e in events[len(events) // 2 + 1:]]


def test_many_open_streams_do_not_starve_other_requests(stack):
    job_ids = [submit(stack, options={"max_tokens": 24}) for _ in range(4)]
    finished, errors = [], []

    def follow(job_id):
        try:
            events = events_of(open_events(stack, job_id))
            finished.append(events[-1].job["status"])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=follow, args=(job_ids[i % 4],)) for i in range(60)]
    for thread in threads:
        thread.start()
    health = requests.get(stack.web_url + "/v1/jobs?limit=1", headers=ALICE, timeout=10)
    for thread in threads:
        thread.join(60)
    assert health.status_code == 200
    assert not errors and finished == ["succeeded"] * 60


def test_mes_submit_stream_prints_tokens_then_the_outcome(stack):
    import io

    from mes.cli import main
    out, err = io.StringIO(), io.StringIO()
    code = main(["submit", "--model", SLOW, "--prompt", "Hi", "--option", "max_tokens=10",
                 "--stream"], environ={"MES_URL": stack.web_url,
                                       "MES_API_KEY": ALICE["Authorization"].split()[1]},
                stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    job_id = err.getvalue().strip().splitlines()[-1].split()[1]
    job = requests.get(f"{stack.web_url}/v1/jobs/{job_id}", headers=ALICE, timeout=5).json()
    assert out.getvalue() == job["result"]["text"] + "\n"
    assert err.getvalue().strip().endswith(f"{job_id} succeeded")
