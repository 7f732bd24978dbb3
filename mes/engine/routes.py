"""URL table: Ollama's read-only endpoints, generate/chat, embed, pull, and the /mes-engine admin endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from mes.engine import embed as embedding
from mes.engine import inference, pull
from mes.engine import protocol as wire

if TYPE_CHECKING:
    from mes.engine.server import EngineServer
    from mes.engine.transport import Exchange

Handler = Callable[["EngineServer", "Exchange"], None]


def root(engine: "EngineServer", ex: "Exchange") -> None:
    """Answer the liveness probe clients use."""
    ex.send_text(200, "Ollama is running")


def version(engine: "EngineServer", ex: "Exchange") -> None:
    """Answer GET /api/version."""
    ex.send_json(200, {"version": engine.config.version})


def tags(engine: "EngineServer", ex: "Exchange") -> None:
    """List the catalogue like GET /api/tags."""
    ex.send_json(200, {"models": [wire.tag_entry(spec, engine.started_at) for spec in engine.config.models]})


def ps(engine: "EngineServer", ex: "Exchange") -> None:
    """List resident models like GET /api/ps (expired ones are unloaded first)."""
    models = []
    for name, expires in engine.scheduler.loaded():
        spec = engine.config.model(name)
        if spec is not None:
            num_ctx = getattr(engine.scheduler.runner_of(name), "num_ctx", engine.config.runner.num_ctx)
            models.append(wire.ps_entry(spec, expires, num_ctx))
    ex.send_json(200, {"models": models})


def show(engine: "EngineServer", ex: "Exchange") -> None:
    """Describe one model like POST /api/show."""
    body, error = ex.read_json()
    if error:
        ex.send_json(400, {"error": error})
        return
    if not isinstance(body, dict):
        ex.send_json(400, {"error": "json: cannot unmarshal into Go value of type api.ShowRequest"})
        return
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        ex.send_json(400, {"error": wire.ERR_MODEL_REQUIRED})
        return
    spec = engine.config.model(name)
    if spec is None:
        ex.send_json(404, {"error": f"model '{name}' not found"})
        return
    ex.send_json(200, wire.show_body(spec, engine.started_at, engine.generator.describe(spec.name)))


def generate(engine: "EngineServer", ex: "Exchange") -> None:
    """Serve POST /api/generate."""
    inference.handle(engine, ex, "generate")


def chat(engine: "EngineServer", ex: "Exchange") -> None:
    """Serve POST /api/chat."""
    inference.handle(engine, ex, "chat")


def embed(engine: "EngineServer", ex: "Exchange") -> None:
    """Serve POST /api/embed."""
    embedding.handle(engine, ex)


def embeddings(engine: "EngineServer", ex: "Exchange") -> None:
    """Serve the legacy POST /api/embeddings."""
    embedding.handle(engine, ex, legacy=True)


def pull_model(engine: "EngineServer", ex: "Exchange") -> None:
    """Serve POST /api/pull."""
    pull.handle(engine, ex)


def stats(engine: "EngineServer", ex: "Exchange") -> None:
    """Report counters, resident models and faults."""
    ex.send_json(200, engine.stats())


def get_faults(engine: "EngineServer", ex: "Exchange") -> None:
    """Report the current faults."""
    ex.send_json(200, engine.faults.snapshot())


def set_faults(engine: "EngineServer", ex: "Exchange") -> None:
    """Change the faults named in the JSON body; others stay as they are."""
    body, error = ex.read_json()
    if error:
        ex.send_json(400, {"error": error})
        return
    try:
        ex.send_json(200, engine.faults.update(body))
    except ValueError as exc:
        ex.send_json(400, {"error": str(exc)})


def clear_faults(engine: "EngineServer", ex: "Exchange") -> None:
    """Remove every fault."""
    ex.send_json(200, engine.faults.clear())


def reset(engine: "EngineServer", ex: "Exchange") -> None:
    """Zero the counters and unload idle models."""
    engine.scheduler.reset()
    ex.send_json(200, engine.stats())


ROUTES: dict[str, dict[str, Handler]] = {
    "/": {"GET": root, "HEAD": root},
    "/api/version": {"GET": version, "HEAD": version},
    "/api/tags": {"GET": tags, "HEAD": tags},
    "/api/ps": {"GET": ps},
    "/api/show": {"POST": show},
    "/api/generate": {"POST": generate},
    "/api/chat": {"POST": chat},
    "/api/embed": {"POST": embed},
    "/api/embeddings": {"POST": embeddings},
    "/api/pull": {"POST": pull_model},
    "/mes-engine/stats": {"GET": stats},
    "/mes-engine/faults": {"GET": get_faults, "POST": set_faults, "DELETE": clear_faults},
    "/mes-engine/reset": {"POST": reset},
}


def dispatch(engine: "EngineServer", ex: "Exchange", method: str, path: str) -> None:
    """Call the handler for METHOD and PATH, answering 404/405 in gin's plain-text style."""
    if len(path) > 1:
        path = path.rstrip("/")
    methods = ROUTES.get(path)
    if methods is None:
        ex.send_text(404, "404 page not found")
        return
    handler = methods.get(method)
    if handler is None:
        ex.send_text(405, "405 method not allowed")
        return
    handler(engine, ex)
