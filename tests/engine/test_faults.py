"""Fault injection and client disconnects."""

from __future__ import annotations

import json
import socket
import threading

import pytest
import requests

MODEL = "gemma:2b"


def post(engine, http, **body):
    body = {"model": MODEL, "prompt": "hello", "stream": False, **body}
    return http.post(engine.url + "/api/generate", json=body)


def counters(engine):
    return engine.stats()["models"].get(MODEL, {})


def test_fail_next_fails_exactly_n_requests(engine, http):
    state = http.post(engine.url + "/mes-engine/faults", json={"fail_next": 2, "fail_status": 503}).json()
    assert state["fail_next"] == 2 and state["hang"] is False
    for _ in range(2):
        response = post(engine, http)
        assert response.status_code == 503 and response.json() == {"error": "simulated failure"}
    assert post(engine, http).status_code == 200
    assert (counters(engine)["failed"], counters(engine)["completed"]) == (2, 1)
    assert http.get(engine.url + "/mes-engine/faults").json()["fail_next"] == 0


def test_fail_next_defaults_to_500_and_spares_unknown_models(engine, http):
    engine.faults.update({"fail_next": 1})
    assert post(engine, http, model="unknown:1").status_code == 404
    assert post(engine, http).status_code == 500
    assert post(engine, http).status_code == 200


def test_hang_blocks_until_cleared(engine, http, wait_until):
    http.post(engine.url + "/mes-engine/faults", json={"hang": True})
    result = {}

    def call():
        with requests.Session() as session:
            result["r"] = post(engine, session)

    worker = threading.Thread(target=call)
    worker.start()
    wait_until(lambda: counters(engine).get("active") == 1, what="request to hold its slot")
    assert worker.is_alive() and "r" not in result
    http.delete(engine.url + "/mes-engine/faults")
    worker.join(10)
    assert result["r"].status_code == 200 and counters(engine)["completed"] == 1


def test_hung_request_ends_when_client_disconnects(engine, wait_until):
    engine.faults.update({"hang": True})
    body = json.dumps({"model": MODEL, "prompt": "hi"}).encode()
    with socket.create_connection((engine.host, engine.port)) as sock:
        sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        wait_until(lambda: counters(engine).get("active") == 1, what="request to hang")
    wait_until(lambda: counters(engine).get("cancelled") == 1, what="hung request to notice the disconnect")
    assert counters(engine)["active"] == 0 and counters(engine)["completed"] == 0


def test_drop_mid_stream_closes_the_connection(engine, http):
    engine.faults.update({"drop_mid_stream": 1})
    lines = []
    response = http.post(engine.url + "/api/generate", json={"model": MODEL, "prompt": "hi"}, stream=True)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.RequestException):
        for line in response.iter_lines():
            lines.append(json.loads(line))
    assert len(lines) == 3 and not any(l["done"] for l in lines)
    assert post(engine, http).status_code == 200  # next request is fine
    assert counters(engine)["failed"] == 1


def test_drop_without_streaming_gives_no_response(engine, http):
    engine.faults.update({"drop_mid_stream": 1})
    with pytest.raises(requests.exceptions.ConnectionError):
        post(engine, http)


def test_error_mid_stream_is_an_in_band_line(engine, http):
    engine.faults.update({"error_mid_stream": 1})
    response = http.post(engine.url + "/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]}, stream=True)
    lines = [json.loads(line) for line in response.iter_lines() if line]
    assert response.status_code == 200
    assert lines[-1] == {"error": "simulated mid-stream failure"}
    assert len(lines) == 4 and not any(l.get("done") for l in lines)
    engine.faults.update({"error_mid_stream": 1})
    single = post(engine, http)
    assert single.status_code == 500 and single.json() == {"error": "simulated mid-stream failure"}
    assert counters(engine)["failed"] == 2


def test_disconnect_mid_stream_stops_generation(make_engine, wait_until):
    engine = make_engine(token_ms=20, response_tokens=200)
    with requests.Session() as session:
        response = session.post(engine.url + "/api/generate", json={"model": MODEL, "prompt": "long"}, stream=True)
        lines = response.iter_lines()
        assert json.loads(next(lines))["done"] is False
        assert json.loads(next(lines))["done"] is False
        response.close()
    wait_until(lambda: counters(engine).get("cancelled") == 1, what="generation to notice the disconnect")
    state = counters(engine)
    assert state["active"] == 0 and state["completed"] == 0 and 2 <= state["tokens"] < 200


def test_load_ms_fault_overrides_load_latency(engine, http):
    engine.faults.update({"load_ms": 30})
    assert post(engine, http).json()["load_duration"] >= 30_000_000
    engine.faults.update({"load_ms": None})
    assert engine.faults.snapshot()["load_ms"] is None


def test_fault_validation(engine, http):
    assert http.post(engine.url + "/mes-engine/faults", json={"explode": True}).status_code == 400
    assert http.post(engine.url + "/mes-engine/faults", json={"hang": "yes"}).status_code == 400
    assert http.post(engine.url + "/mes-engine/faults", json={"fail_next": -1}).status_code == 400
    assert http.post(engine.url + "/mes-engine/faults", data=b"nope").status_code == 400
    # A rejected update changes nothing, even its valid keys.
    assert http.post(engine.url + "/mes-engine/faults", json={"fail_next": 3, "hang": 1}).status_code == 400
    assert http.get(engine.url + "/mes-engine/faults").json()["fail_next"] == 0


def test_startup_faults_come_from_config(make_engine, http):
    engine = make_engine(faults={"fail_next": 1, "fail_status": 502})
    assert post(engine, http).status_code == 502
    assert post(engine, http).status_code == 200
