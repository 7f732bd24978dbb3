"""Hold the Celery settings that both the web side (sending) and workers (running) use."""

from __future__ import annotations

from typing import Any

from mes.jobs import Job
from mes.registry import ModelRegistry, parse_warmup
from mes.settings import Settings

EXECUTE_TASK = "mes.jobs.execute"
WARMUP_TASK = "mes.models.warmup"
# Redis priorities: kombu keeps one list per step and pops the lowest step first, so
# interactive jobs (0) are served before any waiting batch job (9) of the same family.
# The batch list of queue mes.<family> is "mes.<family>:9".
PRIORITY_SEP = ":"
# The broker step of each lane of mes.jobs.PRIORITIES.
BROKER_STEPS = {"interactive": 0, "batch": 9}
PRIORITY_STEPS = sorted(BROKER_STEPS.values())


def task_priority(job: Job) -> int:
    """Return the broker priority of a job's lane; a batch job that waited too long is promoted."""
    if job.promoted_at is not None:
        return BROKER_STEPS["interactive"]
    return BROKER_STEPS.get(job.priority, 0)


def broker_lists(queue: str) -> list[str]:
    """Return the Redis lists that hold a queue's waiting messages, interactive first."""
    return [queue] + [f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS[1:]]
REAP_TASK = "mes.maintenance.reap"
RELEASE_TASK = "mes.scheduling.release"


def beat_schedule(settings: Settings, registry: ModelRegistry) -> dict[str, Any]:
    """Return beat's schedule as data: a reaper per family and a warm-up per model that has one.

    A schedule is a number of seconds, or {"cron": (minute, hour, day, month, weekday)}.
    """
    schedule: dict[str, Any] = {
        f"reap-{family.name}": {
            "task": REAP_TASK,
            "schedule": float(settings.reaper_interval_s),
            "args": (family.name,),
            # A sweep that waited longer than its interval is stale: the next one replaces it.
            "options": {"queue": family.queue, "expires": float(settings.reaper_interval_s)},
        }
        for family in registry.families
    }

    for spec in registry.models:
        if not spec.warmup:
            continue
        kind, value = parse_warmup(spec.warmup)
        every = float(value) if kind == "interval" else 60.0
        schedule[f"warmup-{spec.id}"] = {
            "task": WARMUP_TASK,
            "schedule": every if kind == "interval" else {"cron": value},
            "args": (spec.id,),
            # A warm-up that could not run before the next one is due is pointless.
            "options": {"queue": spec.queue, "expires": every,
                        "priority": BROKER_STEPS["interactive"]},
        }
    return schedule


def celery_config(settings: Settings) -> dict[str, Any]:
    """Return Celery's config for long, expensive jobs on a Redis broker."""
    visibility = settings.visibility_timeout_s
    transport = {
        # Redis redelivers an unacked message after this; it must outlast the longest task
        # or a running job is handed out again (celery#5935).
        "visibility_timeout": visibility,
        # Notice a dead connection within a minute instead of hanging on it.
        "health_check_interval": 25,
        "socket_keepalive": True,
        "priority_steps": PRIORITY_STEPS,
        "sep": PRIORITY_SEP,
        "queue_order_strategy": "priority",
    }
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": visibility},
        # Celery reads this third copy for some code paths; keep all three equal.
        "visibility_timeout": visibility,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # Our job store is the source of truth; Celery's results would only cost memory.
        "task_ignore_result": True,
        "result_expires": 3600,
        # Ack after the task ran, so a worker that dies mid-job does not lose it.
        "task_acks_late": True,
        # A child killed by the OS (OOM, -9) requeues its job instead of dropping it.
        "task_reject_on_worker_lost": True,
        # One job at a time per process: prefetching would park jobs behind a long one.
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        # On a lost broker connection, requeue running late-ack tasks rather than run them twice.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_create_missing_queues": True,
        "task_default_queue": "mes.default",
        # Task events only while someone watches: Flower turns them on in every worker when
        # it starts and every 5 s after (its --enable_events). Left on for good, the
        # "received" event is one more Redis write between a job's arrival and its start,
        # 1.8 ms of its time to first token here (docs/benchmarks.md, issue 13). The "sent"
        # event stays off: it would cost the web a publish per job.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        # Beat keeps its schedule in Redis and holds a lock there: one leader across hosts.
        "beat_scheduler": "redbeat.RedBeatScheduler",
        "redbeat_redis_url": settings.redis_url,
        "redbeat_lock_timeout": 5 * max(settings.reaper_interval_s, 5),
        # redbeat retries a lock held by a dead beat only every beat_max_loop_interval (300 s
        # by default): with 5 s, a restarted beat leads again within the lock's timeout + 5 s.
        "beat_max_loop_interval": 5,
        # A child that grew past this (KiB) is replaced after its current job.
        "worker_max_memory_per_child": 512_000,
        # On SIGTERM, give running jobs this long to finish before they are requeued.
        "worker_soft_shutdown_timeout": 30.0,
    }
