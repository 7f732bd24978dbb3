"""HTTP server speaking Ollama's wire protocol in front of a generator (simulated by default).

Start it inside a test on a free port and point any Ollama client at ``engine.url``::

    import ollama
    from mes.engine.config import EngineConfig
    from mes.engine.server import EngineServer

    with EngineServer(EngineConfig(port=0, token_ms=1)) as engine:   # started on enter
        reply = ollama.Client(host=engine.url).generate(model="llama3.1:8b", prompt="hi")
        assert engine.stats()["models"]["llama3.1:8b"]["completed"] == 1
        engine.faults.update({"fail_next": 1})                        # or POST /mes-engine/faults

Without ``with``: ``engine = EngineServer(cfg).start()`` ... ``engine.shutdown()``.
``serve_forever()`` serves on the calling thread instead (the CLI does that via start()).
The socket is bound in the constructor, so ``engine.port`` is real even before start().
"""

from __future__ import annotations

import threading
import time
from typing import Any

from mes.engine.config import EngineConfig
from mes.engine.faults import Faults
from mes.engine.generator import Generator
from mes.engine.scheduler import Scheduler
from mes.engine.simulated import SimulatedGenerator
from mes.engine.transport import EngineHTTPServer


class EngineServer:
    """Serve the Ollama API for CONFIG; the socket is bound on construction."""

    def __init__(self, config: EngineConfig | None = None, generator: Generator | None = None) -> None:
        self.config = config or EngineConfig()
        self.faults = Faults(self.config.faults)
        self.generator: Generator = generator or SimulatedGenerator(self.config, lambda: self.faults.load_ms)
        self.scheduler = Scheduler(self.config, self.generator.load, self.generator.unload)
        self.started_at = time.time()
        self._stopping = threading.Event()
        self._serving = threading.Event()
        self._thread: threading.Thread | None = None
        self._httpd = EngineHTTPServer((self.config.host, self.config.port), self)

    @property
    def host(self) -> str:
        """Return the bound host."""
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """Return the bound port (the real one when configured with port 0)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Return the base URL, e.g. http://127.0.0.1:40123."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def stopping(self) -> bool:
        """Return True once shutdown() has begun; running generations stop at their next token."""
        return self._stopping.is_set()

    def start(self) -> "EngineServer":
        """Serve on a daemon thread and return self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, name=f"mes-engine:{self.port}", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until shutdown()."""
        self._serving.set()
        try:
            self._httpd.serve_forever(poll_interval=0.1)
        finally:
            self._serving.clear()

    def shutdown(self) -> None:
        """Stop serving, interrupt running requests, close every connection and the socket."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is not None or self._serving.is_set():
            self._httpd.shutdown()  # returns once serve_forever has exited (or never entered its loop)
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def stats(self) -> dict[str, Any]:
        """Return what GET /mes-engine/stats returns."""
        return {**self.scheduler.stats(), "faults": self.faults.snapshot()}

    def __enter__(self) -> "EngineServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def serve(config: EngineConfig | None = None, generator: Generator | None = None) -> EngineServer:
    """Build an EngineServer and start it on a background thread."""
    return EngineServer(config, generator).start()
