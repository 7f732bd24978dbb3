"""Break a JSON reply the way the ``bad_json_next`` fault asks, for structured-output repair tests.

Each kind is built from the document the generator produced (or its raw text when that
was not JSON), so the broken reply still talks about the right things:

- ``invalid``: single quotes and a trailing comma, the classic almost-JSON;
- ``fenced``: the valid document, pretty-printed in a json code fence, with prose around it;
- ``truncated``: the first half of the document, cut mid-way;
- ``prose``: a sentence with the document's values and no JSON at all.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PIECES = re.compile(r"\s*(?:[A-Za-z0-9_.+\-]+|\S)")
_NOT_PROSE = re.compile(r"[{}\[\]\"`]")


def split_text(text: str) -> list[str]:
    """Split TEXT into token-sized pieces whose concatenation is exactly TEXT."""
    pieces = _PIECES.findall(text)
    rest = text[len("".join(pieces)) :]
    return pieces + ([rest] if rest else [])


def _parse(text: str) -> tuple[Any, bool]:
    try:
        return json.loads(text), True
    except ValueError:
        return None, False


def _scalars(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        return [s for value in doc.values() for s in _scalars(value)]
    if isinstance(doc, list):
        return [s for value in doc for s in _scalars(value)]
    return [] if doc is None else [_NOT_PROSE.sub("", str(doc)).strip()]


def corrupt(text: str, kind: str) -> str:
    """Return TEXT broken as KIND ("invalid", "fenced", "truncated" or "prose")."""
    doc, ok = _parse(text)
    if not ok:
        doc = {"answer": text.strip()}
    if kind == "fenced":
        pretty = json.dumps(doc, indent=2, ensure_ascii=False)
        return f"Sure! Here is the JSON you asked for:\n\n```json\n{pretty}\n```\n\nLet me know if you need anything else."
    if kind == "prose":
        values = [v for v in _scalars(doc) if v]
        if not values:
            return "I am sorry, but I could not put the answer into the requested format."
        return "Here is what I found: " + ", ".join(values) + "."
    if not isinstance(doc, (dict, list)):
        doc = {"value": doc}  # a prefix of a bare scalar can still be valid JSON
    compact = json.dumps(doc, ensure_ascii=False)
    if kind == "truncated":
        return compact[: max(1, len(compact) // 2)]
    if kind == "invalid":
        quoted = compact.replace('"', "'")
        return quoted[:-1].rstrip() + "," + quoted[-1]
    raise ValueError(f"unknown bad JSON kind {kind!r}")
