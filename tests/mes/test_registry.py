import json
from pathlib import Path

import pytest

from mes.errors import ConfigError, UnknownModel
from mes.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_has_the_six_models():
    registry = ModelRegistry.from_file(ROOT / "config" / "models.json")
    ids = [model.id for model in registry.models]
    assert ids[:0] == [] and set(ids) == {"llama3.1:8b", "mistral:7b", "phi3:mini", "codellama:7b",
                                          "gemma:2b", "smollm2:135m"}
    assert registry.get("codellama:7b").queue == "mes.llama"
    assert {f.queue for f in registry.families} == {"mes.llama", "mes.mistral", "mes.phi",
                                                    "mes.gemma", "mes.smollm"}


def test_unknown_model(registry):
    with pytest.raises(UnknownModel) as info:
        registry.get("gpt-5")
    assert info.value.http_status == 400 and "smollm2:135m" in info.value.details["known"]


def test_specs_are_frozen(registry):
    spec = registry.get("smollm2:135m")
    with pytest.raises(Exception):
        spec.options["temperature"] = 1
    assert spec.runner_options["num_ctx"] == 2048


def test_every_problem_is_reported(tmp_path):
    bad = {"families": {"a": {"concurrency": 0}, "b": {}},
           "models": [{"id": "m:1", "family": "zzz"},
                      {"id": "m:2", "family": "b", "json_mode": "xml", "runner_options": {"speed": 1},
                       "options": {"num_ctx": 10}},
                      {"id": "m:3", "family": "b", "colour": "red"}]}
    path = tmp_path / "models.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError) as info:
        ModelRegistry.from_file(path)
    text = "\n".join(info.value.problems)
    assert "concurrency must be at least 1" in text
    assert "family must be one of" in text
    assert "json_mode" in text and "runner_options" in text and "non-sampling" in text
    assert "colour" in text


def test_unreadable_file(tmp_path):
    path = tmp_path / "models.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError):
        ModelRegistry.from_file(path)
