"""Keep uploaded files in Redis (OpenAI's Files API): a record, the text, and each key's index.

Several web hosts share one service, so a file is never kept on one host's disk. A file is a
hash (its record) and a list of its text in pieces of at most a million characters (each piece
is whole characters, so it reads back with a decoding client and streams out piece by piece);
both expire with the file. Each key has three small indexes: its file ids (a zset scored 0, so
ZRANGEBYLEX pages by id, and ids sort by creation), the same ids scored by expiry, and each
live file's size, which the per-key cap adds up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

from mes.clock import new_id
from mes.errors import PayloadTooLarge
from mes.store import names

PIECE_CHARS = 1 << 20   # characters per list element of a file's text
PIECES_PER_TRIP = 16    # list elements per pipelined round trip while writing
LIST_PAGE = 500         # ids read per round trip while listing

# Drop the key's expired files from its indexes, add up what its live files hold and, if the
# new one fits under the cap, save its record and enter it in the indexes; else delete its
# text. KEYS[1] the file's hash, KEYS[2] its text (list), KEYS[3] the key's file ids (zset,
# scored 0), KEYS[4] the key's file ids by expiry (zset), KEYS[5] the key's file sizes (hash);
# ARGV[1] now (s), ARGV[2] the file id, ARGV[3] its bytes, ARGV[4] when it expires (s),
# ARGV[5] the key's cap (bytes), ARGV[6] the file's TTL (s), ARGV[7...] the record's fields
# and values. Returns -1 when saved, else the bytes the key's files already hold.
_KEEP = """
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1])) do
  redis.call('HDEL', KEYS[5], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', KEYS[3], id)
end
local used = 0
for _, n in ipairs(redis.call('HVALS', KEYS[5])) do used = used + tonumber(n) end
if used + tonumber(ARGV[3]) > tonumber(ARGV[5]) then
  redis.call('DEL', KEYS[2])
  return used
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('ZADD', KEYS[3], 0, ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
redis.call('HSET', KEYS[5], ARGV[2], ARGV[3])
for i = 3, 5 do
  if redis.call('TTL', KEYS[i]) < tonumber(ARGV[6]) then redis.call('EXPIRE', KEYS[i], ARGV[6]) end
end
return -1
"""


@dataclass(frozen=True)
class StoredFile:
    """Hold an uploaded file's record (its text is read apart)."""

    id: str
    owner: str
    filename: str
    bytes: int
    purpose: str
    created_at: float
    expires_at: float


def _record(raw: dict[str, str]) -> StoredFile:
    return StoredFile(id=raw["id"], owner=raw["owner"], filename=raw["filename"],
                      bytes=int(raw["bytes"]), purpose=raw["purpose"],
                      created_at=float(raw["created_at"]), expires_at=float(raw["expires_at"]))


class FileStore:
    """Save, read, list and delete uploaded files, under a cap on what each key holds."""

    def __init__(self, redis):
        self._redis = redis
        self._keep = redis.register_script(_KEEP)

    def used_bytes(self, owner: str, now: float) -> int:
        """Return what the key's live files hold, in bytes."""
        sizes = self._redis.hgetall(names.owner_file_bytes(owner))
        gone = set(self._redis.zrangebyscore(names.owner_file_expiry(owner), "-inf", now))
        return sum(int(n) for file_id, n in sizes.items() if file_id not in gone)

    def create(self, *, owner: str, filename: str, purpose: str, text: str, size: int,
               now: float, ttl_s: float, cap_bytes: int) -> StoredFile:
        """Save a file's text and record, or raise PayloadTooLarge past the key's cap."""
        used = self.used_bytes(owner, now)
        if used + size > cap_bytes:
            raise self._over_cap(used, size, cap_bytes)
        stored = StoredFile(id=new_id("file", now), owner=owner, filename=filename, bytes=size,
                            purpose=purpose, created_at=now, expires_at=now + ttl_s)
        ttl = math.ceil(ttl_s)
        content = names.file_content(stored.id)
        pieces = [text[at:at + PIECE_CHARS] for at in range(0, len(text), PIECE_CHARS)]
        for start in range(0, len(pieces), PIECES_PER_TRIP):
            pipe = self._redis.pipeline(transaction=False)
            pipe.rpush(content, *pieces[start:start + PIECES_PER_TRIP])
            pipe.expire(content, ttl)  # a web process that dies here leaves nothing for long
            pipe.execute()
        fields = {"id": stored.id, "owner": owner, "filename": filename, "bytes": size,
                  "purpose": purpose, "created_at": repr(now), "expires_at": repr(now + ttl_s)}
        flat = [word for pair in fields.items() for word in pair]
        held = int(self._keep(
            keys=[names.file(stored.id), content, names.owner_files(owner),
                  names.owner_file_expiry(owner), names.owner_file_bytes(owner)],
            args=[now, stored.id, size, now + ttl_s, cap_bytes, ttl, *flat]))
        if held >= 0:  # another upload of the same key took the room meanwhile
            raise self._over_cap(held, size, cap_bytes)
        return stored

    @staticmethod
    def _over_cap(used: int, size: int, cap_bytes: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the key's files would hold {used + size} bytes; the limit is {cap_bytes} "
            "(MES_MAX_FILE_BYTES_PER_KEY): delete files, or wait for them to expire",
            {"param": "file", "limit_bytes": cap_bytes, "used_bytes": used})

    def get(self, file_id: str) -> StoredFile | None:
        """Return a file's record, or None if it never existed, was deleted or has expired."""
        raw = self._redis.hgetall(names.file(file_id))
        return _record(raw) if raw.get("id") else None

    def pieces(self, file_id: str) -> Iterator[str]:
        """Yield a file's text piece by piece, one round trip each."""
        index = 0
        while True:
            piece = self._redis.lrange(names.file_content(file_id), index, index)
            if not piece:
                return
            yield piece[0]
            index += 1

    def text(self, file_id: str) -> str:
        """Return a file's whole text."""
        return "".join(self._redis.lrange(names.file_content(file_id), 0, -1))

    def list_owned(self, owner: str, *, limit: int, after: str | None = None,
                   ascending: bool = False) -> tuple[list[StoredFile], bool]:
        """Return up to `limit` of a key's live files after the id `after`, and whether more follow.

        Newest first unless `ascending`. Ids of files that expired are dropped on the way.
        """
        key = names.owner_files(owner)
        found: list[StoredFile] = []
        cursor = after
        while len(found) <= limit:
            if ascending:
                ids = self._redis.zrangebylex(key, f"({cursor}" if cursor else "-", "+",
                                              start=0, num=LIST_PAGE)
            else:
                ids = self._redis.zrevrangebylex(key, f"({cursor}" if cursor else "+", "-",
                                                 start=0, num=LIST_PAGE)
            if not ids:
                break
            pipe = self._redis.pipeline(transaction=False)
            for file_id in ids:
                pipe.hgetall(names.file(file_id))
            records = pipe.execute()
            found.extend(_record(raw) for raw in records if raw.get("id"))
            stale = [file_id for file_id, raw in zip(ids, records) if not raw.get("id")]
            if stale:
                self._redis.zrem(key, *stale)
            cursor = ids[-1]
        return found[:limit], len(found) > limit

    def delete(self, stored: StoredFile) -> None:
        """Delete a file's record and text and free its room under the key's cap."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(names.file(stored.id), names.file_content(stored.id))
        pipe.zrem(names.owner_files(stored.owner), stored.id)
        pipe.zrem(names.owner_file_expiry(stored.owner), stored.id)
        pipe.hdel(names.owner_file_bytes(stored.owner), stored.id)
        pipe.execute()
