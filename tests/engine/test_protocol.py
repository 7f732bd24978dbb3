"""Small pure helpers: Go durations, keep_alive, timestamps, model specs."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from mes.engine import protocol as wire
from mes.engine.config import EngineConfig, ModelSpec


@pytest.mark.parametrize("text, seconds", [
    ("5m", 300.0), ("30s", 30.0), ("1h", 3600.0), ("1h30m", 5400.0), ("250ms", 0.25),
    ("1.5h", 5400.0), ("0", 0.0), ("0s", 0.0), ("300", 300.0), ("-1s", -1.0), ("10us", 1e-5),
])
def test_parse_duration(text, seconds):
    assert wire.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 m", "m5", "5x", "1h-2m"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        wire.parse_duration(text)


def test_keep_alive_values():
    assert wire.parse_keep_alive(None, 42.0) == 42.0
    assert wire.parse_keep_alive(0, 42.0) == 0.0
    assert wire.parse_keep_alive(12.5, 42.0) == 12.5
    assert wire.parse_keep_alive(-1, 42.0) == math.inf
    assert wire.parse_keep_alive("-5m", 42.0) == math.inf
    with pytest.raises(ValueError):
        wire.parse_keep_alive(True, 42.0)
    with pytest.raises(ValueError):
        wire.parse_keep_alive([1], 42.0)


def test_timestamps_parse_back():
    stamp = wire.rfc3339(0.5)
    assert stamp == "1970-01-01T00:00:00.500000Z"
    assert datetime.fromisoformat(wire.expires_rfc3339(math.inf)).year > 2200
    assert datetime.fromisoformat(wire.now_rfc3339()).tzinfo == timezone.utc


def test_model_specs():
    assert ModelSpec.named("llama3.1:8b").parameter_size == "8.0B"
    guessed = ModelSpec.named("Qwen2.5:14b")
    assert (guessed.name, guessed.family, guessed.parameter_size) == ("qwen2.5:14b", "qwen", "14B")
    spec = ModelSpec.parse("x:1b,token_ms=2,num_parallel=3,load_ms=7")
    config = EngineConfig(models=[spec], token_ms=9.0, num_parallel=1)
    assert config.latency(spec, "token_ms") == 2.0 and config.latency(spec, "prompt_ms") == 0.0
    assert config.slots(spec) == 3 and config.model("X:1B") is spec and config.model("x") is None
    with pytest.raises(ValueError):
        ModelSpec.parse("x:1b,warp=9")
