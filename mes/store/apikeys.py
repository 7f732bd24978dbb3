"""Keep API keys in Redis as hashes: create, list, revoke, and find one by its hash.

Two Redis hashes hold them:
- `mes:apikeys` maps each key's name to its record (JSON: name, hash, scopes, created_at,
  revoked_at). A revoked record stays, so its name is never reused: jobs belong to a name,
  and a new key must not inherit an old key's jobs.
- `mes:apikeys:live` maps the SHA-256 of each live secret to `{"name", "scopes"}`, so one
  HGET authenticates a request. Revoking deletes that field.

Looking a key up by its hash does not leak the secret through timing: the attacker controls
the hash only through a preimage of SHA-256, and a 256-bit key cannot be guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mes.clock import iso
from mes.errors import ConfigError, Conflict, NotFound
from mes.keys import ApiKey, check_name, hash_key, new_secret
from mes.settings import Settings
from mes.store import names

RECORDS = names.API_KEYS
LIVE = names.API_KEYS_LIVE

# KEYS[1] = mes:apikeys, KEYS[2] = mes:apikeys:live
# ARGV[1] = name, ARGV[2] = record JSON, ARGV[3] = secret hash, ARGV[4] = live entry JSON
# Returns 1 when created, 0 when the name is taken (live or revoked).
_CREATE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return 1
"""

# KEYS[1] = mes:apikeys, KEYS[2] = mes:apikeys:live
# ARGV[1] = name, ARGV[2] = revoked_at (epoch seconds)
# Returns the updated record JSON, or false when there is no such name.
_REVOKE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return false
end
local record = cjson.decode(raw)
redis.call('HDEL', KEYS[2], record['hash'])
if record['revoked_at'] == nil or record['revoked_at'] == cjson.null then
  record['revoked_at'] = tonumber(ARGV[2])
  raw = cjson.encode(record)
  redis.call('HSET', KEYS[1], ARGV[1], raw)
end
return raw
"""


@dataclass(frozen=True)
class StoredKey:
    """Describe a stored key without its secret: name, scopes, dates and a short hash prefix."""

    name: str
    scopes: frozenset[str]
    created_at: float
    revoked_at: float | None
    hash_prefix: str

    @classmethod
    def from_record(cls, raw: str | bytes) -> "StoredKey":
        """Read a record as Redis holds it."""
        record = json.loads(raw)
        return cls(name=record["name"], scopes=frozenset(record["scopes"]),
                   created_at=record["created_at"], revoked_at=record.get("revoked_at"),
                   hash_prefix=record["hash"][:8])

    def as_dict(self) -> dict:
        """Return what `mes keys list` shows: never the secret, only 8 hex digits of its hash."""
        return {"name": self.name, "scopes": sorted(self.scopes), "created_at": iso(self.created_at),
                "revoked_at": iso(self.revoked_at), "hash_prefix": self.hash_prefix}


class RedisKeyStore:
    """Create, list, revoke and find API keys kept in Redis."""

    def __init__(self, redis):
        self.redis = redis
        self._create = redis.register_script(_CREATE)
        self._revoke = redis.register_script(_REVOKE)

    def create(self, name: str, scopes: frozenset[str], *, now: float) -> tuple[StoredKey, str]:
        """Store a new key's hash and return it with its secret, which is never stored."""
        check_name(name)
        secret = new_secret()
        secret_hash = hash_key(secret)
        record = {"name": name, "hash": secret_hash, "scopes": sorted(scopes),
                  "created_at": now, "revoked_at": None}
        live = {"name": name, "scopes": sorted(scopes)}
        created = self._create(keys=[RECORDS, LIVE],
                               args=[name, json.dumps(record), secret_hash, json.dumps(live)])
        if not int(created):
            raise Conflict(f"a key named {name!r} exists or existed; names are never reused",
                           {"name": name})
        return StoredKey.from_record(json.dumps(record)), secret

    def revoke(self, name: str, *, now: float) -> StoredKey:
        """Revoke a key at once: its secret stops working on the next request."""
        raw = self._revoke(keys=[RECORDS, LIVE], args=[name, now])
        if raw is None:
            raise NotFound(f"no key named {name!r}", {"name": name})
        return StoredKey.from_record(raw)

    def list(self) -> list[StoredKey]:
        """Return every key, live or revoked, oldest first."""
        keys = [StoredKey.from_record(raw) for raw in self.redis.hvals(RECORDS)]
        return sorted(keys, key=lambda key: (key.created_at, key.name))

    def find(self, secret_hash: str) -> ApiKey | None:
        """Return the live key whose secret has this hash, or None."""
        raw = self.redis.hget(LIVE, secret_hash)
        if raw is None:
            return None
        entry = json.loads(raw)
        return ApiKey(entry["name"], secret_hash, frozenset(entry["scopes"]))

    def live_count(self) -> int:
        """Count the keys that still work."""
        return int(self.redis.hlen(LIVE))


def check_keys_exist(settings: Settings, keystore: RedisKeyStore) -> None:
    """In production, refuse to start when no key could authenticate: none in settings or Redis."""
    if settings.env != "production" or settings.api_keys:
        return
    try:
        stored = keystore.live_count()
    except Exception as exc:  # noqa: BLE001 - any Redis failure: we cannot tell, so refuse
        raise ConfigError([f"MES_API_KEYS is empty and Redis could not be asked for stored keys "
                           f"({exc.__class__.__name__}); refusing to start in production"]) from exc
    if stored == 0:
        raise ConfigError(["no API keys: set MES_API_KEYS or run `mes keys create` "
                           "(MES_ENV=production refuses to start without one)"])
