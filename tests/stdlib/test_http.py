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


def test_get_parses_json_and_sends_params_and_headers(ctx: ToolContext, server: TestServer) -> None:
    result = call(
        ctx,
        "http.get",
        url=server.url("/json"),
        params={"q": "refund", "n": 2, "f": {"a": 1}},
        headers={"X-Trace": "t1", "X-Page": 2},
    )
    assert result["status"] == 200
    assert result["headers"]["content-type"] == "application/json"
    assert result["body"] == {
        "method": "GET",
        "path": "/json",
        "body": None,
        "query": {"q": "refund", "n": "2", "f": '{"a":1}'},
    }
    assert server.requests[-1].headers["x-trace"] == "t1"
    assert server.requests[-1].headers["x-page"] == "2"


def test_get_text_body_stays_text(ctx: ToolContext, server: TestServer) -> None:
    assert call(ctx, "http.get", url=server.url("/text"))["body"] == "hello"


def test_post_sends_json(ctx: ToolContext, server: TestServer) -> None:
    result = call(ctx, "http.post", url=server.url("/json"), json={"ticket": [1, 2]})
    assert result["body"]["method"] == "POST"
    assert result["body"]["body"] == {"ticket": [1, 2]}


def test_500_is_transient_with_status_and_excerpt(ctx: ToolContext, server: TestServer) -> None:
    err = fails(ctx, "http.get", url=server.url("/status/500?body=database%20on%20fire"))
    assert err.kind is ErrorKind.TRANSIENT
    assert "HTTP 500" in err.message and "database on fire" in err.message
    assert err.retry_after is None


def test_503_with_retry_after_gives_a_hint(ctx: ToolContext, server: TestServer) -> None:
    err = fails(ctx, "http.get", url=server.url("/status/503?retry_after=7"))
    assert err.kind is ErrorKind.TRANSIENT
    assert err.retry_after == 7


def test_429_is_rate_limited_with_retry_after_seconds(ctx: ToolContext, server: TestServer) -> None:
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


def test_timeout_argument_bounds_the_whole_exchange(ctx: ToolContext, server: TestServer) -> None:
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


# --- redirects (docs/security.md): two servers on two ports are two origins ------------------


def test_a_redirect_to_the_same_origin_keeps_the_callers_headers(
    ctx: ToolContext, server: TestServer
) -> None:
    result = call(
        ctx,
        "http.get",
        url=server.url(f"/redirect?to={server.url('/json')}"),
        headers={"X-Api-Key": "k-123", "Authorization": "Bearer t"},
    )
    assert result["status"] == 200 and result["body"]["path"] == "/json"
    last = server.requests[-1]
    assert (last.path, last.headers["x-api-key"], last.headers["authorization"]) == (
        "/json",
        "k-123",
        "Bearer t",
    )


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_drops_every_header_the_caller_set(
    ctx: ToolContext, server: TestServer, code: int
) -> None:
    with TestServer() as other:
        target = other.url("/json")
        result = call(
            ctx,
            "http.get",
            url=server.url(f"/redirect?code={code}&to={target}"),
            headers={"X-Api-Key": "k-123", "Authorization": "Bearer t", "X-Trace": "t1"},
        )
        assert result["status"] == 200
        [arrived] = other.requests
        assert not {"x-api-key", "authorization", "x-trace"} & set(arrived.headers)
        assert server.requests[-1].headers["x-api-key"] == "k-123"  # the first hop had it


def test_headers_dropped_on_leaving_do_not_come_back(ctx: ToolContext, server: TestServer) -> None:
    with TestServer() as other:
        back = server.url("/json")
        bounce = other.url(f"/redirect?to={back}")
        call(
            ctx,
            "http.get",
            url=server.url(f"/redirect?to={bounce}"),
            headers={"X-Api-Key": "k-123"},
        )
        assert "x-api-key" not in other.requests[-1].headers
        assert "x-api-key" not in server.requests[-1].headers


@pytest.mark.parametrize(
    "target", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/x"]
)
def test_a_redirect_to_another_scheme_is_refused_as_a_redirect(
    ctx: ToolContext, server: TestServer, target: str
) -> None:
    err = fails(ctx, "http.get", url=server.url(f"/redirect?to={target}"))
    assert err.kind is ErrorKind.PERMANENT
    scheme = target.split(":")[0]
    assert f"redirected to a `{scheme}:` URL, which is not followed" in err.message
    assert "bad URL" not in err.message


def test_redirects_are_capped(ctx: ToolContext, server: TestServer) -> None:
    ok = call(ctx, "http.get", url=server.url(f"/redirect?hops=9&to={server.url('/text')}"))
    assert ok["body"] == "hello"  # 10 redirects: followed
    before = len(server.requests)
    err = fails(ctx, "http.get", url=server.url(f"/redirect?hops=10&to={server.url('/text')}"))
    assert err.kind is ErrorKind.PERMANENT and "more than 10 redirects" in err.message
    assert len(server.requests) - before == 11


def test_error_messages_drop_the_urls_query(ctx: ToolContext, server: TestServer) -> None:
    err = fails(
        ctx, "http.get", url=server.url("/status/404?api_key=abc123"), params={"token": "zzz999"}
    )
    assert "/status/404" in err.message
    assert (
        "abc123" not in err.message
        and "zzz999" not in err.message
        and "?" not in err.message.split(":", 2)[-1].split(" ")[0]
    )
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    err = fails(ctx, "http.get", url=f"http://127.0.0.1:{port}/x?key=abc123")
    assert err.kind is ErrorKind.TRANSIENT and "abc123" not in err.message


@pytest.mark.parametrize("tool", ["http.get", "http.post"])
@pytest.mark.parametrize("code", [404, 500, 429])
def test_check_false_returns_non_2xx_answers(
    ctx: ToolContext, server: TestServer, tool: str, code: int
) -> None:
    """`check = false`: any answer is a result and `status` tells, as with shell.run."""
    result = call(ctx, tool, url=server.url(f"/status/{code}?body=nope"), check=False)
    assert result["status"] == code and result["body"] == "nope"
    assert fails(ctx, tool, url=server.url(f"/status/{code}")).kind in (
        ErrorKind.PERMANENT,
        ErrorKind.TRANSIENT,
        ErrorKind.RATE_LIMITED,
    )  # the default checks


def test_check_false_still_fails_on_transport_errors(ctx: ToolContext) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    assert fails(ctx, "http.get", url=f"http://127.0.0.1:{port}/", check=False).kind is (
        ErrorKind.TRANSIENT
    )
