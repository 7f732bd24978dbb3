"""Serve the model registry with live state."""

from __future__ import annotations

from flask import Blueprint

from mes.errors import MESError
from mes.models_view import model_states
from web.auth import require
from web.context import ctx
from web.schemas import ModelSchema

bp = Blueprint("models", __name__, url_prefix="/v1")


def _states(model_ids: list[str] | None = None) -> list[dict]:
    s = ctx().services
    try:
        loaded = {entry.get("name") or entry.get("model") for entry in s.backend.ps()}
    except MESError:
        loaded = None  # the backend is down: say "unknown", not "not loaded"
    return model_states(s.registry, s.store, loaded, model_ids)


@bp.get("/models")
@require(None)
def list_models():
    """List every model with its queue, concurrency and live counts."""
    return {"models": ModelSchema(many=True).dump(_states())}


@bp.get("/models/<path:model_id>")
@require(None)
def get_model(model_id: str):
    """Return one model; an id may contain ':' and '/'."""
    ctx().services.registry.get(model_id)
    return ModelSchema().dump(_states([model_id])[0])
