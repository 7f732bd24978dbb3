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


def connect_refused(engine) -> bool:
    try:
        socket.create_connection((engine.host, engine.port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def test_refuse_s_closes_the_listener_then_listens_again(engine, http, wait_until):
    assert post(engine, http).status_code == 200
    with requests.Session() as admin:
        state = admin.post(engine.url + "/mes-engine/faults", json={"refuse_s": 0.5}).json()
    assert 0 < state["refuse_s"] <= 0.5
    assert connect_refused(engine)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(engine.url + "/api/version", timeout=2)
    wait_until(lambda: not connect_refused(engine), what="the engine to listen again")
    assert requests.get(engine.url + "/api/version", timeout=2).status_code == 200
    assert engine.faults.snapshot()["refuse_s"] == 0


def test_refuse_s_keeps_open_connections_working(engine, wait_until):
    with requests.Session() as session:
        assert session.get(engine.url + "/api/version").status_code == 200  # keep-alive connection
        engine.faults.update({"refuse_s": 30})
        assert connect_refused(engine)
        assert session.get(engine.url + "/api/version").status_code == 200  # same socket still served
        session.delete(engine.url + "/mes-engine/faults")  # clearing ends the window early
    # The serving loop reopens the socket on its next turn, well before the 30 s window ends.
    wait_until(lambda: not connect_refused(engine), what="the listening socket to reopen")
    assert requests.get(engine.url + "/api/version", timeout=5).status_code == 200


def test_refuse_s_from_startup_config(make_engine, wait_until):
    engine = make_engine(faults={"refuse_s": 0.3})
    wait_until(lambda: not connect_refused(engine), what="the startup refusal to end")
    assert requests.get(engine.url + "/", timeout=2).text == "Ollama is running"


def test_shutdown_during_a_refusal_window_is_prompt(make_engine):
    engine = make_engine()
    engine.faults.update({"refuse_s": 60})
    assert connect_refused(engine)
    engine.shutdown()  # the fixture then checks that no engine thread is left


SCHEMA = {"type": "object", "properties": {"age": {"type": "integer"}, "name": {"type": "string"}},
          "required": ["age", "name"]}


def structured(engine, http, stream=False, **body):
    body = {"model": MODEL, "prompt": "Ollama is 22", "format": SCHEMA, "stream": stream, **body}
    response = http.post(engine.url + "/api/generate", json=body, stream=stream)
    if not stream:
        return response.json()["response"]
    return "".join(json.loads(line)["response"] for line in response.iter_lines() if line)


def parses(text):
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def test_bad_json_kinds(engine, http):
    good = structured(engine, http)
    doc = json.loads(good)
    engine.faults.update({"bad_json_next": 1, "bad_json_kind": "invalid"})
    invalid = structured(engine, http)
    assert not parses(invalid) and invalid.startswith("{'") and invalid.endswith(",}")
    engine.faults.update({"bad_json_next": 1, "bad_json_kind": "fenced"})
    fenced = structured(engine, http, stream=True)
    inner = fenced.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(inner) == doc and not parses(fenced) and not fenced.startswith("```")
    engine.faults.update({"bad_json_next": 1, "bad_json_kind": "truncated"})
    truncated = structured(engine, http)
    assert not parses(truncated) and json.dumps(doc).startswith(truncated) and len(truncated) < len(good)
    engine.faults.update({"bad_json_next": 1, "bad_json_kind": "prose"})
    prose = structured(engine, http)
    assert not any(c in prose for c in "{}[]") and str(doc["age"]) in prose
    assert structured(engine, http) == good  # the fault is used up


def test_bad_json_spares_requests_without_format(engine, http):
    engine.faults.update({"bad_json_next": 1, "bad_json_kind": "prose"})
    plain = post(engine, http).json()["response"]
    assert len(plain.split()) == 16
    assert engine.faults.snapshot()["bad_json_next"] == 1
    broken = structured(engine, http, format="json")
    assert not any(c in broken for c in "{}"), broken
    assert engine.faults.snapshot()["bad_json_next"] == 0


def test_new_fault_validation(engine, http):
    for bad in ({"refuse_s": -1}, {"refuse_s": "soon"}, {"bad_json_next": 1.5}, {"bad_json_kind": "weird"}):
        assert http.post(engine.url + "/mes-engine/faults", json=bad).status_code == 400, bad
    assert engine.faults.snapshot()["bad_json_kind"] == "invalid"
