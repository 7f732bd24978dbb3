"""Let another thread cut a blocked HTTP call: how a cancel closes an Ollama stream at once.

Ollama sends no byte until the model is loaded and the prompt is read, which can take
minutes; checking a flag between chunks would not notice a cancel in that time. So the
calling thread registers a StopWatch, our urllib3 connection hands it its socket, and the
client's one watcher thread shuts the socket down when the stop condition turns true. The blocked read
then fails at once, and Ollama sees the disconnect and stops generating.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable

import urllib3
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)
_local = threading.local()
POLL_S = 0.1


class StopWatch:
    """Watch one call's stop condition; shut the call's socket down when it turns true."""

    def __init__(self, should_stop: Callable[[], bool], watcher: "Watcher"):
        self._should_stop = should_stop
        self._watcher = watcher
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.stopped = False

    def __enter__(self) -> "StopWatch":
        _local.watch = self
        self._watcher.add(self)
        return self

    def __exit__(self, *exc_info) -> None:
        _local.watch = None
        self._watcher.remove(self)

    def attach(self, sock: socket.socket | None) -> None:
        """Remember the socket this call reads from."""
        with self._lock:
            self._sock = sock
            if self.stopped:
                _shutdown(sock)

    def check(self) -> bool:
        """Cut the call if its stop condition holds; tell whether it did."""
        try:
            stop = self._should_stop()
        except Exception as exc:  # noqa: BLE001 - a failed check must not kill the watcher
            # The check (mes.worker.stopcheck) handles Redis itself; this is a bug: say so.
            log.error("event=stop_check_failed error=%s: %s", exc.__class__.__name__, exc)
            stop = False
        if stop:
            with self._lock:
                self.stopped = True
                _shutdown(self._sock)
        return stop


class Watcher:
    """Check every active StopWatch of a client from one thread, ten times a second."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: set[StopWatch] = set()
        self._thread: threading.Thread | None = None

    def add(self, watch: StopWatch) -> None:
        """Start watching a call."""
        with self._lock:
            self._watches.add(watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="mes-stopwatch",
                                                daemon=True)
                self._thread.start()

    def remove(self, watch: StopWatch) -> None:
        """Stop watching a call."""
        with self._lock:
            self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            time.sleep(POLL_S)
            with self._lock:
                watches = list(self._watches)
            for watch in watches:
                if watch.check():
                    self.remove(watch)


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _current_watch() -> StopWatch | None:
    return getattr(_local, "watch", None)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def getresponse(self, *args, **kwargs):
        watch = _current_watch()
        if watch is not None:
            watch.attach(self.sock)
        return super().getresponse(*args, **kwargs)


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def getresponse(self, *args, **kwargs):
        watch = _current_watch()
        if watch is not None:
            watch.attach(self.sock)
        return super().getresponse(*args, **kwargs)


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class InterruptibleAdapter(HTTPAdapter):
    """Pool connections that hand their socket to the calling thread's StopWatch."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
