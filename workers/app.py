"""Build the workers' Celery app: `make_celery(settings)`."""

from __future__ import annotations

import logging
import socket

from celery import Celery, signals
from celery.schedules import crontab

from mes.worker.heartbeat import WorkerHeartbeat
from mes.logs import configure_logging
from mes.worker.runner import JobRunner, build_runner
from mes.queueing import WARMUP_TASK, beat_schedule, celery_config
from mes.registry import ModelRegistry
from mes.scheduling.backend import scheduler_for
from mes.services import Services, connect_redis
from mes.settings import Settings
from workers.tasks import register_tasks

log = logging.getLogger("mes.workers")


class WorkerServices:
    """Build Services and the job runner lazily, once per process, so no socket crosses a fork."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._services: Services | None = None
        self._runner: JobRunner | None = None
        self._scheduler = False  # not built yet (None means: scheduling is off)

    def get(self) -> Services:
        """Return this process's services, building them on first use."""
        if self._services is None:
            self._services = Services.from_settings(self.settings)
        return self._services

    def runner(self) -> JobRunner:
        """Return this process's job runner (it owns the lease renewer thread)."""
        if self._runner is None:
            self._runner = build_runner(self.get())
        return self._runner

    def scheduler(self):
        """Return this process's swap-aware scheduler, or None when scheduling is off."""
        if self._scheduler is False:
            self._scheduler = scheduler_for(self.get())
        return self._scheduler

    def reset(self) -> None:
        """Forget objects inherited from the parent process."""
        self._services = None
        self._runner = None
        self._scheduler = False


def _celery_schedule(value):
    """Turn a schedule from mes.queueing into the object beat expects."""
    if isinstance(value, dict):
        minute, hour, day_of_month, month_of_year, day_of_week = value["cron"]
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month_of_year, day_of_week=day_of_week)
    return value


def make_celery(settings: Settings) -> Celery:
    """Create the Celery app with MES's tasks, queues and signal handlers."""
    app = Celery("mes", set_as_current=True)
    app.conf.update(celery_config(settings))
    registry = ModelRegistry.from_file(settings.models_file)
    app.conf.beat_schedule = {name: {**entry, "schedule": _celery_schedule(entry["schedule"])}
                              for name, entry in beat_schedule(settings, registry).items()}
    services = WorkerServices(settings)
    register_tasks(app, services)
    heartbeats: list[WorkerHeartbeat] = []

    @signals.setup_logging.connect(weak=False)
    def own_logging(**kwargs):
        # Connecting this signal stops Celery from configuring logging itself.
        configure_logging(settings.log_level, settings.log_format)

    @signals.worker_process_init.connect(weak=False)
    def fresh_connections(**kwargs):
        services.reset()

    @signals.worker_ready.connect(weak=False)
    def start_heartbeat(sender=None, **kwargs):
        queues = [queue.name for queue in sender.app.amqp.queues.consume_from.values()] \
            if sender is not None else []
        beat = WorkerHeartbeat(connect_redis(settings.redis_url), queues,
                               getattr(sender, "hostname", socket.gethostname()),
                               settings.worker_heartbeat_s)
        beat.start()
        heartbeats.append(beat)
        log.info("event=worker_ready queues=%s", ",".join(queues))

    @signals.worker_ready.connect(weak=False)
    def warm_on_start(sender=None, **kwargs):
        consumed = {queue.name for queue in sender.app.amqp.queues.consume_from.values()} \
            if sender is not None else set()
        for model_id in registry.warmup_on_start:
            spec = registry.get(model_id)
            if spec.queue in consumed:
                sender.app.send_task(WARMUP_TASK, args=[model_id], queue=spec.queue, expires=300,
                                     ignore_result=True)

    @signals.worker_shutdown.connect(weak=False)
    def stop_heartbeat(**kwargs):
        for beat in heartbeats:
            beat.stop()

    return app
