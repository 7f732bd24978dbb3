"""The compatible front doors: OpenAI's API at /openai/v1 and Ollama's at /ollama.

Each door is a package with three kinds of module, as vLLM lays out its OpenAI server:
`protocol.py` (the wire types and their validation), `translate.py` (wire request to job
request, job or event to wire answer: plain functions, tested on exact JSON), and
`routes.py` (the Flask views that wire them to URLs), plus `errors.py`, the door's mapper.
Policy lives in mes/ and web/submission.py, once, never in a door.
"""

from __future__ import annotations

from flask import Flask

from web.doors import ollama, openai


def init_app(app: Flask) -> None:
    """Register every door's routes and error mapper."""
    openai.init_app(app)
    ollama.init_app(app)
