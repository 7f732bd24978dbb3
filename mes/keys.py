"""Parse, hash and check API keys with their scopes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Protocol

SCOPES = ("jobs", "models", "admin")
# The README's example key: `mes up` uses it in development, and production refuses it.
EXAMPLE_KEY = "mes-dev-key-change-me"
SECRET_PREFIX = "mes_"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HASHED = re.compile(r"^sha256\$([0-9a-f]{64})$")


def hash_key(secret: str) -> str:
    """Return the hex SHA-256 of a key; keys are high-entropy, so no salt or stretching is needed."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """Hold one key's name, the hash of its secret, and its scopes."""

    name: str
    secret_hash: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Tell whether this key may act in a scope; admin may do everything."""
        return "admin" in self.scopes or scope in self.scopes

    @property
    def is_admin(self) -> bool:
        """Tell whether this key sees every key's jobs."""
        return "admin" in self.scopes


def new_secret() -> str:
    """Return a fresh key: 256 random bits, prefixed so that secret scanners can spot it."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    """Return the name if it is 1 to 64 letters, digits, '_', '.' or '-'; else raise ValueError."""
    if not _NAME.match(name):
        raise ValueError(f"a key name must be 1 to 64 letters, digits, '_', '.' or '-', got {name!r}")
    return name


def parse_scopes(raw: str) -> frozenset[str]:
    """Parse `jobs,models` (or `jobs+models`) into scopes, refusing unknown ones."""
    scopes = frozenset(part.strip() for part in re.split(r"[,+]", raw) if part.strip())
    unknown = scopes - set(SCOPES)
    if not scopes or unknown:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}, got {raw!r}")
    return scopes


def parse_api_keys(raw: str) -> tuple[ApiKey, ...]:
    """Parse `name:secret:scope+scope, ...`; a secret written `sha256$<hex>` is taken as already hashed."""
    keys: list[ApiKey] = []
    problems: list[str] = []
    for index, entry in enumerate(part.strip() for part in raw.split(",")):
        if not entry:
            continue
        pieces = entry.split(":")
        if len(pieces) != 3:
            problems.append(f"entry {index + 1} must be name:secret:scopes")
            continue
        name, secret, scopes_raw = (piece.strip() for piece in pieces)
        scopes = frozenset(s.strip() for s in scopes_raw.split("+") if s.strip())
        if not _NAME.match(name):
            problems.append(f"entry {index + 1}: bad name {name!r}")
        if len(secret) < 8:
            problems.append(f"entry {index + 1} ({name}): the secret must be at least 8 characters")
        unknown = scopes - set(SCOPES)
        if not scopes or unknown:
            problems.append(f"entry {index + 1} ({name}): scopes must be among {'+'.join(SCOPES)}")
        hashed = _HASHED.match(secret)
        keys.append(ApiKey(name, hashed.group(1) if hashed else hash_key(secret), scopes))
    names = [key.name for key in keys]
    if len(set(names)) != len(names):
        problems.append("key names must be unique")
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(keys)


def is_example_key(key: ApiKey) -> bool:
    """Tell whether a key's secret is the README's example key."""
    return hmac.compare_digest(key.secret_hash, hash_key(EXAMPLE_KEY))


class KeyLookup(Protocol):
    """Find a stored key by the hash of its secret (mes.keystore.RedisKeyStore does)."""

    def find(self, secret_hash: str) -> ApiKey | None:
        """Return the live key with this hash, or None."""


class KeyRing:
    """Find the key that a presented secret belongs to: settings keys first, then stored ones."""

    def __init__(self, keys: tuple[ApiKey, ...], store: KeyLookup | None = None):
        self._keys = keys
        self._store = store

    def authenticate(self, secret: str) -> ApiKey | None:
        """Return the matching key, comparing every settings hash in constant time."""
        presented = hash_key(secret)
        found = None
        for key in self._keys:
            # Compare against all keys so the timing does not reveal which one matched.
            if hmac.compare_digest(presented, key.secret_hash):
                found = key
        if found is None and self._store is not None:
            found = self._store.find(presented)
        return found
