"""Notice that an HTTP client went away while its response is still being written.

Writing alone notices a closed connection only at the next write, which for a job that
waits in a queue can be many seconds away. A client that has sent its whole request sends
nothing more until the answer ends, so a readable socket that reads as empty means the
client closed it. Under gevent the zero-timeout select is cooperative.
"""

from __future__ import annotations

import select
import socket
from typing import Callable

GUNICORN_SOCKET = "gunicorn.socket"  # the WSGI environ key of the client's socket


def peer_closed(sock) -> bool:
    """Tell whether the other end of a connected socket has closed it."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True  # reset, or the socket is already closed


def gone_check(environ: dict) -> Callable[[], bool]:
    """Return a check of whether the request's client went away (never, without a socket)."""
    sock = environ.get(GUNICORN_SOCKET)
    if sock is None:
        return lambda: False
    return lambda: peer_closed(sock)
