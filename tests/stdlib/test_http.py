"""http.get / http.post against a real server on 127.0.0.1: results, error kinds, hints."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time

import pytest

from plait.errors import ErrorKind, ToolError
from plait.stdlib.http import parse_retry_after
from plait.stdlib.registry import ToolContext
from tests.servers import TestServer
from tests.stdlib.conftest import call, invoke, run_with


def fails(ctx: ToolContext, name: str, **args: object) -> ToolError:
    with pytest.raises(ToolError) as info:
        call(ctx, name, **args)
    return info.value


def test_get_parses_json_and_sends_params_and_headers(ctx: ToolContext,
                                                      server: TestServer) -> None:
    result = call(ctx, "http.get", url=server.url("/json"),
                  params={"q": "refund", "n": 2, "f": {"a": 1}},
                  headers={"X-Trace": "t1", "X-Page": 2})
    assert result["status"] == 200
    assert result["headers"]["content-type"] == "application/json"
    assert result["body"] == {"method": "GET", "path": "/json", "body": None,
                              "query": {"q": "refund", "n": "2", "f": '{"a":1}'}}
    assert server.requests[-1].headers["x-trace"] == "t1"
    assert server.requests[-1].headers["x-page"] == "2"


def test_get_text_body_stays_text(ctx: ToolContext, server: TestServer) -> None:
    assert call(ctx, "http.get", url=server.url("/text"))["body"] == "hello"


def test_post_sends_json(ctx: ToolContext, server: TestServer) -> None:
    result = call(ctx, "http.post", url=server.url("/json"), json={"ticket": [1, 2]})
    assert result["body"]["method"] == "POST"
    assert result["body"]["body"] == {"ticket": [1, 2]}


def test_500_is_transient_with_status_and_excerpt(ctx: ToolContext,
                                                  server: TestServer) -> None:
    err = fails(ctx, "http.get", url=server.url("/status/500?body=database%20on%20fire"))
    assert err.kind is ErrorKind.TRANSIENT
    assert "HTTP 500" in err.message and "database on fire" in err.message
    assert err.retry_after is None


def test_503_with_retry_after_gives_a_hint(ctx: ToolContext, server: TestServer) -> None:
    err = fails(ctx, "http.get", url=server.url("/status/503?retry_after=7"))
    assert err.kind is ErrorKind.TRANSIENT
    assert err.retry_after == 7


def test_429_is_rate_limited_with_retry_after_seconds(ctx: ToolContext,
                                                      server: TestServer) -> None:
    err = fails(ctx, "http.get", url=server.url("/status/429?retry_after=3"))
    assert err.kind is ErrorKind.RATE_LIMITED
    assert err.retry_after == 3
    assert "HTTP 429" in err.message


def test_429_with_an_http_date(ctx: ToolContext, server: TestServer) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True).replace(" ", "%20")
    err = fails(ctx, "http.get", url=server.url(f"/status/429?retry_after={when}"))
    assert err.retry_after is not None and 25 <= err.retry_after <= 31


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("-3") == 0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("code", [400, 404, 422])
def test_other_4xx_are_permanent(ctx: ToolContext, server: TestServer, code: int) -> None:
    err = fails(ctx, "http.get", url=server.url(f"/status/{code}"))
    assert err.kind is ErrorKind.PERMANENT
    assert f"HTTP {code}" in err.message


def test_invalid_json_body_is_invalid_output(ctx: ToolContext, server: TestServer) -> None:
    err = fails(ctx, "http.get", url=server.url("/badjson"))
    assert err.kind is ErrorKind.INVALID_OUTPUT
    assert "{not json" in err.message


def test_connection_refused_is_transient(ctx: ToolContext) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    err = fails(ctx, "http.get", url=f"http://127.0.0.1:{port}/")
    assert err.kind is ErrorKind.TRANSIENT
    assert "ConnectError" in err.message


def test_bad_url_is_invalid_input(ctx: ToolContext) -> None:
    assert fails(ctx, "http.get", url="ftp://example/x").kind is ErrorKind.INVALID_INPUT


def test_timeout_argument_gives_kind_timeout(ctx: ToolContext, server: TestServer) -> None:
    started = time.monotonic()
    err = fails(ctx, "http.get", url=server.url("/slow?s=5"), timeout=0.3)
    assert err.kind is ErrorKind.TIMEOUT
    assert time.monotonic() - started < 3


def test_timeout_argument_bounds_the_whole_exchange(ctx: ToolContext,
                                                    server: TestServer) -> None:
    started = time.monotonic()
    err = fails(ctx, "http.get", url=server.url("/drip?s=4"), timeout=0.5)
    assert err.kind is ErrorKind.TIMEOUT and "0.5s" in err.message
    assert time.monotonic() - started < 3
    assert call(ctx, "http.get", url=server.url("/drip?s=0.3"), timeout=5)["body"] == "..."


def test_cancellation_stops_a_slow_request(ctx: ToolContext, server: TestServer) -> None:
    async def body() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await invoke(ctx, "http.get", url=server.url("/slow?s=5"))
        return time.monotonic() - started

    assert run_with(ctx, body) < 3


def test_one_pooled_client_per_run(ctx: ToolContext, server: TestServer) -> None:
    async def body() -> None:
        for _ in range(5):
            await invoke(ctx, "http.get", url=server.url("/json"))

    run_with(ctx, body)
    assert server.count("/json") == 5
    assert len({r.client_port for r in server.requests}) == 1  # one kept-alive connection
    client = ctx.run_state["http.client"]
    assert client.is_closed  # closed by the run-end cleanup
