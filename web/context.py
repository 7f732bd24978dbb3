"""Hold what the web views need, built once per app and passed in by create_app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app

from mes.keys import KeyRing
from mes.services import Services
from mes.intake.submit import Dispatcher
from mes.intake.streams import StreamHub
from mes.scheduling.backend import Scheduler
from mes.store.waiter import FinalWaiter


@dataclass
class WebContext:
    """Bundle the core services with the web-only pieces."""

    services: Services
    keyring: KeyRing
    dispatcher: Dispatcher
    waiter: FinalWaiter
    hub: StreamHub
    scheduler: Scheduler | None = None  # swap-aware scheduling, when it is on
    metrics: Any = None  # the Prometheus registry, built on the first scrape


def ctx() -> WebContext:
    """Return the current app's context."""
    return current_app.extensions["mes"]
