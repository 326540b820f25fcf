"""`http.*`: GET, POST, PUT, PATCH and DELETE over one pooled `httpx.AsyncClient` per run,
with HTTP failures mapped to error kinds (5xx/connection -> transient, 429 -> rate_limited,
4xx -> permanent; 412/409 answering a conditional write -> stale).

SPEC section 10: every result is `Versioned` by the response's `ETag`, else its
`Last-Modified`, else the hash of the body. The writes take `if_match` (a strong entity tag
or `*` goes out as `If-Match`, an HTTP date as `If-Unmodified-Since`) and send the attempt's
idempotency key as `Idempotency-Key` unless `headers` sets one.

Redirects are followed here, not by httpx, so that (docs/security.md): a redirect to another
origin (scheme, host or port) drops every header the caller set (an `X-Api-Key` never
reaches a host the plan did not name; the condition and idempotency headers go too); a
redirect to anything but `http:`/`https:` is refused as such (`permanent`); at most
`MAX_REDIRECTS` are followed. Error messages name URLs without their query string, which
often carries a key.
"""

from __future__ import annotations

import asyncio
import email.utils
import json as jsonlib
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from plait.errors import (
    InvalidInput,
    InvalidOutput,
    Permanent,
    RateLimited,
    Stale,
    Timeout,
    Transient,
)
from plait.stdlib.registry import ToolContext, tool
from plait.versions import Versioned, value_hash

if TYPE_CHECKING:  # imported where a request is sent: `plait check` never needs it
    import httpx

CLIENT_KEY = "http.client"
CLIENT_LOOP_KEY = "http.client.loop"
# Header values may be numbers too (`{"X-Page": 2}`); they are sent as text.
Headers = dict[str, str | int | float]
# Generous on purpose: the step's own `timeout` policy is the real limit, applied by the
# runtime; this only stops a plan without any timeout from hanging on a dead socket forever.
DEFAULT_TIMEOUT_S = 300.0
EXCERPT_CHARS = 200
MAX_REDIRECTS = 10
_REDIRECT_SCHEMES = ("http", "https")
_URL_QUERY = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s?#'\"<>]*)\?[^\s#'\"<>]*")


# The headers that make a request conditional (a 412 or 409 answering one is `stale`).
CONDITIONAL_HEADERS = ("if-match", "if-unmodified-since")
_STRONG_ETAG = re.compile(r'"[^"]*"')


@tool(name="http.get", read=True)
async def get(
    ctx: ToolContext,
    url: str,
    headers: Headers | None = None,
    params: dict[str, Any] | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> Versioned:
    """GET `url`; returns {status, headers, body} with `body` parsed when it is JSON.

    With `check = false` a non-2xx answer is a result too (`status` tells), as `shell.run`
    returns a non-zero exit; transport errors and timeouts still fail."""
    return await request(
        ctx, "GET", url, headers=headers, params=params, timeout=timeout, check=check
    )


@tool(name="http.post", idempotent=False)
async def post(
    ctx: ToolContext,
    url: str,
    headers: Headers | None = None,
    json: Any = None,
    params: dict[str, Any] | None = None,
    timeout: float | None = None,
    if_match: str | None = None,
    check: bool = True,
) -> Versioned:
    """POST `json` to `url`; returns {status, headers, body} with `body` parsed when JSON.

    `if_match` makes the write conditional: a strong ETag (`"v3"`) or `*` (If-Match), or
    an HTTP date (If-Unmodified-Since); a 412 or 409 answer then fails with `stale`.
    With `check = false` a non-2xx answer is a result too (`status` tells)."""
    return await write(ctx, "POST", url, headers, json, params, timeout, if_match, check)


@tool(name="http.put")
async def put(
    ctx: ToolContext,
    url: str,
    headers: Headers | None = None,
    json: Any = None,
    params: dict[str, Any] | None = None,
    timeout: float | None = None,
    if_match: str | None = None,
    check: bool = True,
) -> Versioned:
    """PUT `json` to `url` (conditional with `if_match`); returns {status, headers, body}."""
    return await write(ctx, "PUT", url, headers, json, params, timeout, if_match, check)


@tool(name="http.patch", idempotent=False)
async def patch(
    ctx: ToolContext,
    url: str,
    headers: Headers | None = None,
    json: Any = None,
    params: dict[str, Any] | None = None,
    timeout: float | None = None,
    if_match: str | None = None,
    check: bool = True,
) -> Versioned:
    """PATCH `url` with `json` (conditional with `if_match`); returns {status, headers, body}."""
    return await write(ctx, "PATCH", url, headers, json, params, timeout, if_match, check)


@tool(name="http.delete")
async def delete(
    ctx: ToolContext,
    url: str,
    headers: Headers | None = None,
    json: Any = None,
    params: dict[str, Any] | None = None,
    timeout: float | None = None,
    if_match: str | None = None,
    check: bool = True,
) -> Versioned:
    """DELETE `url` (conditional with `if_match`); returns {status, headers, body}."""
    return await write(ctx, "DELETE", url, headers, json, params, timeout, if_match, check)


async def write(
    ctx: ToolContext,
    method: str,
    url: str,
    headers: Headers | None,
    json: Any,
    params: dict[str, Any] | None,
    timeout: float | None,
    if_match: str | None,
    check: bool = True,
) -> Versioned:
    """A write: the condition and the idempotency key join the caller's headers."""
    sent: dict[str, Any] = dict(headers or {})
    present = {k.lower() for k in sent}
    if if_match is not None:
        name, value = condition_header(if_match)
        sent[name] = value
    if ctx.idempotency_key is not None and "idempotency-key" not in present:
        sent["Idempotency-Key"] = ctx.idempotency_key
    return await request(
        ctx, method, url, headers=sent, params=params, json=json, timeout=timeout, check=check
    )


def condition_header(if_match: str) -> tuple[str, str]:
    """`if_match` as the header that carries it, or InvalidInput when a server cannot
    compare it (a weak tag, a hash)."""
    value = if_match.strip()
    if value == "*" or _STRONG_ETAG.fullmatch(value):
        return "If-Match", value
    if _http_date(value):
        return "If-Unmodified-Since", value
    raise InvalidInput(
        f'`if_match` {if_match!r} is neither a strong entity tag ("..."), '
        "`*` nor an HTTP date, so the server cannot compare it (a weak W/ tag "
        "or a content hash cannot be sent)"
    )


def _http_date(value: str) -> bool:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return False
    return when is not None and when.tzinfo is not None


def shared_client(ctx: ToolContext) -> httpx.AsyncClient:
    """The run's pooled client, created on first use and closed when the run ends."""
    import httpx

    client, loop = ctx.run_state.get(CLIENT_KEY), asyncio.get_running_loop()
    # A client's connections belong to one event loop; a state reused on another loop (or
    # after the run-end cleanup closed it) gets a fresh client.
    if client is None or client.is_closed or ctx.run_state.get(CLIENT_LOOP_KEY) is not loop:
        client = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT_S, follow_redirects=False)
        ctx.run_state[CLIENT_KEY] = client
        ctx.run_state[CLIENT_LOOP_KEY] = loop
        ctx.on_run_end.append(client.aclose)
    assert isinstance(client, httpx.AsyncClient)
    return client


async def request(
    ctx: ToolContext,
    method: str,
    url: str,
    *,
    headers: Mapping[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    json: Any = None,
    timeout: float | None = None,
    check: bool = True,
) -> Versioned:
    """Send one request and return {status, headers, body} versioned by the response's
    ETag, else Last-Modified, else the body's hash; or raise the mapped ToolError (with
    `check` false, only for transport failures: any answer is a result)."""
    response = await send(
        ctx, method, url, headers=headers, params=params, json=json, timeout=timeout
    )
    if check:
        raise_for_status(response)
    body = parse_body(response)
    version = (
        response.headers.get("etag") or response.headers.get("last-modified") or value_hash(body)
    )
    return Versioned(
        {"status": response.status_code, "headers": dict(response.headers.items()), "body": body},
        version,
    )


async def send(
    ctx: ToolContext,
    method: str,
    url: str,
    *,
    headers: Mapping[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    json: Any = None,
    timeout: float | None = None,
) -> httpx.Response:
    """Send a request on the shared client (following redirects, see the module's doc),
    mapping transport failures to error kinds."""
    import httpx

    kwargs: dict[str, Any] = {"params": _query(params)}
    caller_headers = {k: str(v) for k, v in (headers or {}).items()}
    if caller_headers:
        kwargs["headers"] = caller_headers
    if json is not None:
        kwargs["json"] = json
    shown = shown_url(url)
    try:
        # `timeout` bounds the whole exchange (httpx's own timeouts are per read/write)
        async with asyncio.timeout(timeout):
            client = shared_client(ctx)
            return await _follow(
                client, client.build_request(method, url, **kwargs), caller_headers
            )
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise InvalidInput(f"bad URL {shown!r}: {shown_url(str(exc))}") from None
    except (httpx.TimeoutException, TimeoutError) as exc:
        raise Timeout(
            f"{method} {shown}: no complete answer within "
            f"{f'{timeout:g}s' if timeout is not None else 'the timeout'} "
            f"({type(exc).__name__})"
        ) from None
    except httpx.TransportError as exc:
        raise Transient(
            f"{method} {shown}: {type(exc).__name__}: {shown_url(str(exc)) or 'connection failed'}"
        ) from None


async def _follow(
    client: httpx.AsyncClient, request: httpx.Request, caller_headers: Mapping[str, str]
) -> httpx.Response:
    """Send `request`, following up to MAX_REDIRECTS redirects by the rules above."""
    first = request
    for _ in range(MAX_REDIRECTS + 1):
        response = await client.send(request)
        following = response.next_request
        if following is None:
            return response
        await response.aclose()
        target = following.url
        if target.scheme not in _REDIRECT_SCHEMES:
            raise Permanent(
                f"{first.method} {shown_url(first.url)}: redirected to a "
                f"`{target.scheme}:` URL, which is not followed (only http and "
                "https redirects are)"
            )
        if _origin(target) != _origin(request.url):
            for name in caller_headers:  # none of the caller's headers leaves the origin
                following.headers.pop(name, None)
        request = following
    raise Permanent(f"{first.method} {shown_url(first.url)}: more than {MAX_REDIRECTS} redirects")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def shown_url(url: str | httpx.URL) -> str:
    """Text with the query string of every URL in it dropped (`https://h/p?key=1` ->
    `https://h/p`), for error messages: a query often carries a key nobody declared secret."""
    text = str(url)
    return _URL_QUERY.sub(r"\1", text) if "?" in text else text


def _query(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Query values: scalars and lists as httpx writes them; dicts as compact JSON."""
    if params is None:
        return None
    return {
        k: jsonlib.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v
        for k, v in params.items()
    }


def raise_for_status(response: httpx.Response) -> None:
    """Raise the ToolError an HTTP error status stands for (SPEC section 4, error kinds)."""
    status = response.status_code
    if status < 400:
        return
    request = response.request
    message = (
        f"HTTP {status} from {request.method} {shown_url(request.url)}: {excerpt(response.text)}"
    )
    hint = retry_after(response) if status in (429, 503) else None
    if status == 429:
        raise RateLimited(message, retry_after=hint)
    if status >= 500:
        raise Transient(message, retry_after=hint)
    if status in (409, 412) and any(h in request.headers for h in CONDITIONAL_HEADERS):
        raise Stale(f"{message} (the data changed since it was read)")
    raise Permanent(message)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short one-line excerpt of a body, for error messages."""
    flat = " ".join(text.split())
    if not flat:
        return "(empty body)"
    return flat if len(flat) <= limit else flat[:limit] + "…"


def retry_after(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds (it may be a number or an HTTP date)."""
    return parse_retry_after(response.headers.get("retry-after"))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_json(response: httpx.Response) -> bool:
    ctype = str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
    return ctype == "application/json" or ctype.endswith("+json")


def parse_body(response: httpx.Response) -> Any:
    """The body: parsed when the content type says JSON, else the text."""
    if not is_json(response):
        return response.text
    if not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise InvalidOutput(
            f"{response.request.method} {shown_url(response.request.url)}: "
            "the body is "
            f"labelled JSON but does not parse ({exc}): "
            f"{excerpt(response.text)}"
        ) from None
