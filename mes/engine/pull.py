"""POST /api/pull: stream the generator's progress objects, or answer the last one.

The simulated generator "downloads" any name at once and the catalogue gains it; the
llamacpp generator resolves names from its configured GGUF files (hashing the file as
the download). A failure arrives as an in-band ``{"error": ...}`` line when streaming,
or as a 500 when not, as in Ollama.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mes.engine import protocol as wire
from mes.engine.generator import PullError
from mes.engine.request import BadRequest, field

if TYPE_CHECKING:
    from mes.engine.server import EngineServer
    from mes.engine.transport import Exchange

ERR_INVALID_NAME = "invalid model name"


def _parse(body: Any) -> tuple[str, bool]:
    if not isinstance(body, dict):
        raise BadRequest("json: cannot unmarshal array into Go value of type api.PullRequest")
    name = field(body, "model", (str,), "PullRequest", "string", "") or field(
        body, "name", (str,), "PullRequest", "string", "")
    if not name.strip():
        raise BadRequest(ERR_INVALID_NAME)
    return name.strip(), field(body, "stream", (bool,), "PullRequest", "bool", True)


def handle(engine: "EngineServer", ex: "Exchange") -> None:
    """Serve one POST /api/pull."""
    body, error = ex.read_json()
    if error:
        ex.send_json(400, {"error": error})
        return
    try:
        name, stream = _parse(body)
    except BadRequest as exc:
        ex.send_json(exc.status, {"error": str(exc)})
        return

    def should_stop() -> bool:
        return engine.stopping or ex.client_gone()

    if stream and not ex.begin_stream():
        return
    last: dict[str, Any] = {}
    try:
        for line in engine.generator.pull(name, should_stop):
            if line.get("status") == "success":
                engine.config.add_model(name)  # before the client reads "success"
            last = line
            if stream and not ex.write_line(line):
                return
            if should_stop():
                return
    except PullError as exc:
        if stream:
            ex.write_line({"error": str(exc)})
            ex.end_stream()
        else:
            ex.send_json(500, {"error": str(exc)})
        return
    if stream:
        ex.end_stream()
    else:
        ex.send_json(200, last or wire.progress("success"))
