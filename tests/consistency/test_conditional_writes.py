"""Conditional writes (SPEC section 10): `if_match` on the HTTP writes against a real server
with ETags, `if_version` on file.write under flock, and the versions they report."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from plait.errors import ErrorKind, ToolError
from plait.stdlib.registry import ToolContext
from plait.versions import Versioned, value_hash
from tests.servers import TestServer, VersionedStore
from tests.stdlib.conftest import call, call_versioned, make_ctx

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    c = make_ctx(tmp_path)
    c.idempotency_key = "run1:save"
    return c


def kind(ctx: ToolContext, name: str, **args: object) -> ErrorKind:
    with pytest.raises(ToolError) as info:
        call(ctx, name, **args)
    return info.value.kind


@pytest.fixture
def store() -> VersionedStore:
    with VersionedStore() as server:
        server.records["r"] = {"n": 1}
        server.versions["r"] = 2
        yield server


def test_get_is_versioned_by_etag(ctx: ToolContext, store: VersionedStore) -> None:
    result = call_versioned(ctx, "http.get", url=store.url("/records/r"))
    assert isinstance(result, Versioned) and result.version == '"2"'
    assert result.value["body"] == {"n": 1}


def test_without_etag_the_body_hash_is_the_version(ctx: ToolContext) -> None:
    with TestServer() as server:
        result = call_versioned(ctx, "http.get", url=server.url("/text"))
    assert result.version == value_hash("hello")


@pytest.mark.parametrize("method", ["http.put", "http.patch", "http.post", "http.delete"])
def test_writes_send_if_match_and_idempotency_key(
    ctx: ToolContext, store: VersionedStore, method: str
) -> None:
    call(ctx, method, url=store.url("/records/r"), json={"n": 2}, if_match='"2"')
    sent = store.requests[-1]
    assert sent.method == method.split(".")[1].upper()
    assert sent.headers["if-match"] == '"2"'
    assert sent.headers["idempotency-key"] == "run1:save"
    assert store.writes == 1


def test_mismatch_is_stale_and_writes_nothing(ctx: ToolContext, store: VersionedStore) -> None:
    assert (
        kind(ctx, "http.put", url=store.url("/records/r"), json=5, if_match='"1"')
        is ErrorKind.STALE
    )
    assert store.records["r"] == {"n": 1} and store.conflicts == 1


def test_412_without_a_condition_stays_permanent(ctx: ToolContext) -> None:
    with TestServer() as server:
        assert kind(ctx, "http.put", url=server.url("/status/412"), json=1) is ErrorKind.PERMANENT
        assert (
            kind(ctx, "http.put", url=server.url("/status/409"), json=1, if_match="*")
            is ErrorKind.STALE
        )


def test_headers_may_set_their_own_idempotency_key(ctx: ToolContext, store: VersionedStore) -> None:
    call(ctx, "http.post", url=store.url("/records/z"), json=1, headers={"idempotency-key": "mine"})
    assert store.keys == ["mine"]


def test_http_dates_go_out_as_if_unmodified_since(ctx: ToolContext) -> None:
    with TestServer() as server:
        call(
            ctx,
            "http.put",
            url=server.url("/json"),
            json=1,
            if_match="Wed, 21 Oct 2026 07:28:00 GMT",
        )
        assert server.requests[-1].headers["if-unmodified-since"] == "Wed, 21 Oct 2026 07:28:00 GMT"


@pytest.mark.parametrize("value", ['W/"2"', "abc123", '"2', ""])
def test_values_a_server_cannot_compare_are_invalid_input(
    ctx: ToolContext, store: VersionedStore, value: str
) -> None:
    assert (
        kind(ctx, "http.put", url=store.url("/records/r"), json=1, if_match=value)
        is ErrorKind.INVALID_INPUT
    )
    assert store.requests == []


# --- files ------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_file_read_and_write_are_versioned_by_sha256(ctx: ToolContext, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("héllo")
    result = call_versioned(ctx, "file.read", path="f.txt")
    assert result.version == sha("héllo".encode())
    written = call_versioned(
        ctx, "file.write", path="f.txt", content="bye", if_version=result.version
    )
    assert written.version == sha(b"bye") and written.value["bytes"] == 3
    assert (tmp_path / "f.txt.lock").exists()


def test_if_version_mismatch_is_stale(ctx: ToolContext, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("a")
    assert (
        kind(ctx, "file.write", path="f.txt", content="b", if_version=sha(b"old"))
        is ErrorKind.STALE
    )
    assert (tmp_path / "f.txt").read_text() == "a"


def test_if_version_star_and_empty(ctx: ToolContext, tmp_path: Path) -> None:
    assert kind(ctx, "file.write", path="new.txt", content="x", if_version="*") is ErrorKind.STALE
    call(ctx, "file.write", path="new.txt", content="x", if_version="")
    assert kind(ctx, "file.write", path="new.txt", content="y", if_version="") is ErrorKind.STALE
    call(ctx, "file.write", path="new.txt", content="y", if_version="*")
    assert (tmp_path / "new.txt").read_text() == "y"


def test_concurrent_conditional_writers_lose_no_update(ctx: ToolContext, tmp_path: Path) -> None:
    """Eight threads each add one line by read, then write if unchanged, retrying on stale:
    every line arrives (the flock makes check and replace one step)."""
    (tmp_path / "log.txt").write_text("")

    def writer(i: int) -> None:
        while True:
            current = call_versioned(ctx, "file.read", path="log.txt")
            try:
                call(
                    ctx,
                    "file.write",
                    path="log.txt",
                    content=current.value + f"{i}\n",
                    if_version=current.version,
                )
                return
            except ToolError as exc:
                assert exc.kind is ErrorKind.STALE

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "log.txt").read_text().split()
    assert sorted(lines) == [str(i) for i in range(8)]
