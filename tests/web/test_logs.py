"""Logs never hold a key, and hold prompts only when the operator opts in."""

from __future__ import annotations

import logging

import pytest

from mes.store.apikeys import RedisKeyStore
from mes.logs import JsonFormatter
from tests.web.conftest import auth

PROMPT = "the-secret-plan-for-tuesday"


def captured(caplog) -> str:
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


def exercise(client, headers):
    """Hit success and error paths alike: submit, read, list, 404, 403, 400 and a bad method."""
    job = client.post("/v1/jobs", json={"model": "smollm2:135m", "prompt": PROMPT},
                      headers=headers)
    job_id = job.get_json()["id"]
    client.get(f"/v1/jobs/{job_id}", headers=headers)
    client.get("/v1/jobs", headers=headers)
    client.get("/v1/jobs/job_missing", headers=headers)
    client.get("/v1/status", headers=headers)
    client.post("/v1/jobs", json={"model": "nope", "prompt": PROMPT}, headers=headers)
    client.put("/v1/jobs", headers=headers)
    return job_id


def test_no_key_reaches_the_logs_on_any_path(make_app, redis, caplog):
    app = make_app(rate_limits=(("default", "8/minute"),))
    client = app.test_client()
    _, secret = RedisKeyStore(redis).create("ci", frozenset({"jobs"}), now=1.0)
    with caplog.at_level(logging.DEBUG):
        exercise(client, auth(secret))
        exercise(client, {"X-API-Key": secret})  # ends over the rate: 429s are logged too
        client.get("/v1/models", headers=auth(secret + "x"))  # unknown key
        client.get("/v1/models", headers={"Authorization": f"Basic {secret}"})
        client.get("/metrics", headers=auth(secret))
    text = captured(caplog)
    assert '"status": 429' in text and '"status": 401' in text and '"key": "ci"' in text
    assert secret not in text and secret[4:] not in text
    for settings_secret in ("alice-secret-1", "root-secret-4444"):
        assert settings_secret not in text


@pytest.mark.parametrize("log_prompts", [False, True])
def test_prompts_are_logged_only_when_the_operator_opts_in(make_app, caplog, log_prompts):
    client = make_app(log_prompts=log_prompts).test_client()
    with caplog.at_level(logging.DEBUG):
        job_id = exercise(client, auth("alice-secret-1"))
    text = captured(caplog)
    assert (PROMPT in text) is log_prompts
    if log_prompts:
        [line] = [r for r in caplog.records if r.name == "mes.web.prompts"]
        assert line.job_id == job_id and line.prompt == PROMPT and line.model == "smollm2:135m"
