"""HTTP/1.1 transport: the per-connection handler (JSON replies, chunked NDJSON streams,
disconnect detection) and the threaded server that tracks open connections."""

from __future__ import annotations

import json
import select
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mes.engine import protocol as wire
from mes.engine.routes import dispatch

if TYPE_CHECKING:
    from mes.engine.server import EngineServer

_MAX_BODY = 64 * 1024 * 1024


def _encode(body: Any) -> bytes:
    # Compact like Go's encoding/json, which is what Ollama emits.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _json_error(exc: json.JSONDecodeError) -> str:
    # Go's encoding/json wording, which is what Ollama answers with.
    if exc.pos >= len(exc.doc):
        return "unexpected EOF"
    return f"invalid character {exc.doc[exc.pos]!r} looking for beginning of value"


class Exchange(BaseHTTPRequestHandler):
    """Handle one HTTP connection; its methods are the I/O surface route handlers use."""

    protocol_version = "HTTP/1.1"  # keep-alive and chunked transfer encoding
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm
    # meets the client's delayed ACK and every small reply waits about 40 ms.
    disable_nagle_algorithm = True
    server_version = "mes-engine"
    sys_version = ""
    server: "EngineHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet; tests and benchmarks read stderr for the ready line only."""

    def version_string(self) -> str:
        """Name the server in the Server header."""
        return self.server_version

    def _serve(self) -> None:
        self.streaming = False
        self._gone = False
        self._body: bytes | None = None
        try:
            self._body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self.send_json(400, {"error": "malformed request body"})
            return
        dispatch(self.server.engine, self, self.command, urlsplit(self.path).path)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024).strip():
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(8)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > _MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def read_json(self) -> tuple[Any, str | None]:
        """Return (parsed body, None) or (None, Ollama-style error text)."""
        if not self._body or not self._body.strip():
            return None, wire.ERR_MISSING_BODY
        try:
            return json.loads(self._body), None
        except json.JSONDecodeError as exc:
            return None, _json_error(exc)
        except UnicodeDecodeError:
            return None, "invalid character in request body"

    def _send(self, status: int, content_type: str, data: bytes) -> bool:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return True
        except OSError:
            self._mark_gone()
            return False

    def send_json(self, status: int, body: Any) -> bool:
        """Send one JSON document with a Content-Length; False if the client is gone."""
        return self._send(status, wire.JSON, _encode(body))

    def send_text(self, status: int, text: str) -> bool:
        """Send a plain-text body."""
        return self._send(status, wire.TEXT, text.encode())

    def begin_stream(self) -> bool:
        """Send 200 headers for an NDJSON body in chunked transfer encoding."""
        try:
            self.send_response(200)
            self.send_header("Content-Type", wire.NDJSON)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.streaming = True
            return True
        except OSError:
            self._mark_gone()
            return False

    def write_line(self, body: Any) -> bool:
        """Send one NDJSON line as one chunk; False if the client is gone."""
        data = _encode(body) + b"\n"
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            return True
        except OSError:  # BrokenPipeError, ConnectionResetError, ...
            self._mark_gone()
            return False

    def end_stream(self) -> bool:
        """Send the terminating zero-length chunk."""
        try:
            self.wfile.write(b"0\r\n\r\n")
            return True
        except OSError:
            self._mark_gone()
            return False

    def drop_connection(self) -> None:
        """Close the TCP connection without finishing the response."""
        self._mark_gone()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _mark_gone(self) -> None:
        self._gone = True
        self.close_connection = True

    def client_gone(self) -> bool:
        """Return True once the peer has closed its end (checked without blocking)."""
        if self._gone:
            return True
        try:
            poller = select.poll()
            poller.register(self.connection, select.POLLIN | select.POLLHUP | select.POLLERR)
            events = poller.poll(0)
            if events and (events[0][1] & (select.POLLHUP | select.POLLERR)
                           or self.connection.recv(1, socket.MSG_PEEK) == b""):
                self._mark_gone()
        except (OSError, ValueError):
            self._mark_gone()
        return self._gone


class EngineHTTPServer(ThreadingHTTPServer):
    """Serve each connection on a daemon thread, remembering it so shutdown can close it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], engine: "EngineServer") -> None:
        self.engine = engine
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Exchange)

    def server_bind(self) -> None:
        # http.server.HTTPServer.server_bind does a reverse DNS lookup of the host, which can stall.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        # Named so tests can check that no connection thread outlives its engine.
        name = f"mes-engine-conn:{self.server_address[1]}"
        threading.Thread(target=self.process_request_thread, args=(request, client_address), name=name,
                         daemon=True).start()

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_listener(self) -> None:
        """Close the listening socket so new connections are refused (open ones carry on)."""
        self.socket.close()

    def reopen(self) -> None:
        """Listen again on the same address with a fresh socket; raises OSError if taken."""
        sock = socket.socket(self.address_family, self.socket_type)
        self.socket = sock
        try:
            self.server_bind()
            self.server_activate()
        except OSError:
            sock.close()
            raise

    def close_connections(self) -> None:
        """Shut down every open connection so idle keep-alive threads exit."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # clients hanging up is business as usual
        super().handle_error(request, client_address)
