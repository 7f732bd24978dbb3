"""The OpenAI door: OpenAI's API at /openai/v1, every request an ordinary MES job.

`protocol.py` validates the wire requests, `answers.py` describes the answers, `translate.py`
turns requests into job requests and jobs into answers and errors, `chunks.py` turns a job's
events into OpenAI's stream, `routes.py` wires them to URLs and `errors.py` is the door's
error mapper. The Files and Batches API has its own: `files.py` and `batches.py` (wire
shapes and objects), `batches_input.py` (input lines to job requests), `batches_output.py`
(jobs to output lines), and `files_routes.py` and `batches_routes.py`.
"""

from __future__ import annotations

from flask import Flask

from web.doors.openai import batches_routes, errors, files_routes, routes


def init_app(app: Flask) -> None:
    """Register the door's routes and error mapper."""
    for module in (routes, files_routes, batches_routes):
        app.register_blueprint(module.bp)
    errors.init_app(app)
