"""Register the Celery tasks: thin shells around mes.worker (runner, reaper) and mes.scheduling."""

from __future__ import annotations

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from mes.errors import JobTimeout, MESError
from mes.queueing import EXECUTE_TASK, REAP_TASK, RELEASE_TASK, WARMUP_TASK, task_priority
from mes.worker.reaper import reap_family
from mes.worker.runner import abandon_job
from mes.scheduling.release import release_family
from mes.worker.warmup import warm_model


def register_tasks(app: Celery, services) -> None:
    """Define the tasks on the app, using per-process services."""

    # max_retries=None: the runner caps retries by attempts and the job's deadline.
    @app.task(name=EXECUTE_TASK, bind=True, ignore_result=True, max_retries=None)
    def execute(self, job_id: str) -> None:
        """Run one job; requeue it with backoff when the runner says the failure can heal."""
        s = services.get()
        try:
            outcome = services.runner().run(job_id)
        except SoftTimeLimitExceeded:
            abandon_job(job_id, JobTimeout("the job hit the worker's soft time limit"),
                        store=s.store, clock=s.clock)
            return
        if outcome.retry_in_s is not None:
            raise self.retry(countdown=outcome.retry_in_s)
        if outcome.job is None or not outcome.job.status.is_final:
            return
        scheduler = services.scheduler()
        if scheduler is not None:
            # A job ended: the backend may serve the next model now, not at the sweep.
            scheduler.run(send, s.clock.now())
        elif outcome.job.batch_id:
            # A batch job ended: its slot may take the next held job now, not at the sweep.
            release(family_of(s, outcome.job.queue))

    def send(job) -> None:
        execute.apply_async(args=[job.id], queue=job.queue, priority=task_priority(job))

    def family_of(s, queue: str) -> str:
        return next(f.name for f in s.registry.families if f.queue == queue)

    @app.task(name=RELEASE_TASK, ignore_result=True)
    def release(family: str) -> dict:
        """Hand a family's held batch jobs to its queue, as many as its workers can take."""
        s = services.get()
        scheduler = services.scheduler()
        if scheduler is not None:
            try:
                loaded = s.backend.loaded_models()  # notices a model the backend unloaded itself
            except MESError:
                loaded = None
            decision = scheduler.run(send, s.clock.now(), loaded_now=loaded)
            return {"scheduled": decision is not None,
                    "released": decision.release if decision else {}}
        spec = next(f for f in s.registry.families if f.name == family)
        return release_family(spec, store=s.store, registry=s.registry, dispatch=send).__dict__

    @app.task(name=WARMUP_TASK, ignore_result=True)
    def warmup(model_id: str) -> bool:
        """Load a model and refresh its keep_alive (from beat, or when a worker starts)."""
        s = services.get()
        return warm_model(s.registry.get(model_id), backend=s.backend, clock=s.clock,
                          residency=services.runner().residency)

    @app.task(name=REAP_TASK, ignore_result=True)
    def reap(family: str) -> dict:
        """Requeue a family's jobs whose worker died; expire queued jobs past deadline."""
        s = services.get()
        spec = next(f for f in s.registry.families if f.name == family)
        report = reap_family(spec, store=s.store, registry=s.registry, clock=s.clock,
                             dispatch=send,
                             grace_s=s.settings.lease_ttl_s,
                             batch_max_wait_s=s.settings.batch_max_wait_s)
        # Held jobs are released when they arrive and when a job ends; the sweep also covers
        # a worker that joined, a release that was skipped, or a model the backend dropped.
        return {**report.__dict__, "release": release(family)}
