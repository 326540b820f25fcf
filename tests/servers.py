"""Real HTTP servers on 127.0.0.1 for tests: a behaviour server (slow, 5xx, 429 with
Retry-After, invalid JSON, flaky, request counts) and a fake OpenAI-compatible chat server.

Both run `http.server` in a daemon thread, speak HTTP/1.1 keep-alive (so connection pooling is
observable) and record every request. Use them as context managers:

    with TestServer() as server:
        server.url("/status/500?retry_after=2")
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, quote, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    client_port: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow handler never blocks shutdown
    owner: BaseServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        rec = Recorded(
            self.command,
            parts.path,
            {k: v[-1] for k, v in parse_qs(parts.query).items()},
            {k.lower(): v for k, v in self.headers.items()},
            body,
            self.client_address[1],
        )
        owner.record(rec)
        status, headers, payload = owner.respond(rec)
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if headers.get("X-Drip"):
                for i in range(len(payload)):
                    self.wfile.write(payload[i : i + 1])
                    self.wfile.flush()
                    owner.sleep(0.1)
            else:
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def log_message(self, format: str, *args: Any) -> None:
        pass


Response = tuple[int, dict[str, str], bytes]


@dataclass
class BaseServer:
    """A threaded HTTP server on 127.0.0.1 with a free port; subclasses answer requests."""

    requests: list[Recorded] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: _Server | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path)

    def sleep(self, seconds: float) -> None:
        """Sleep in a handler, cut short when the server stops."""
        self.stopping.wait(seconds)

    def respond(self, rec: Recorded) -> Response:
        raise NotImplementedError


def json_response(status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(value).encode(),
    )


def text_response(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}, text.encode()


@dataclass
class TestServer(BaseServer):
    """Behaviour chosen by the path:

    /json            echo the request as JSON {method, path, query, body}
    /text            "hello" as text/plain
    /status/CODE     answer CODE; ?retry_after=V sets Retry-After; ?body=TEXT the body
    /slow?s=SEC      answer JSON after SEC seconds
    /drip?s=SEC      a text body trickling in over SEC seconds
    /badjson         content-type JSON, body not JSON
    /flaky/KEY?fail=N&code=C   the first N requests to KEY answer C (default 500), then JSON
    """

    __test__ = False  # not a pytest class
    _flaky: Counter[str] = field(default_factory=Counter)

    def respond(self, rec: Recorded) -> Response:
        path, q = rec.path, rec.query
        if path == "/json":
            return json_response(
                200, {"method": rec.method, "path": path, "query": q, "body": rec.body}
            )
        if path == "/text":
            return text_response(200, "hello")
        if path.startswith("/status/"):
            extra = {"Retry-After": q["retry_after"]} if "retry_after" in q else {}
            return text_response(
                int(path.rsplit("/", 1)[1]),
                q.get("body", f"status {path.rsplit('/', 1)[1]}"),
                extra,
            )
        if path == "/slow":
            self.sleep(float(q.get("s", "1")))
            return json_response(200, {"slow": True})
        if path == "/drip":
            return self._drip(float(q.get("s", "2")))
        if path == "/badjson":
            return 200, {"Content-Type": "application/json"}, b"{not json"
        if path.startswith("/flaky/"):
            return self._flaky_answer(path, q)
        if path == "/redirect":  # ?to=URL, ?code=302; /redirect?hops=N: N more hops here
            hops = int(q.get("hops", "0"))
            target = (
                q["to"]
                if hops == 0
                else self.url(f"/redirect?hops={hops - 1}&to={quote(q['to'], safe='')}")
            )
            return int(q.get("code", "302")), {"Location": target}, b""
        return text_response(404, f"no route {path}")

    def _drip(self, seconds: float) -> Response:
        """A body that trickles in a byte every 0.1 s (no single read ever waits long)."""
        return 200, {"Content-Type": "text/plain", "X-Drip": "1"}, b"." * max(1, int(seconds * 10))

    def _flaky_answer(self, path: str, q: dict[str, str]) -> Response:
        with self._lock:
            self._flaky[path] += 1
            seen = self._flaky[path]
        if seen <= int(q.get("fail", "1")):
            extra = {"Retry-After": q["retry_after"]} if "retry_after" in q else {}
            return text_response(int(q.get("code", "500")), f"flaky failure {seen}", extra)
        return json_response(200, {"ok": True, "after": seen - 1})


@dataclass
class VersionedStore(BaseServer):
    """JSON records at /records/KEY with optimistic locking, as a real API does it.

    GET answers the record with `ETag: "N"` (N counts its writes); PUT replaces it, PATCH
    merges a dict into it, DELETE removes it. A write carrying `If-Match` that does not
    match (or `*` on a missing record) answers 412 and counts a conflict; `writes` counts
    applied writes, `keys` the `Idempotency-Key` of every write request. `get_delay` slows
    GETs down (seconds); `readers_meet = N` makes the first N GETs wait for each other (up to
    10 s) before any is answered, so N concurrent readers see the same version whatever the
    machine's load (a delay only makes that likely).
    """

    __test__ = False
    records: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    writes: int = 0
    conflicts: int = 0
    keys: list[str | None] = field(default_factory=list)
    get_delay: float = 0.0
    readers_meet: int = 0
    _gets: int = 0
    _met: threading.Condition = field(default_factory=threading.Condition)

    def etag(self, key: str) -> str:
        return f'"{self.versions.get(key, 0)}"'

    def respond(self, rec: Recorded) -> Response:
        if not rec.path.startswith("/records/"):
            return text_response(404, f"no route {rec.path}")
        key = rec.path.removeprefix("/records/")
        if rec.method == "GET":
            if self.get_delay:
                self.sleep(self.get_delay)
            self._meet_other_readers()
            with self._lock:
                if key not in self.records:
                    return json_response(404, {"error": "no such record"})
                return json_response(200, self.records[key], {"ETag": self.etag(key)})
        with self._lock:
            self.keys.append(rec.headers.get("idempotency-key"))
            match = rec.headers.get("if-match")
            if match is not None and not self._matches(key, match):
                self.conflicts += 1
                return json_response(
                    412, {"error": "precondition failed", "current": self.etag(key)}
                )
            return self._write(key, rec)

    def _meet_other_readers(self) -> None:
        with self._met:
            self._gets += 1
            if self._gets <= self.readers_meet:
                self._met.notify_all()
                self._met.wait_for(lambda: self._gets >= self.readers_meet, timeout=10)

    def _matches(self, key: str, match: str) -> bool:
        if match.strip() == "*":
            return key in self.records
        return key in self.records and match.strip() == self.etag(key)

    def _write(self, key: str, rec: Recorded) -> Response:
        if rec.method == "DELETE":
            self.records.pop(key, None)
        elif rec.method == "PATCH" and isinstance(rec.body, dict):
            self.records[key] = {**self.records.get(key, {}), **rec.body}
        else:
            self.records[key] = rec.body
        self.versions[key] = self.versions.get(key, 0) + 1
        self.writes += 1
        return json_response(200, self.records.get(key), {"ETag": self.etag(key)})


@dataclass
class FakeLLM(BaseServer):
    """A fake OpenAI-compatible server: POST /v1/chat/completions.

    `script` is a queue of behaviours consumed one per request, each a dict with optional
    `status` (an error status), `retry_after`, `delay` (seconds), `content` (the answer text),
    `raw` (a raw body). With the queue empty it answers `reply` (a str, or a function of the
    request body). `api_key`, when set, is required as a Bearer token (else 401).
    """

    script: list[dict[str, Any]] = field(default_factory=list)
    reply: Any = "ok"
    api_key: str | None = None

    def respond(self, rec: Recorded) -> Response:
        if rec.path != "/v1/chat/completions" or rec.method != "POST":
            return json_response(404, {"error": {"message": f"no route {rec.path}"}})
        if self.api_key and rec.headers.get("authorization") != f"Bearer {self.api_key}":
            return json_response(401, {"error": {"message": "invalid api key"}})
        with self._lock:
            step = self.script.pop(0) if self.script else {}
        if step.get("delay"):
            self.sleep(float(step["delay"]))
        if "status" in step:
            extra = {"Retry-After": str(step["retry_after"])} if "retry_after" in step else {}
            return json_response(
                int(step["status"]), {"error": {"message": f"scripted {step['status']}"}}, extra
            )
        if "raw" in step:
            return 200, {"Content-Type": "application/json"}, str(step["raw"]).encode()
        content = step.get("content", self._default(rec.body))
        return json_response(200, completion(content, rec.body))

    def _default(self, body: Any) -> str:
        return str(self.reply(body) if callable(self.reply) else self.reply)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.requests) >= n:
                return True
            time.sleep(0.02)
        return False


def completion(content: str, request: Any) -> dict[str, Any]:
    """A chat-completions answer with usage, as OpenAI returns it."""
    model = request.get("model", "fake") if isinstance(request, dict) else "fake"
    prompt_chars = len(json.dumps(request.get("messages", []))) if isinstance(request, dict) else 0
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": {
            "prompt_tokens": prompt_chars // 4,
            "completion_tokens": len(content) // 4,
            "total_tokens": prompt_chars // 4 + len(content) // 4,
        },
    }


@dataclass
class AgentLLM(BaseServer):
    """An OpenAI-compatible server with tool calling that decides each reply from the
    conversation it receives: `decide(body)` returns either a text answer or a list of
    `(tool_name, arguments)` tool calls (ids `call_<turn>_<position>`, the turn being the
    number of assistant messages in the conversation plus one). Every request body is kept
    in `requests`."""

    decide: Any = None

    def respond(self, rec: Recorded) -> Response:
        if rec.path != "/v1/chat/completions" or rec.method != "POST":
            return json_response(404, {"error": {"message": f"no route {rec.path}"}})
        decision = self.decide(rec.body)
        if isinstance(decision, str):
            return json_response(200, completion(decision, rec.body))
        turn = 1 + sum(1 for m in rec.body["messages"] if m["role"] == "assistant")
        calls = [
            {
                "id": f"call_{turn}_{i}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for i, (name, args) in enumerate(decision, 1)
        ]
        answer = completion("", rec.body)
        answer["choices"][0]["message"] = {
            "role": "assistant",
            "content": None,
            "tool_calls": calls,
        }
        answer["choices"][0]["finish_reason"] = "tool_calls"
        return json_response(200, answer)

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.requests]
