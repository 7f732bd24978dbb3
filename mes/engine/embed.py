"""POST /api/embed (and the legacy /api/embeddings): schedule like a generation, answer vectors.

As in Ollama's EmbedHandler: an empty input only loads the model, every vector is scaled
to unit length, `dimensions` keeps the first N values (scaled again), and input that does
not fit the context is an error only when `truncate` is false.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from mes.engine import protocol as wire
from mes.engine.inference import acquire
from mes.engine.request import BadRequest, parse_embed

if TYPE_CHECKING:
    from mes.engine.server import EngineServer
    from mes.engine.transport import Exchange


def _unit(vector: list[float]) -> list[float]:
    if any(math.isnan(v) or math.isinf(v) for v in vector):
        raise ValueError("embedding contains NaN or Inf values")
    norm = max(math.sqrt(sum(v * v for v in vector)), 1e-12)
    return [v / norm for v in vector]


def handle(engine: "EngineServer", ex: "Exchange", legacy: bool = False) -> None:
    """Serve one /api/embed request, or a legacy /api/embeddings one when LEGACY."""
    started = time.perf_counter_ns()
    body, error = ex.read_json()
    if error:
        ex.send_json(400, {"error": error})
        return
    try:
        req = parse_embed(body, engine.config.keep_alive, legacy)
    except BadRequest as exc:
        ex.send_json(exc.status, {"error": str(exc)})
        return
    spec = engine.config.model(req.model)
    if spec is None:
        ex.send_json(404, {"error": f"model '{req.model}' not found"})
        return
    engine.scheduler.note_request(spec.name)

    def should_stop() -> bool:
        return engine.stopping or ex.client_gone()

    runner = engine.config.runner.merged(req.options)
    lease = acquire(engine, ex, spec.name, req.keep_alive, should_stop, runner, generation=bool(req.texts))
    if lease is None:
        return
    if not req.texts:
        ex.send_json(200, {"embedding": []} if legacy else wire.embed_reply(req.model, [], 0, 0, 0))
        return
    outcome = "failed"
    try:
        result = engine.generator.embed(spec.name, req.texts, options=req.options, truncate=req.truncate)
        vectors = [_unit(v) for v in result.vectors]
        if 0 < req.dimensions:
            vectors = [_unit(v[: req.dimensions]) if req.dimensions < len(v) else v for v in vectors]
        outcome = "completed"
    except ValueError as exc:
        ex.send_json(400, {"error": str(exc).strip()})
        return
    except Exception as exc:  # the backend failed
        ex.send_json(500, {"error": str(exc).strip()})
        return
    finally:
        engine.scheduler.release(lease, outcome)
    if legacy:
        ex.send_json(200, {"embedding": vectors[0]})
        return
    total = max(1, time.perf_counter_ns() - started)
    ex.send_json(200, wire.embed_reply(req.model, vectors, total, lease.load_ns, result.prompt_eval_count))
