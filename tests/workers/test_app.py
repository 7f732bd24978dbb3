"""Check the Celery app's reliability settings and task registration."""

import pytest

from mes.queueing import EXECUTE_TASK
from mes.settings import Settings
from tests.conftest import MODELS_FILE
from workers.app import make_celery


@pytest.fixture(scope="module")
def settings():
    return Settings.from_env({"MES_MODELS_FILE": str(MODELS_FILE)})


@pytest.fixture(scope="module")
def app(settings):
    return make_celery(settings)


def test_celery_settings_for_long_jobs(settings, app):
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit == settings.task_time_limit_s
    assert conf.task_soft_time_limit < conf.task_time_limit
    # The visibility timeout is set in all three places, at least twice the hard limit.
    for value in (conf.broker_transport_options["visibility_timeout"],
                  conf.result_backend_transport_options["visibility_timeout"],
                  conf.visibility_timeout):
        assert value >= 2 * conf.task_time_limit
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is True
    assert conf.broker_url == settings.redis_url


def test_execute_task_is_registered_by_name(app):
    task = app.tasks[EXECUTE_TASK]
    assert task.name == "mes.jobs.execute" and task.ignore_result
