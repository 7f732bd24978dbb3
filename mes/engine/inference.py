"""POST /api/generate and /api/chat: validate, schedule, generate, then stream or answer once."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from mes.engine import protocol as wire
from mes.engine.bad_json import corrupt, split_text
from mes.engine.simulated import requested_json
from mes.engine.config import ModelSpec
from mes.engine.generator import Generation, Shaper, num_predict, stop_strings
from mes.engine.request import BadRequest, InferenceRequest, parse_request
from mes.engine.scheduler import Cancelled, Lease, QueueFull

if TYPE_CHECKING:
    from mes.engine.server import EngineServer
    from mes.engine.transport import Exchange


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
    if engine.config.log_requests:
        # The caller's X-Request-ID is logged so one request can be followed end to end.
        request_id = ex.headers.get("X-Request-ID", "-")
        print(f"mes-engine: POST /api/{kind} model={req.model} request_id={request_id}",
              file=sys.stderr, flush=True)
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

    runner = engine.config.runner.merged(req.options)
    if req.empty:
        return _lifecycle(engine, ex, req, spec, should_stop, runner)
    lease = acquire(engine, ex, spec.name, req.keep_alive, should_stop, runner)
    if lease is None:
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
               should_stop: Callable[[], bool], runner: Any) -> None:
    if req.keep_alive_given and req.keep_alive == 0:
        engine.scheduler.unload(spec.name)
        ex.send_json(200, wire.lifecycle_reply(req.kind, req.model, "unload"))
        return
    if not engine.faults.wait_while_hung(should_stop):
        engine.scheduler.note_outcome(spec.name, "cancelled")
        return
    if acquire(engine, ex, spec.name, req.keep_alive, should_stop, runner, generation=False) is not None:
        ex.send_json(200, wire.lifecycle_reply(req.kind, req.model, "load"))


def acquire(engine: "EngineServer", ex: "Exchange", name: str, keep_alive: float, should_stop: Callable[[], bool],
            runner: Any, generation: bool = True) -> Lease | None:
    """Get a scheduler lease for NAME, or answer the client (503, load error) and return None."""
    try:
        return engine.scheduler.acquire(name, keep_alive, should_stop, generation=generation, runner=runner)
    except QueueFull:
        engine.scheduler.note_outcome(name, "failed")
        ex.send_json(503, {"error": wire.ERR_SERVER_BUSY})
    except Cancelled:
        engine.scheduler.note_outcome(name, "cancelled")
    except Exception as exc:  # a generator that failed to load
        engine.scheduler.note_outcome(name, "failed")
        ex.send_json(500, {"error": str(exc)})
    return None


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
            format=self.req.format, should_stop=self.should_stop, raw=self.req.raw,
        )
        self.prompt_done = time.perf_counter_ns()
        self.prompt_ns = max(1, self.prompt_done - loaded)
        self.prompt_count = self.generation.prompt_eval_count
        limit, stops = num_predict(self.req.options), stop_strings(self.req.options)
        asks_json = self.req.format is not None or requested_json(self.req.prompt, self.req.system)
        bad_json = self.engine.faults.take_bad_json() if asks_json else None
        if bad_json:
            self.shaper = Shaper(self._broken(bad_json, limit, stops), None, [])
        else:
            self.shaper = Shaper(self.generation.tokens, limit, stops)
        fault = self.engine.faults.take_mid_stream()
        return self._stream(self.shaper, fault) if self.req.stream else self._collect(self.shaper, fault)

    def _broken(self, kind: str, limit: int | None, stops: list[str]) -> Iterator[str]:
        # The bad_json fault: let the generator finish its reply, then break it.
        assert self.generation is not None
        text = "".join(Shaper(self.generation.tokens, limit, stops))
        if self.should_stop():
            return iter(())
        return iter(split_text(corrupt(text, kind)))

    def _done_reason(self, shaper: Shaper) -> str:
        # The generator may know better why its tokens ended (a full context window).
        reason = self.generation.done_reason if self.generation is not None else None
        return reason if shaper.done_reason == "stop" and reason else shaper.done_reason

    def _final(self, shaper: Shaper, text: str) -> dict[str, Any]:
        now = time.perf_counter_ns()
        stats = wire.Stats(
            done_reason=self._done_reason(shaper),
            total_duration=max(1, now - self.started),
            load_duration=self.lease.load_ns,
            prompt_eval_count=self.prompt_count,
            prompt_eval_duration=self.prompt_ns,
            eval_count=shaper.count,
            eval_duration=max(1, now - self.prompt_done),
        )
        context = None
        if self.req.kind == "generate" and not self.req.raw:
            context = (self.generation.context if self.generation is not None and self.generation.context is not None
                       else wire.context_tokens(f"{self.req.prompt} {''.join(self.text)}"))
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
