"""Every /v1 route against every way a key can be wrong, and every job route across keys."""

from __future__ import annotations

import pytest

from mes.store.apikeys import RedisKeyStore
from mes.store.batches import BatchStore
from tests.web.conftest import ALICE, BOB, OPS, ROOT, auth

JOB_BODY = {"model": "smollm2:135m", "prompt": "Hello"}


class Route:
    """One route of the API: how to call it and which scopes let a key in."""

    def __init__(self, method, path, scopes, body=None, job=False, batch=False):
        self.method, self.path, self.scopes, self.body = method, path, scopes, body
        self.job, self.batch = job or batch, batch

    def call(self, client, headers, job_id="job_none"):
        response = client.open(self.path.format(job=job_id, batch=job_id), method=self.method,
                               json=self.body, headers=headers)
        if response.mimetype == "text/event-stream":
            response.close()  # an open stream of a queued job never ends by itself
        return response

    def __repr__(self):
        return f"{self.method} {self.path}"


ROUTES = [
    Route("POST", "/v1/jobs", ("jobs",), body=JOB_BODY),
    Route("GET", "/v1/jobs", ("jobs",)),
    Route("GET", "/v1/jobs/{job}", ("jobs", "models"), job=True),
    Route("DELETE", "/v1/jobs/{job}", ("jobs",), job=True),
    Route("GET", "/v1/jobs/{job}/events", ("jobs", "models"), job=True),
    Route("POST", "/v1/inference", ("jobs",), body={**JOB_BODY, "wait_s": 0}),
    Route("GET", "/v1/models", None),
    Route("GET", "/v1/models/smollm2:135m", None),
    Route("POST", "/v1/models/smollm2:135m/load", ("models",)),
    Route("POST", "/v1/models/smollm2:135m/unload", ("models",)),
    Route("POST", "/v1/models/smollm2:135m/pull", ("models",)),
    Route("GET", "/v1/status", ("admin",)),
    Route("POST", "/v1/batches", ("jobs",), body={"requests": [{**JOB_BODY, "custom_id": "a"}]}),
    Route("GET", "/v1/batches", ("jobs",)),
    Route("GET", "/v1/batches/{batch}", ("jobs",), batch=True),
    Route("DELETE", "/v1/batches/{batch}", ("jobs",), batch=True),
    Route("GET", "/v1/batches/{batch}/results", ("jobs",), batch=True),
]
# A key for each scope, and its headers.
KEY_OF_SCOPE = {"jobs": ALICE, "models": OPS, "admin": ROOT}
BAD_HEADERS = {
    "no key": {},
    "basic scheme": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "bearer without token": {"Authorization": "Bearer "},
    "token without scheme": {"Authorization": "alice-secret-1"},
    "empty x-api-key": {"X-API-Key": ""},
    "unknown bearer": auth("wrong-key-000"),
    "unknown x-api-key": {"X-API-Key": "wrong-key-000"},
    "a key's hash": auth("sha256$" + "0" * 64),
}


@pytest.fixture
def revoked(redis):
    keystore = RedisKeyStore(redis)
    _, secret = keystore.create("gone", frozenset({"admin"}), now=1.0)
    keystore.revoke("gone", now=2.0)
    return auth(secret)


@pytest.fixture
def stored(redis):
    _, secret = RedisKeyStore(redis).create("carol", frozenset({"jobs", "models"}), now=1.0)
    return auth(secret)


def own_job(client, headers=ALICE) -> str:
    response = client.post("/v1/jobs", json=JOB_BODY, headers=headers)
    assert response.status_code == 202
    return response.get_json()["id"]


def own_batch(client, headers=ALICE) -> str:
    response = client.post("/v1/batches", json={"requests": [{**JOB_BODY, "custom_id": "a"}]},
                           headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["id"]


def own(route, client, headers=ALICE) -> str:
    """Make the thing a route reads (a job or a batch) as the given key; a dummy id if none."""
    if route.batch:
        return own_batch(client, headers)
    return own_job(client, headers) if route.job else "job_none"


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]


def test_the_matrix_covers_every_v1_route(app):
    rules = {(method, rule.rule) for rule in app.url_map.iter_rules()
             if rule.rule.startswith("/v1/") for method in rule.methods - {"HEAD", "OPTIONS"}}
    covered = {(route.method, route.path.replace("{job}", "<job_id>")
                .replace("{batch}", "<batch_id>")
                .replace("smollm2:135m", "<path:model_id>")) for route in ROUTES}
    assert covered == rules


@pytest.mark.parametrize("route", ROUTES, ids=repr)
@pytest.mark.parametrize("case", BAD_HEADERS, ids=str)
def test_missing_malformed_or_unknown_key_is_401(client, dispatcher, route, case):
    job_id = own(route, client)
    sent = len(dispatcher.sent)
    assert_error(route.call(client, BAD_HEADERS[case], job_id), 401, "unauthorized")
    assert len(dispatcher.sent) == sent


@pytest.mark.parametrize("route", ROUTES, ids=repr)
def test_revoked_key_is_401_like_an_unknown_one(client, route, revoked):
    job_id = own(route, client)
    response = route.call(client, revoked, job_id)
    unknown = route.call(client, auth("wrong-key-000"), job_id)
    assert_error(response, 401, "unauthorized")
    assert response.get_json() == unknown.get_json()


def wrong_keys(route):
    """Return the headers of keys that lack every scope of the route (admin never does)."""
    return [headers for scope, headers in KEY_OF_SCOPE.items()
            if scope != "admin" and scope not in (route.scopes or KEY_OF_SCOPE)]


# GET /v1/jobs/{id} takes jobs or models, so every key holds one of its scopes.
@pytest.mark.parametrize("route", [r for r in ROUTES if wrong_keys(r)], ids=repr)
def test_key_without_the_scope_is_403(client, dispatcher, route):
    wrong = wrong_keys(route)
    job_id = own(route, client)
    sent = len(dispatcher.sent)
    for headers in wrong:
        response = route.call(client, headers, job_id)
        assert_error(response, 403, "forbidden")
        assert response.get_json()["error"]["details"]["scopes"] == list(route.scopes)
    assert len(dispatcher.sent) == sent


@pytest.mark.parametrize("route", ROUTES, ids=repr)
def test_the_right_key_gets_in_and_admin_gets_in_everywhere(client, route):
    for headers in [KEY_OF_SCOPE[route.scopes[0]] if route.scopes else BOB, ROOT]:
        job_id = own(route, client, headers)
        response = route.call(client, headers, job_id)
        assert response.status_code in (200, 202), (route, response.get_data(as_text=True))


@pytest.mark.parametrize("route", [r for r in ROUTES if r.job], ids=repr)
def test_another_keys_job_is_404_exactly_like_a_missing_one(client, store, route, stored):
    job_id = own(route, client, ALICE)
    others = [BOB, stored] + ([OPS] if "models" in route.scopes else [])
    for headers in others:
        other = route.call(client, headers, job_id)
        missing = route.call(client, headers, job_id + "x")
        assert_error(other, 404, "not_found")
        assert other.get_json()["error"]["details"] == missing.get_json()["error"]["details"]
        assert job_id[:-1] not in str(other.headers)  # no Location or other hint
    if route.batch:  # bob could not cancel it
        assert BatchStore(store).get(job_id).cancel_requested is False
    else:
        assert store.get(job_id).status.value == "queued"
    assert route.call(client, ROOT, job_id).status_code == 200


def test_stored_keys_work_and_own_their_jobs(client, stored):
    job_id = own_job(client, stored)
    assert client.get(f"/v1/jobs/{job_id}", headers=stored).status_code == 200
    assert client.get(f"/v1/jobs/{job_id}", headers=ALICE).status_code == 404
    assert client.post("/v1/models/phi3:mini/load", headers=stored).status_code == 202
    assert_error(client.get("/v1/status", headers=stored), 403, "forbidden")


def test_lists_hold_only_the_callers_jobs_but_every_job_for_admin(client):
    alices = own_job(client, ALICE)
    bobs = own_job(client, BOB)
    ids = lambda headers: {job["id"] for job in client.get("/v1/jobs", headers=headers)
                           .get_json()["jobs"]}
    assert ids(ALICE) == {alices} and ids(BOB) == {bobs}
    assert {alices, bobs} <= ids(ROOT)


def test_an_operation_belongs_to_the_models_key_that_started_it(client):
    op = client.post("/v1/models/phi3:mini/load", headers=OPS).get_json()["id"]
    assert client.get(f"/v1/jobs/{op}", headers=OPS).status_code == 200
    assert_error(client.get(f"/v1/jobs/{op}", headers=ALICE), 404, "not_found")
    assert client.get(f"/v1/jobs/{op}", headers=ROOT).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/openapi.json", "/docs"])
def test_service_routes_need_no_key(client, path):
    assert client.get(path).status_code in (200, 503)


def test_unknown_v1_paths_say_401_to_strangers_and_404_to_keys(client):
    assert_error(client.get("/v1/secret-admin-thing"), 401, "unauthorized")
    assert_error(client.get("/v1/secret-admin-thing", headers=ALICE), 404, "not_found")


def test_a_401_names_the_scheme_and_a_405_lists_the_methods(client):
    refused = client.get("/v1/models")
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="mes"'
    wrong = client.put("/v1/jobs", headers=ALICE)
    assert_error(wrong, 405, "method_not_allowed")
    assert set(wrong.headers["Allow"].split(", ")) >= {"GET", "POST"}
