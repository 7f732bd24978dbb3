"""Send a job through the web's Celery dispatcher to a real redis-server and watch what it costs."""

from __future__ import annotations

import threading
import time

import pytest
import redis as redis_lib

from mes.bench.processes import start_redis
from mes.jobs import Job, JobKind, JobStatus
from mes.settings import Settings
from web.dispatch import CeleryDispatcher


@pytest.fixture
def redis_url(tmp_path):
    proc, url = start_redis(tmp_path)
    yield url
    proc.stop()


def commands_during(url: str, action) -> list[str]:
    """Return the commands Redis ran while the action ran (from MONITOR)."""
    seen: list[str] = []
    marker = redis_lib.Redis.from_url(url)
    marker.ping()  # connected before watching: its HELLO is not the action's
    monitor = redis_lib.Redis.from_url(url).monitor()
    monitor.__enter__()

    def listen():
        try:
            for command in monitor.listen():
                seen.append(command["command"])
        except redis_lib.ConnectionError:
            pass  # we hung up
    threading.Thread(target=listen, daemon=True).start()
    time.sleep(0.2)
    action()
    marker.set("end-of-action", "1")
    deadline = time.monotonic() + 5
    while not any(c.startswith("SET end-of-action") for c in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    monitor.connection.disconnect()
    return [c for c in seen if not c.startswith("SET end-of-action")]


def test_sending_a_job_costs_one_push_and_no_result_subscription(redis_url):
    settings = Settings.from_env({"MES_REDIS_URL": redis_url})
    dispatcher = CeleryDispatcher.from_settings(settings)
    job = Job(id="job_1", owner="alice", model="m", queue="mes.f", kind=JobKind.INFERENCE,
              status=JobStatus.QUEUED, created_at=1.0, deadline_at=2.0, request={},
              priority="interactive", metadata={})
    dispatcher.send(job)  # the first send connects; count the next one
    sent = commands_during(redis_url, lambda: dispatcher.send(job))
    assert [c.split()[0] for c in sent] == ["LPUSH"], sent
    assert sent[0].split()[1].strip('"').startswith("mes.f")  # the job's own queue (a lane of it)
