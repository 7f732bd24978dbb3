"""Uploaded files in Redis: record and text, pieces, listing by id, expiry and the per-key cap."""

from __future__ import annotations

import pytest

from mes.errors import PayloadTooLarge
from mes.store import names
from mes.store.batches import BatchStore
from mes.store.files import PIECE_CHARS, FileStore

NOW = 1_700_000_000.0


@pytest.fixture
def files(redis) -> FileStore:
    return FileStore(redis)


def put(files, text="{}\n", owner="alice", now=NOW, ttl_s=3600, cap=10_000, name="in.jsonl"):
    return files.create(owner=owner, filename=name, purpose="batch", text=text,
                        size=len(text.encode()), now=now, ttl_s=ttl_s, cap_bytes=cap)


def test_a_file_is_a_record_and_its_text_both_expiring(files, redis):
    stored = put(files, "é\n{}\n")
    assert stored.id.startswith("file_") and stored.bytes == 6
    assert files.get(stored.id) == stored
    assert files.text(stored.id) == "é\n{}\n"
    assert 3590 < redis.ttl(names.file(stored.id)) <= 3600
    assert 3590 < redis.ttl(names.file_content(stored.id)) <= 3600
    assert files.get("file_none") is None


def test_a_large_text_is_kept_and_read_in_whole_pieces(files, redis):
    text = "ü" * (PIECE_CHARS + 10)
    stored = put(files, text, cap=10 * PIECE_CHARS)
    assert redis.llen(names.file_content(stored.id)) == 2
    assert [len(piece) for piece in files.pieces(stored.id)] == [PIECE_CHARS, 10]
    assert files.text(stored.id) == text


def test_the_cap_counts_a_keys_live_files_only(files):
    first = put(files, "x" * 600, cap=1000)
    with pytest.raises(PayloadTooLarge) as over:
        put(files, "y" * 500, cap=1000)
    assert over.value.details["used_bytes"] == 600
    put(files, "z" * 500, owner="bob", cap=1000)  # another key has its own room
    assert files.used_bytes("alice", NOW) == 600
    later = NOW + 3601  # the first one has expired by then
    assert files.used_bytes("alice", later) == 0
    put(files, "y" * 500, now=later, cap=1000)
    files.delete(files.list_owned("alice", limit=10)[0][0])
    assert files.used_bytes("alice", later) == 0
    assert files.get(first.id) is not None  # its own TTL, not the index, removes it


def test_a_refused_upload_leaves_no_text_behind(files, redis):
    put(files, "x" * 900, cap=1000)
    before = set(redis.keys(names.file_content("*")))
    with pytest.raises(PayloadTooLarge):
        put(files, "y" * 200, cap=1000)
    assert set(redis.keys(names.file_content("*"))) == before


def test_listing_is_by_id_both_ways_with_after(files):
    ids = [put(files, now=NOW + i).id for i in range(5)]
    page, more = files.list_owned("alice", limit=2)
    assert [f.id for f in page] == [ids[4], ids[3]] and more
    page, more = files.list_owned("alice", limit=2, after=ids[3])
    assert [f.id for f in page] == [ids[2], ids[1]] and more
    page, more = files.list_owned("alice", limit=10, after=ids[1], ascending=True)
    assert [f.id for f in page] == ids[2:] and not more
    assert files.list_owned("bob", limit=10) == ([], False)


def test_delete_removes_record_text_and_index(files, redis):
    stored = put(files)
    files.delete(stored)
    assert files.get(stored.id) is None and files.text(stored.id) == ""
    assert files.list_owned("alice", limit=10) == ([], False)
    assert redis.hgetall(names.owner_file_bytes("alice")) == {}


def test_a_failed_batch_is_kept_with_no_jobs(store):
    batches = BatchStore(store)
    batches.create_failed("batch_01F", "alice", created_at=NOW, metadata={"a": "b"},
                          extra={"errors": [{"code": "empty_file"}]})
    failed = batches.get("batch_01F")
    assert (failed.status, failed.total, failed.finished_at) == ("failed", 0, NOW)
    assert failed.extra == {"errors": [{"code": "empty_file"}]}
    assert [b.id for b in batches.list_owned("alice", limit=10)[0]] == ["batch_01F"]
    assert batches.active_summary()["in_progress"] == 0
