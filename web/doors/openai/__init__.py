"""The openai door (being built)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the door's routes and error mapper."""
