"""Register the Celery tasks: thin shells around mes.runner."""

from __future__ import annotations

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from mes.errors import JobTimeout
from mes.queueing import EXECUTE_TASK
from mes.runner import abandon_job, run_job


def register_tasks(app: Celery, services) -> None:
    """Define `mes.jobs.execute` on the app, using per-process services."""

    @app.task(name=EXECUTE_TASK, bind=True, ignore_result=True)
    def execute(self, job_id: str) -> None:
        """Run one job; requeue it with backoff when the runner says the failure can heal."""
        s = services.get()
        try:
            outcome = run_job(job_id, store=s.store, registry=s.registry, backend=s.backend,
                              clock=s.clock, max_retries=s.settings.backend_max_retries)
        except SoftTimeLimitExceeded:
            abandon_job(job_id, JobTimeout("the job hit the worker's soft time limit"),
                        store=s.store, clock=s.clock)
            return
        if outcome.retry_in_s is not None:
            raise self.retry(countdown=outcome.retry_in_s, max_retries=None)
