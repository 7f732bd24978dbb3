"""Send jobs to their queues by task name; the web side never imports worker code."""

from __future__ import annotations

from celery import Celery

from mes.jobs import Job
from mes.queueing import EXECUTE_TASK, celery_config, task_priority
from mes.settings import Settings


class CeleryDispatcher:
    """Publish `mes.jobs.execute(job_id)` on the job's family queue."""

    def __init__(self, app: Celery):
        self.app = app

    @classmethod
    def from_settings(cls, settings: Settings) -> "CeleryDispatcher":
        """Build a sending-only Celery app with the workers' broker settings."""
        app = Celery("mes-web", set_as_current=False)
        app.conf.update(celery_config(settings))
        return cls(app)

    def send(self, job: Job) -> None:
        """Queue the job on its family's queue, in its priority lane."""
        # ignore_result: without it Celery SUBSCRIBEs to the task's result channel before
        # the push and UNSUBSCRIBEs after, two Redis round trips on the way to the worker
        # for a result nobody reads (the job store holds it).
        self.app.send_task(EXECUTE_TASK, args=[job.id], queue=job.queue,
                           priority=task_priority(job), ignore_result=True,
                           headers={"request_id": job.request_id} if job.request_id else None)
