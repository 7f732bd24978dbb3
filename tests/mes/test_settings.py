import pytest

from mes.errors import ConfigError
from mes.settings import Settings
from tests.conftest import MODELS_FILE


def test_defaults_and_parsing():
    settings = Settings.from_env({"MES_MODELS_FILE": str(MODELS_FILE), "MES_JOB_TTL_S": "600",
                                  "MES_OLLAMA_URL": "http://gpu-1:11434/",
                                  "MES_LOG_PROMPTS": "yes"})
    assert settings.job_ttl_s == 600
    assert settings.ollama_url == "http://gpu-1:11434"
    assert settings.log_prompts is True
    assert settings.visibility_timeout_s == 2 * settings.task_time_limit_s


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"MES_REDIS_URL": "localhost:6379", "MES_JOB_TTL_S": "ten",
                           "MES_MODELS_FILE": "/nope.json", "MES_ENV": "prod",
                           "MES_TASK_TIME_LIMIT_S": "100", "MES_TASK_SOFT_TIME_LIMIT_S": "200"})
    text = "\n".join(info.value.problems)
    for var in ("MES_REDIS_URL", "MES_JOB_TTL_S", "MES_MODELS_FILE", "MES_ENV",
                "MES_TASK_SOFT_TIME_LIMIT_S"):
        assert var in text
    assert len(info.value.problems) == 5


def test_settings_are_frozen():
    settings = Settings.from_env({"MES_MODELS_FILE": str(MODELS_FILE)})
    with pytest.raises(Exception):
        settings.job_ttl_s = 5


def test_api_keys_are_hashed_and_scoped():
    settings = Settings.from_env({"MES_MODELS_FILE": str(MODELS_FILE),
                                  "MES_API_KEYS": "a:secret-aaa:jobs+models, b:sha256$" + "0" * 64 + ":admin"})
    a, b = settings.api_keys
    assert a.name == "a" and "secret-aaa" not in repr(settings)
    assert a.allows("jobs") and a.allows("models") and not a.allows("admin")
    assert b.secret_hash == "0" * 64 and b.allows("models")


@pytest.mark.parametrize("raw", ["a:short:jobs", "a:secret-aaa:root", "a:secret-aaa", "a b:secret-aaa:jobs",
                                 "a:secret-aaa:jobs,a:secret-bbb:jobs"])
def test_bad_api_keys_are_refused(raw):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"MES_MODELS_FILE": str(MODELS_FILE), "MES_API_KEYS": raw})
    assert "MES_API_KEYS" in str(info.value)
