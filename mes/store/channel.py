"""Listen to one Redis pub/sub channel from one thread per process, reconnecting as needed."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


def listen(redis_factory: Callable[[], object], channel: str, *,
           on_message: Callable[[str], None], keep_going: Callable[[], bool],
           subscribed: threading.Event, on_reconnect: Callable[[], None] = lambda: None,
           name: str = "listener") -> None:
    """Deliver each message of `channel` to on_message while keep_going() holds.

    `subscribed` is set once the subscription stands (and after a failure, so that nobody
    waits on a broken one); on_reconnect runs after each failure, before subscribing again.
    """
    while keep_going():
        pubsub = None
        try:
            pubsub = redis_factory().pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(channel)
            subscribed.set()
            while keep_going():
                message = pubsub.get_message(timeout=1.0)
                if message and message["type"] == "message":
                    data = message["data"]
                    on_message(data.decode() if isinstance(data, bytes) else data)
        except Exception as exc:  # noqa: BLE001 - Redis restarting: tell the owner, try again
            log.warning("event=%s_reconnect error=%s", name, exc.__class__.__name__)
            on_reconnect()
            subscribed.set()
            time.sleep(0.5)
        finally:
            if pubsub is not None:
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001 - the connection is already gone
                    pass
