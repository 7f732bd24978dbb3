"""Tell which of the registry's models the backend has, from its /api/tags list.

A real Ollama usually holds a few of config/models.json's models; without this the operator
learns of a missing one from the first job that fails with model_not_found.
"""

from __future__ import annotations

from typing import Any

from mes.errors import MESError
from mes.registry import ModelRegistry


def backend_model_names(backend) -> set[str] | None:
    """Return the names of the models the backend has, or None when it cannot be asked."""
    try:
        tags = backend.tags()
    except MESError:
        return None
    return {name for entry in tags for name in (entry.get("name"), entry.get("model")) if name}


def has_model(model_id: str, names: set[str]) -> bool:
    """Tell whether the backend has a model: Ollama lists an untagged name as NAME:latest."""
    return model_id in names or (":" not in model_id and f"{model_id}:latest" in names)


def availability(registry: ModelRegistry, names: set[str] | None) -> dict[str, Any]:
    """Return each registry model's presence on the backend (None for all when unknown)."""
    return {spec.id: None if names is None else has_model(spec.id, names)
            for spec in registry.models}


def missing_models(registry: ModelRegistry, names: set[str] | None) -> list[str] | None:
    """Return the registry's models the backend lacks, in registry order; None when unknown."""
    if names is None:
        return None
    return [spec.id for spec in registry.models if not has_model(spec.id, names)]
