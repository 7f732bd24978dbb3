"""Serve the model registry with live state."""

from __future__ import annotations

from flask import Blueprint, g

from mes.errors import MESError
from mes.intake.backend_models import backend_model_names
from mes.intake.models_view import model_states
from mes.jobs import JobKind
from mes.intake.submit import submit_job
from web.auth import current_key, require
from web.context import ctx
from web.schemas import ModelSchema
from web.views.jobs import job_response

bp = Blueprint("models", __name__, url_prefix="/v1")


def _states(model_ids: list[str] | None = None) -> list[dict]:
    s = ctx().services
    try:
        loaded = s.backend.loaded_models()
    except MESError:
        loaded = None  # the backend is down: say "unknown", not "not loaded"
    available = None if loaded is None else backend_model_names(s.backend)
    return model_states(s.registry, s.store, loaded, model_ids, available)


@bp.get("/models")
@require(None)
def list_models():
    """List every model with its queue, concurrency and live counts."""
    return {"models": ModelSchema(many=True).dump(_states())}


def _operation(model_id: str, kind: JobKind):
    c = ctx()
    s = c.services
    body = {"model": model_id}
    if kind is JobKind.PULL:
        # A download takes as long as it takes: the deadline is the worker's own time limit.
        body["timeout_s"] = s.settings.task_soft_time_limit_s
    job, _ = submit_job(body, owner=current_key().name, store=s.store,
                        registry=s.registry, dispatcher=c.dispatcher, clock=s.clock,
                        max_timeout_s=s.settings.task_soft_time_limit_s,
                        request_id=g.get("request_id"), kind=kind)
    return job_response(job, 202)


@bp.post("/models/<path:model_id>/load")
@require("models")
def load_model(model_id: str):
    """Load a model on its own queue; answer 202 with the operation, shaped like a job."""
    return _operation(model_id, JobKind.LOAD)


@bp.post("/models/<path:model_id>/unload")
@require("models")
def unload_model(model_id: str):
    """Unload a model on its own queue; answer 202 with the operation."""
    return _operation(model_id, JobKind.UNLOAD)


@bp.post("/models/<path:model_id>/pull")
@require("models")
def pull_model(model_id: str):
    """Have the backend download a model on its own queue; answer 202 with the operation.

    While it runs, the operation's `progress` holds the bytes done and to do and the
    backend's status lines.
    """
    return _operation(model_id, JobKind.PULL)


@bp.get("/models/<path:model_id>")
@require(None)
def get_model(model_id: str):
    """Return one model; an id may contain ':' and '/'."""
    ctx().services.registry.get(model_id)
    return ModelSchema().dump(_states([model_id])[0])
