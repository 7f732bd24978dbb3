"""Deterministic randomness: a hash-counter RNG and the vocabulary the simulated model speaks.

`random.Random` would do, but its algorithms are allowed to change between Python
versions; sha256 in counter mode gives the same text everywhere, forever.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

WORDS = (
    "the", "model", "answer", "is", "a", "simple", "question", "of", "light", "and", "time",
    "because", "every", "system", "needs", "clear", "data", "to", "learn", "from", "small",
    "steps", "build", "large", "results", "when", "we", "measure", "what", "matters", "most",
    "sky", "blue", "water", "river", "stone", "forest", "quiet", "bright", "signal", "noise",
    "queue", "worker", "task", "request", "token", "stream", "engine", "memory", "cache",
    "value", "number", "graph", "path", "order", "rule", "shape", "color", "sound", "wave",
    "energy", "field", "point", "line", "space", "world", "people", "idea", "story", "reason",
    "often", "rarely", "quickly", "slowly", "together", "apart", "above", "below", "within",
    "across", "through", "around", "before", "after", "during", "while", "therefore", "however",
    "indeed", "perhaps", "certainly", "usually", "still", "again", "also", "only", "even",
)


class HashRng:
    """Produce a reproducible stream of numbers from any JSON-able seed material."""

    def __init__(self, *material: Any) -> None:
        blob = json.dumps(material, sort_keys=True, default=str, ensure_ascii=False)
        self._seed = hashlib.sha256(blob.encode()).digest()
        self._counter = 0

    def next64(self) -> int:
        """Return the next 64-bit unsigned integer."""
        block = hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
        self._counter += 1
        return int.from_bytes(block[:8], "big")

    def below(self, n: int) -> int:
        """Return an integer in [0, n)."""
        return self.next64() % max(1, n)

    def random(self) -> float:
        """Return a float in [0, 1)."""
        return self.next64() / 2.0**64

    def choice(self, items: Sequence[Any]) -> Any:
        """Return one element of ITEMS."""
        return items[self.below(len(items))]

    def word(self) -> str:
        """Return one vocabulary word."""
        return self.choice(WORDS)

    def words(self, count: int) -> list[str]:
        """Return COUNT vocabulary words."""
        return [self.word() for _ in range(count)]
