"""POST /api/generate and /api/chat: validate, schedule, generate, then stream or answer once."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from mes.engine import protocol as wire
from mes.engine.config import ModelSpec
from mes.engine.generator import Generation, Shaper, num_predict, stop_strings
from mes.engine.scheduler import Cancelled, Lease, QueueFull

if TYPE_CHECKING:
    from mes.engine.server import EngineServer
    from mes.engine.transport import Exchange


class BadRequest(Exception):
    """Raise for a request Ollama would reject before scheduling it."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class InferenceRequest:
    """Hold one parsed generate/chat request."""

    kind: str  # "generate" or "chat"
    model: str  # as the client spelled it; echoed back in replies
    prompt: str | Sequence[Mapping[str, Any]]
    system: str | None
    options: Mapping[str, Any]
    format: str | Mapping[str, Any] | None
    stream: bool
    keep_alive: float
    keep_alive_given: bool
    raw: bool

    @property
    def empty(self) -> bool:
        """Return True for a load/unload request (empty prompt or no messages)."""
        return not self.prompt


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _field(body: Mapping[str, Any], key: str, types: tuple[type, ...], struct: str, go_type: str, default: Any) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        # Same wording as Go's encoding/json, which is what Ollama answers with.
        raise BadRequest(f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                         f"{struct}.{key} of type {go_type}")
    return value


def parse_request(kind: str, body: Any, default_keep_alive: float) -> InferenceRequest:
    """Validate BODY the way Ollama's handlers do; raises BadRequest."""
    struct = "GenerateRequest" if kind == "generate" else "ChatRequest"
    if not isinstance(body, dict):
        raise BadRequest(f"json: cannot unmarshal {_json_kind(body)} into Go value of type api.{struct}")
    model = _field(body, "model", (str,), struct, "string", "")
    if not model:
        raise BadRequest(wire.ERR_MODEL_REQUIRED)
    options = _field(body, "options", (dict,), struct, "map[string]interface {}", {})
    stream = _field(body, "stream", (bool,), struct, "bool", True)
    raw = _field(body, "raw", (bool,), struct, "bool", False)
    fmt = body.get("format")
    if fmt == "":
        fmt = None
    if fmt is not None and fmt != "json" and not isinstance(fmt, dict):
        raise BadRequest(wire.err_invalid_format(fmt))
    try:
        keep_alive = wire.parse_keep_alive(body.get("keep_alive"), default_keep_alive)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if kind == "generate":
        prompt: Any = _field(body, "prompt", (str,), struct, "string", "")
        system = _field(body, "system", (str,), struct, "string", None)
    else:
        prompt = _field(body, "messages", (list,), struct, "[]api.Message", [])
        for message in prompt:
            if not isinstance(message, dict):
                raise BadRequest(f"json: cannot unmarshal {_json_kind(message)} into Go struct field "
                                 "ChatRequest.messages of type api.Message")
            _field(message, "role", (str,), "Message", "string", "")
            _field(message, "content", (str,), "Message", "string", "")
        system = None
    keep_alive_given = body.get("keep_alive") is not None
    return InferenceRequest(kind, model, prompt, system, options, fmt, stream, keep_alive, keep_alive_given, raw)


def handle(engine: "EngineServer", ex: "Exchange", kind: str) -> None:
    """Serve one generate ("generate") or chat ("chat") request on EX."""
    started = time.perf_counter_ns()
    body, error = ex.read_json()
    if error:
        ex.send_json(400, {"error": error})
        return
    try:
        req = parse_request(kind, body, engine.config.keep_alive)
    except BadRequest as exc:
        ex.send_json(exc.status, {"error": str(exc)})
        return
    spec = engine.config.model(req.model)
    if spec is None:
        ex.send_json(404, {"error": wire.err_model_not_found(req.model)})
        return
    scheduler = engine.scheduler
    scheduler.note_request(spec.name)
    status = engine.faults.take_failure()
    if status is not None:
        scheduler.note_outcome(spec.name, "failed")
        ex.send_json(status, {"error": wire.ERR_SIMULATED})
        return

    def should_stop() -> bool:
        return engine.stopping or ex.client_gone()

    if req.empty:
        return _lifecycle(engine, ex, req, spec, should_stop)
    try:
        lease = scheduler.acquire(spec.name, req.keep_alive, should_stop)
    except QueueFull:
        scheduler.note_outcome(spec.name, "failed")
        ex.send_json(503, {"error": wire.ERR_SERVER_BUSY})
        return
    except Cancelled:
        scheduler.note_outcome(spec.name, "cancelled")
        return
    except Exception as exc:  # a generator that failed to load
        scheduler.note_outcome(spec.name, "failed")
        ex.send_json(500, {"error": str(exc)})
        return
    run = _Run(engine, ex, req, spec, lease, should_stop, started)
    outcome = "failed"
    try:
        outcome = run.execute()
    except Exception as exc:
        run.release("failed")
        if ex.streaming:
            ex.write_line({"error": str(exc)})
            ex.end_stream()
        else:
            ex.send_json(500, {"error": str(exc)})
    finally:
        run.release(outcome)


def _lifecycle(engine: "EngineServer", ex: "Exchange", req: InferenceRequest, spec: ModelSpec,
               should_stop: Callable[[], bool]) -> None:
    if req.keep_alive_given and req.keep_alive == 0:
        engine.scheduler.unload(spec.name)
        ex.send_json(200, wire.lifecycle_reply(req.kind, req.model, "unload"))
        return
    if not engine.faults.wait_while_hung(should_stop):
        engine.scheduler.note_outcome(spec.name, "cancelled")
        return
    try:
        engine.scheduler.acquire(spec.name, req.keep_alive, should_stop, generation=False)
    except QueueFull:
        engine.scheduler.note_outcome(spec.name, "failed")
        ex.send_json(503, {"error": wire.ERR_SERVER_BUSY})
        return
    except Cancelled:
        engine.scheduler.note_outcome(spec.name, "cancelled")
        return
    ex.send_json(200, wire.lifecycle_reply(req.kind, req.model, "load"))


class _Run:
    """Drive one generation that holds a scheduler slot."""

    def __init__(self, engine: "EngineServer", ex: "Exchange", req: InferenceRequest, spec: ModelSpec,
                 lease: Lease, should_stop: Callable[[], bool], started: int) -> None:
        self.engine, self.ex, self.req, self.spec, self.lease = engine, ex, req, spec, lease
        self.should_stop = should_stop
        self.started = started
        self.text: list[str] = []
        self.prompt_count = 0
        self.prompt_ns = 1
        self.prompt_done = started
        self.generation: Generation | None = None
        self.shaper: Shaper | None = None
        self._released = False

    def release(self, outcome: str) -> None:
        """Stop the generator and give the slot back, once.

        Called before the last bytes go out, so a client holding its reply already sees
        it in the counters (and a keep_alive 0 model already unloaded).
        """
        if self._released:
            return
        self._released = True
        if self.generation is not None:
            self.generation.close()
        tokens = self.shaper.count if self.shaper is not None else 0
        self.engine.scheduler.release(self.lease, outcome, tokens)

    def execute(self) -> str:
        """Generate and reply; return the outcome for the scheduler's counters."""
        if not self.engine.faults.wait_while_hung(self.should_stop):
            return "cancelled"
        loaded = time.perf_counter_ns()
        self.generation = self.engine.generator.generate(
            self.spec.name, self.req.prompt, system=self.req.system, options=self.req.options,
            format=self.req.format, should_stop=self.should_stop,
        )
        self.prompt_done = time.perf_counter_ns()
        self.prompt_ns = max(1, self.prompt_done - loaded)
        self.prompt_count = self.generation.prompt_eval_count
        self.shaper = Shaper(self.generation.tokens, num_predict(self.req.options), stop_strings(self.req.options))
        fault = self.engine.faults.take_mid_stream()
        return self._stream(self.shaper, fault) if self.req.stream else self._collect(self.shaper, fault)

    def _final(self, shaper: Shaper, text: str) -> dict[str, Any]:
        now = time.perf_counter_ns()
        stats = wire.Stats(
            done_reason=shaper.done_reason,
            total_duration=max(1, now - self.started),
            load_duration=self.lease.load_ns,
            prompt_eval_count=self.prompt_count,
            prompt_eval_duration=self.prompt_ns,
            eval_count=shaper.count,
            eval_duration=max(1, now - self.prompt_done),
        )
        context = None
        if self.req.kind == "generate" and not self.req.raw:
            context = wire.context_tokens(f"{self.req.prompt} {''.join(self.text)}")
        return wire.final(self.req.kind, self.req.model, stats, text, context)

    def _stream(self, shaper: Shaper, fault: str | None) -> str:
        ex = self.ex
        if not ex.begin_stream():
            return "cancelled"
        for piece in shaper:
            self.text.append(piece)
            if not ex.write_line(wire.chunk(self.req.kind, self.req.model, piece)):
                return "cancelled"
            if fault and len(self.text) >= self.engine.config.mid_stream_after:
                break
        if fault == "error":
            self.release("failed")
            ex.write_line({"error": wire.ERR_SIMULATED_MID_STREAM})
            ex.end_stream()
            return "failed"
        if fault == "drop":
            self.release("failed")
            ex.drop_connection()
            return "failed"
        if self.should_stop():
            return "cancelled"
        body = self._final(shaper, "")
        self.release("completed")
        ex.write_line(body)
        ex.end_stream()
        return "completed"

    def _collect(self, shaper: Shaper, fault: str | None) -> str:
        self.text.extend(shaper)
        if self.should_stop():
            return "cancelled"
        if fault == "error":
            self.release("failed")
            self.ex.send_json(500, {"error": wire.ERR_SIMULATED_MID_STREAM})
            return "failed"
        if fault == "drop":
            self.release("failed")
            self.ex.drop_connection()
            return "failed"
        body = self._final(shaper, "".join(self.text))
        self.release("completed")
        self.ex.send_json(200, body)
        return "completed"
