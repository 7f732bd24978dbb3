"""The OpenAI door: OpenAI's API at /openai/v1, every request an ordinary MES job.

`protocol.py` validates the wire requests, `answers.py` describes the answers, `translate.py`
turns requests into job requests and jobs into answers and errors, `chunks.py` turns a job's
events into OpenAI's stream, `routes.py` wires them to URLs and `errors.py` is the door's
error mapper.
"""

from __future__ import annotations

from flask import Flask

from web.doors.openai import errors, routes


def init_app(app: Flask) -> None:
    """Register the door's routes and error mapper."""
    app.register_blueprint(routes.bp)
    errors.init_app(app)
