"""Rate limits per key, and input limits: no input gets past them, and none makes a 500."""

from __future__ import annotations

import json

import pytest

from tests.web.conftest import ALICE, BOB, OPS, ROOT

BODY = {"model": "smollm2:135m", "prompt": "Hello"}


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code and error["message"] and isinstance(error["details"], dict)
    return error


# -- rate limits ------------------------------------------------------------------------------

@pytest.fixture
def limited(make_app):
    app = make_app(rate_limits=(("default", "5/minute"), ("alice", "3/minute"),
                                ("ops", "unlimited")))
    return app.test_client()


def test_over_its_rate_a_key_gets_429_with_retry_after(limited):
    for _ in range(3):
        assert limited.get("/v1/models", headers=ALICE).status_code == 200
    response = limited.get("/v1/models", headers=ALICE)
    error = assert_error(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert "3 per 1 minute" in error["details"]["limit"]


def test_one_bucket_per_key_across_every_route(limited):
    assert limited.post("/v1/jobs", json=BODY, headers=ALICE).status_code == 202
    assert limited.get("/v1/jobs", headers=ALICE).status_code == 200
    assert limited.get("/v1/models", headers=ALICE).status_code == 200
    assert_error(limited.post("/v1/jobs", json=BODY, headers=ALICE), 429, "rate_limited")
    assert_error(limited.get("/v1/status", headers=ALICE), 429, "rate_limited")


def test_keys_are_counted_apart_with_the_default_for_keys_without_their_own(limited):
    for _ in range(4):
        limited.get("/v1/models", headers=ALICE)
    for _ in range(5):
        assert limited.get("/v1/models", headers=BOB).status_code == 200
    assert_error(limited.get("/v1/models", headers=BOB), 429, "rate_limited")
    for _ in range(20):
        assert limited.get("/v1/models", headers=OPS).status_code == 200  # unlimited
        assert limited.get("/v1/models", headers=ROOT).status_code == 200  # admin, not named


def test_an_admin_key_named_in_the_limits_is_limited(make_app):
    client = make_app(rate_limits=(("default", "50/minute"), ("root", "2/minute"))).test_client()
    for _ in range(2):
        assert client.get("/v1/status", headers=ROOT).status_code == 200
    assert_error(client.get("/v1/status", headers=ROOT), 429, "rate_limited")


def test_counts_live_in_redis_so_every_web_process_shares_them(make_app, redis):
    one = make_app(rate_limits=(("default", "2/minute"),)).test_client()
    two = make_app(rate_limits=(("default", "2/minute"),)).test_client()
    assert one.get("/v1/models", headers=OPS).status_code == 200
    assert two.get("/v1/models", headers=OPS).status_code == 200
    assert_error(one.get("/v1/models", headers=OPS), 429, "rate_limited")
    assert any(key.startswith("mes:ratelimit") for key in redis.keys("*"))


def test_strangers_and_service_routes_are_not_limited(limited):
    for _ in range(10):
        assert limited.get("/health").status_code == 200
        assert limited.get("/ready").status_code == 503  # no backend here, but not 429
        assert limited.get("/metrics").status_code == 200
        assert limited.get("/openapi.json").status_code == 200
        assert_error(limited.get("/v1/models"), 401, "unauthorized")


# -- input limits -----------------------------------------------------------------------------

@pytest.fixture
def small(make_app):
    return make_app(max_prompt_chars=100, max_messages=3).test_client()


@pytest.mark.parametrize("body", [
    {**BODY, "prompt": "x" * 101},
    {**BODY, "prompt": "x" * 60, "system": "y" * 41},
    {"model": "smollm2:135m", "messages": [{"role": "user", "content": "x" * 51},
                                           {"role": "assistant", "content": "y" * 50}]},
])
def test_a_prompt_over_the_limit_is_413(small, dispatcher, body):
    for path in ("/v1/jobs", "/v1/inference"):
        error = assert_error(small.post(path, json=body, headers=ALICE), 413, "payload_too_large")
        assert error["details"] == {"chars": 101, "max_prompt_chars": 100}
    assert dispatcher.sent == []
    assert small.post("/v1/jobs", json={**BODY, "prompt": "x" * 100},
                      headers=ALICE).status_code == 202


def test_too_many_messages_is_400(small):
    message = {"role": "user", "content": "hi"}
    error = assert_error(small.post("/v1/jobs", json={"model": "smollm2:135m",
                                                      "messages": [message] * 4},
                                    headers=ALICE), 400, "invalid_request")
    assert error["details"]["max_messages"] == 3 and "messages" in error["details"]["fields"]
    assert small.post("/v1/jobs", json={"model": "smollm2:135m", "messages": [message] * 3},
                      headers=ALICE).status_code == 202


def test_max_tokens_over_the_models_cap_is_400_with_the_cap(client, dispatcher):
    # smollm2:135m has max_tokens 64 in tests/fixtures/models.json.
    body = {**BODY, "options": {"max_tokens": 65}}
    for path in ("/v1/jobs", "/v1/inference"):
        error = assert_error(client.post(path, json=body, headers=ALICE), 400, "invalid_request")
        assert error["details"]["max_tokens"] == 64 and error["details"]["model"] == "smollm2:135m"
        assert "max_tokens" in error["details"]["fields"]["options"]
    assert dispatcher.sent == []
    assert client.post("/v1/jobs", json={**BODY, "options": {"max_tokens": 64}},
                       headers=ALICE).status_code == 202


def test_the_body_size_limit_is_413(make_app):
    client = make_app(max_body_bytes=2048).test_client()
    response = client.post("/v1/jobs", json={**BODY, "prompt": "x" * 3000}, headers=ALICE)
    assert_error(response, 413, "payload_too_large")


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("raw", [
    '{"model": "smollm2:135m", "prompt": "a", "metadata": {"deep": %s}}' % nested(100),
    '{"model": "smollm2:135m", "prompt": "a", "format": %s}' % nested(500),
    nested(50_000),
    '{"model": "smollm2:135m", "prompt": "a", "metadata": ' + '{"a":' * 5000 + "1" + "}" * 5001,
])
def test_deeply_nested_json_is_400_not_500(client, raw):
    response = client.post("/v1/jobs", data=raw, content_type="application/json", headers=ALICE)
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("body,code", [
    ({**BODY, "metadata": {"a": "b" * 4100}}, "invalid_request"),
    ({**BODY, "format": {"type": "object", "properties": {
        f"p{i}": {"type": "string", "description": "d" * 100} for i in range(1000)}}},
     "invalid_schema"),
    ({**BODY, "format": {"type": "nope"}}, "invalid_schema"),
    ({**BODY, "options": {"temperature": float("nan")}}, "invalid_request"),
    ({**BODY, "options": {"seed": 1.5}}, "invalid_request"),
    ({**BODY, "options": {"stop": ["x"] * 17}}, "invalid_request"),
    ({**BODY, "model": "no-such-model"}, "unknown_model"),
    ({**BODY, "model": ""}, "invalid_request"),
    ({**BODY, "prompt": ""}, "invalid_request"),
    ({**BODY, "prompt": None}, "invalid_request"),
    ({**BODY, "messages": []}, "invalid_request"),
    ({**BODY, "wait_s": 5}, "invalid_request"),  # only /v1/inference takes wait_s
    ([BODY], "invalid_request"),
    ("just a string", "invalid_request"),
    (None, "invalid_request"),
])
def test_bad_inputs_are_refused_with_their_code(client, body, code):
    raw = json.dumps(body, allow_nan=True)
    response = client.post("/v1/jobs", data=raw, content_type="application/json", headers=ALICE)
    assert_error(response, 400, code)


@pytest.mark.parametrize("raw,ctype", [
    (b"\xff\xfe\x00garbage", "application/json"),
    (b'{"model": "smollm2:135m", "prompt": "a"', "application/json"),
    (b"", "application/json"),
    (b"model=smollm2", "application/x-www-form-urlencoded"),
])
def test_broken_bodies_are_400(client, raw, ctype):
    for path in ("/v1/jobs", "/v1/inference"):
        response = client.post(path, data=raw, content_type=ctype, headers=ALICE)
        assert_error(response, 400, "invalid_request")


def test_a_lone_surrogate_in_a_prompt_is_queued_not_a_500(client, store):
    raw = b'{"model": "smollm2:135m", "prompt": "\\ud800"}'
    response = client.post("/v1/jobs", data=raw, content_type="application/json", headers=ALICE)
    assert response.status_code == 202
    assert store.get(response.get_json()["id"]).request["prompt"] == "\ud800"


@pytest.mark.parametrize("query", ["wait=nan", "wait=inf", "wait=-1", "wait=1e309", "wait=x",
                                   "extra=1"])
def test_bad_queries_are_400(client, query):
    job_id = client.post("/v1/jobs", json=BODY, headers=ALICE).get_json()["id"]
    assert_error(client.get(f"/v1/jobs/{job_id}?{query}", headers=ALICE), 400, "invalid_request")


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "cursor=-5", "cursor=abc",
                                   "status=done", "model=", "colour=red"])
def test_bad_list_queries_are_400(client, query):
    assert_error(client.get(f"/v1/jobs?{query}", headers=ALICE), 400, "invalid_request")


@pytest.mark.parametrize("path", ["/v1/jobs/%00", "/v1/jobs/" + "x" * 5000, "/v1/jobs/..%2F..",
                                  "/v1/models/%ff%fe", "/v1/models/" + "m" * 5000,
                                  "/v1/models/a%2Fb/load"])
def test_odd_ids_are_404_or_400_never_500(client, path):
    method = client.post if path.endswith("/load") else client.get
    response = method(path, headers=ROOT)
    assert response.status_code in (400, 404), response.get_data(as_text=True)


def test_a_bad_idempotency_key_is_400(client):
    response = client.post("/v1/jobs", json=BODY, headers={**ALICE, "Idempotency-Key": "x" * 256})
    assert_error(response, 400, "invalid_request")
