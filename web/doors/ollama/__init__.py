"""The Ollama door at /ollama: Ollama's API in front of MES's queue (docs/api.md, "Ollama door").

`ollama.Client(host="http://host:8001/ollama", headers={"Authorization": "Bearer <key>"})`
works unchanged; each generate, chat and embed request is an ordinary MES job.
"""

from __future__ import annotations

from flask import Flask

from web.doors.ollama import errors, routes
from web.errors import register_door


def init_app(app: Flask) -> None:
    """Register the door's routes and error mapper."""
    app.register_blueprint(routes.bp)
    register_door(app, "/ollama/", errors.mapper)
