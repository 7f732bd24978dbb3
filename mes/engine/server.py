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

The ``refuse_s`` fault closes the listening socket for a while: ``serve_forever`` then
waits for the window to end and listens again on the same port with a fresh socket.
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
        # Guards the listening socket: a reopen never races shutdown's close.
        self._listen_lock = threading.Lock()
        self._refuse_requested = False
        self._listening = True
        self._in_loop = False
        self._listener_closed = threading.Event()
        self.faults.on_refuse = self._begin_refusal
        if self.faults.refusing():  # a refusal from the startup faults begins now
            self._httpd.close_listener()
            self._listening = False

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
        """Serve on the calling thread until shutdown(), sitting out refusal windows."""
        self._serving.set()
        try:
            while True:
                if self._refuse_requested or self.faults.refusing() or not self._listening:
                    self._sit_out_refusal()
                with self._listen_lock:
                    # Decided under the lock so shutdown() knows whether to stop the loop.
                    if self._stopping.is_set() or not self._listening:
                        break
                    self._in_loop = True
                try:
                    self._httpd.serve_forever(poll_interval=0.1)
                finally:
                    with self._listen_lock:
                        self._in_loop = False
        finally:
            self._serving.clear()
            self._listener_closed.set()

    def _begin_refusal(self) -> None:
        # Called by Faults.update from a request thread: stop the accept loop and return
        # once the listening socket is closed, so the caller's next connect is refused.
        with self._listen_lock:
            if not self._in_loop or self._stopping.is_set():
                return  # not serving yet, or already refusing: the loop reads the window itself
            self._listener_closed.clear()
            self._refuse_requested = True
        self._httpd.shutdown()
        self._listener_closed.wait(5)

    def _sit_out_refusal(self) -> None:
        with self._listen_lock:
            self._refuse_requested = False
            self._listening = False
            self._httpd.close_listener()
        self._listener_closed.set()
        self.faults.wait_while_refusing(self._stopping.is_set)
        while not self._stopping.is_set():
            with self._listen_lock:
                if self._stopping.is_set():
                    return
                try:
                    self._httpd.reopen()
                    self._listening = True
                    return
                except OSError:
                    pass  # someone holds the port for a moment; try again
            self._stopping.wait(0.05)

    def shutdown(self) -> None:
        """Stop serving, interrupt running requests, close every connection and the socket."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._listen_lock:
            in_loop = self._in_loop
        if in_loop:
            self._httpd.shutdown()  # returns once the accept loop has exited
        self._httpd.close_connections()
        with self._listen_lock:
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
