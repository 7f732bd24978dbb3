"""API keys: hashing, the Redis key store, `mes keys`, and what production refuses."""

import io
import json

import pytest

from mes.cli import main
from mes.errors import ConfigError, Conflict, NotFound
from mes.keys import EXAMPLE_KEY, KeyRing, hash_key, parse_api_keys, parse_scopes
from mes.store.apikeys import LIVE, RECORDS, RedisKeyStore, check_keys_exist
from mes.stack import StackOptions, process_table
from mes.registry import ModelRegistry
from mes.settings import Settings
from tests.conftest import MODELS_FILE

PROD = {"MES_MODELS_FILE": str(MODELS_FILE), "MES_ENV": "production",
        "MES_FLOWER_BASIC_AUTH": "ops:a-long-password"}


@pytest.fixture
def keystore(redis):
    return RedisKeyStore(redis)


def run(redis, *argv, environ=None):
    out, err = io.StringIO(), io.StringIO()
    code = main(["keys", *argv], environ=environ or {}, stdout=out, stderr=err, redis=redis)
    return code, out.getvalue(), err.getvalue()


def test_created_key_is_stored_only_as_its_hash(keystore, redis):
    stored, secret = keystore.create("ci", frozenset({"jobs"}), now=1.0)
    assert secret.startswith("mes_") and len(secret) >= 40
    dump = json.dumps({"records": redis.hgetall(RECORDS), "live": redis.hgetall(LIVE)})
    assert secret not in dump and hash_key(secret) in dump
    assert stored.hash_prefix == hash_key(secret)[:8]
    found = keystore.find(hash_key(secret))
    assert found.name == "ci" and found.scopes == {"jobs"} and not found.is_admin


def test_two_keys_never_share_a_secret(keystore):
    _, one = keystore.create("a", frozenset({"jobs"}), now=1.0)
    _, two = keystore.create("b", frozenset({"jobs"}), now=1.0)
    assert one != two


def test_revoked_key_stops_working_and_its_name_is_never_reused(keystore):
    _, secret = keystore.create("ci", frozenset({"jobs"}), now=1.0)
    revoked = keystore.revoke("ci", now=2.0)
    assert revoked.revoked_at == 2.0
    assert keystore.find(hash_key(secret)) is None and keystore.live_count() == 0
    with pytest.raises(Conflict):
        keystore.create("ci", frozenset({"jobs"}), now=3.0)
    with pytest.raises(NotFound):
        keystore.revoke("nobody", now=3.0)
    assert keystore.revoke("ci", now=4.0).revoked_at == 2.0  # revoking twice changes nothing


def test_keyring_checks_settings_keys_then_stored_keys(keystore):
    _, secret = keystore.create("stored", frozenset({"models"}), now=1.0)
    ring = KeyRing(parse_api_keys("alice:alice-secret-1:jobs"), keystore)
    assert ring.authenticate("alice-secret-1").name == "alice"
    assert ring.authenticate(secret).name == "stored"
    assert ring.authenticate("nope-nope-nope") is None


def test_scopes_parse_with_commas_or_plus():
    assert parse_scopes("jobs,models") == parse_scopes("jobs+models") == {"jobs", "models"}
    for bad in ("", "root", "jobs,root"):
        with pytest.raises(ValueError):
            parse_scopes(bad)


def test_cli_create_prints_the_key_once_then_list_and_revoke(redis):
    code, out, err = run(redis, "create", "--name", "ci", "--scopes", "jobs,models")
    created = json.loads(out)
    assert code == 0 and created["key"].startswith("mes_") and "never shown again" in err
    assert created["scopes"] == ["jobs", "models"] and created["created_at"].endswith("Z")
    code, out, _ = run(redis, "list")
    assert code == 0 and created["key"] not in out and hash_key(created["key"]) not in out
    [listed] = json.loads(out)["keys"]
    assert listed == {key: value for key, value in created.items() if key != "key"}
    code, out, _ = run(redis, "revoke", "ci")
    assert code == 0 and json.loads(out)["revoked_at"] is not None
    assert RedisKeyStore(redis).find(hash_key(created["key"])) is None


@pytest.mark.parametrize("argv,words", [
    (["create", "--name", "bad name", "--scopes", "jobs"], "key name"),
    (["create", "--name", "ci", "--scopes", "root"], "scopes"),
    (["create", "--name", "alice", "--scopes", "jobs"], "MES_API_KEYS already"),
    (["revoke", "ghost"], "no key named"),
])
def test_cli_refuses_bad_requests(redis, argv, words):
    code, out, err = run(redis, *argv, environ={"MES_API_KEYS": "alice:alice-secret-1:jobs"})
    assert code == 2 and words in err and not out


def test_cli_says_when_redis_cannot_be_reached():
    out, err = io.StringIO(), io.StringIO()
    code = main(["keys", "list", "--redis-url", "redis://127.0.0.1:9/0"], environ={},
                stdout=out, stderr=err)
    assert code == 2 and "cannot use Redis" in err.getvalue()


def test_production_refuses_the_example_key_and_an_open_flower():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**PROD, "MES_FLOWER_BASIC_AUTH": "",
                           "MES_API_KEYS": f"dev:{EXAMPLE_KEY}:admin"})
    text = "\n".join(info.value.problems)
    assert "example key" in text and "MES_FLOWER_BASIC_AUTH" in text
    hashed = f"dev:sha256${hash_key(EXAMPLE_KEY)}:admin"  # a hashed copy is the same key
    with pytest.raises(ConfigError):
        Settings.from_env({**PROD, "MES_API_KEYS": hashed})
    # Development keeps working with both.
    Settings.from_env({"MES_MODELS_FILE": str(MODELS_FILE), "MES_API_KEYS": hashed})


def test_production_without_any_key_refuses_to_start_until_one_is_stored(keystore):
    settings = Settings.from_env(PROD)
    with pytest.raises(ConfigError, match="no API keys"):
        check_keys_exist(settings, keystore)
    keystore.create("ops", frozenset({"admin"}), now=1.0)
    check_keys_exist(settings, keystore)
    keystore.revoke("ops", now=2.0)
    with pytest.raises(ConfigError):
        check_keys_exist(settings, keystore)
    check_keys_exist(Settings.from_env({**PROD, "MES_API_KEYS": "a:secret-aaaa:jobs"}), keystore)
    check_keys_exist(Settings.from_env({"MES_MODELS_FILE": str(MODELS_FILE)}), keystore)


def test_production_refuses_when_redis_cannot_say(keystore):
    class Down:
        def live_count(self):
            raise ConnectionError("refused")
    with pytest.raises(ConfigError, match="could not be asked"):
        check_keys_exist(Settings.from_env(PROD), Down())


@pytest.mark.parametrize("raw", ["admin", "admin:short", ":a-long-password", "a:long-password,b"])
def test_flower_basic_auth_is_checked(raw):
    with pytest.raises(ConfigError, match="MES_FLOWER_BASIC_AUTH"):
        Settings.from_env({"MES_MODELS_FILE": str(MODELS_FILE), "MES_FLOWER_BASIC_AUTH": raw})


def test_rate_limits_per_key_with_a_default():
    settings = Settings.from_env({"MES_MODELS_FILE": str(MODELS_FILE),
                                  "MES_RATE_LIMITS": "default=600/minute; alice=60/minute,5 per "
                                                     "second;ops=unlimited"})
    assert settings.rate_limit_for("alice") == "60/minute,5 per second"
    assert settings.rate_limit_for("bob") == "600/minute"
    assert settings.rate_limit_for("ops") == "unlimited"
    assert settings.rate_limit_for("root", admin=True) == "unlimited"  # unless named
    assert settings.rate_limit_for("alice", admin=True) == "60/minute,5 per second"
    assert Settings.from_env({"MES_MODELS_FILE": str(MODELS_FILE)}).rate_limit_for("x")


@pytest.mark.parametrize("raw", ["alice", "alice=fast", "a b=1/second", "a=1/second;a=2/second",
                                 "a=3/fortnight"])
def test_bad_rate_limits_are_refused(raw):
    with pytest.raises(ConfigError, match="MES_RATE_LIMITS"):
        Settings.from_env({"MES_MODELS_FILE": str(MODELS_FILE), "MES_RATE_LIMITS": raw})


def test_launcher_runs_flower_behind_basic_auth(tmp_path):
    table = process_table(ModelRegistry.from_file(MODELS_FILE), StackOptions())
    assert '"--basic-auth=$MES_FLOWER_BASIC_AUTH"' in table["flower"]


def test_mes_up_in_production_refuses_a_new_embedded_redis_without_keys(keystore):
    from mes.cli.up import check_stored_keys
    with pytest.raises(ConfigError, match="embedded Redis"):
        check_stored_keys(Settings.from_env(PROD), embedded_redis=True)
    check_stored_keys(Settings.from_env({**PROD, "MES_API_KEYS": "a:secret-aaaa:jobs"}),
                      embedded_redis=True)
