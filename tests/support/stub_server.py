"""Serve HTTP from a thread for client tests: record the exact requests and answer as scripted."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

# A reply is (status, body) or (status, body, headers), or "drop" to hang up without one.
# A dict body goes as JSON, a list as NDJSON lines, a str as text and bytes as they are;
# a Content-Type among the headers wins.
Reply = Any


def encode(body: Any) -> tuple[bytes, str]:
    """Return the bytes and the content type of a reply body."""
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain"
    if isinstance(body, list):
        return b"".join(json.dumps(line).encode() + b"\n" for line in body), "application/x-ndjson"
    return json.dumps(body).encode(), "application/json"


class StubServer:
    """Answer on a free 127.0.0.1 port and record every request.

    Each request is recorded as a dict: method, target (path and query as sent), path, query
    (parsed), headers, raw (the body's bytes), body (parsed JSON, or None) and peer (the
    client's address). `answer` decides each reply; by default the scripted `replies` are
    given in order, then `default`. `delay_s` holds every reply back.
    """

    def __init__(self, answer: Callable[[dict], Reply] | None = None, *,
                 keep_alive: bool = False):
        self.requests: list[dict] = []
        self.replies: list[Reply] = []
        self.default: Reply = (200, {})
        self.delay_s = 0.0
        self.answer = answer or self.next_reply
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                request = {"method": self.command, "target": self.path, "path": url.path,
                           "query": parse_qs(url.query), "headers": dict(self.headers),
                           "raw": raw, "body": json.loads(raw) if raw else None,
                           "peer": self.client_address}
                with stub._lock:
                    stub.requests.append(request)
                if stub.delay_s:
                    threading.Event().wait(stub.delay_s)
                reply = stub.answer(request)
                if reply == "drop":
                    self.close_connection = True
                    return
                status, body, *rest = reply
                headers = rest[0] if rest else {}
                data, content_type = encode(body)
                self.send_response(status)
                for name, value in {"Content-Type": content_type, **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # clients in these tests hang up on purpose (timeouts, stop checks)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def next_reply(self, request: dict) -> Reply:
        """Return the next scripted reply, or the default once the script has run out."""
        with self._lock:
            return self.replies.pop(0) if self.replies else self.default

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "StubServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
