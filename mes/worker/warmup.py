"""Keep models warm: load them on a schedule or when workers start, refreshing keep_alive."""

from __future__ import annotations

import logging

from mes.backends.ollama import OllamaClient
from mes.clock import SystemClock
from mes.errors import MESError
from mes.registry import ModelSpec
from mes.worker.residency import Residency

log = logging.getLogger("mes.worker.warmup")


def warm_model(spec: ModelSpec, *, backend: OllamaClient, clock: SystemClock,
               residency: Residency | None = None) -> bool:
    """Load a model with its keep_alive; return False if there was no room or the backend failed."""
    if residency is not None:
        admission = residency.admit(spec.id, clock.now())
        if not admission.admitted:
            log.info("event=warmup_skipped model=%s queue=%s reason=%r", spec.id, spec.queue,
                     admission.reason)
            return False
    try:
        backend.load(spec.id, spec.keep_alive, options=dict(spec.runner_options))
    except MESError as exc:
        log.warning("event=warmup_failed model=%s queue=%s error=%s", spec.id, spec.queue, exc.code)
        return False
    log.info("event=warmup_done model=%s queue=%s keep_alive=%s", spec.id, spec.queue,
             spec.keep_alive)
    return True
