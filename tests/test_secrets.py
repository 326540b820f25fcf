"""Secrets stay secret (SPEC section 9, docs/security.md): a secret input and an `env.NAME`
value, drawn from the full printable alphabet, travel through every place a value can go
(arguments, interpolated text, errors, map elements, a tool's `ctx.emit` fields, URLs and
HTTP bodies, outputs and failed outputs); no form of them (as is, URL-encoded,
JSON-escaped, `repr()`-escaped, HTML-escaped) may appear in stdout, stderr, the report, the
events, `plait show` (text and `--json`), the HTML report, the OTel spans or the journal's
display tables. Real subprocesses, a real HTTP server, a real journal."""

from __future__ import annotations

import html
import json
import os
import sqlite3
import string
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.servers import TestServer


@pytest.fixture(scope="module")
def server() -> Iterator[TestServer]:
    with TestServer() as srv:
        yield srv


TOOLS = '''
import json
from urllib.parse import quote, quote_plus
import plait

@plait.tool
def boom(token: str, n: int) -> str:
    """Fails, for element 2, with the token in several encodings."""
    if n == 2:
        raise ValueError(f"{token!r} {json.dumps(token)} {quote(token, safe='')} "
                         f"{quote_plus(token)} {json.dumps({'t': token})!r}")
    return f"ok {n}"

@plait.tool
def emit(ctx: plait.ToolContext, token: str) -> dict:
    """Reports the token through ctx.emit and returns it in several forms."""
    ctx.emit("leak", {"t": token, "nested": [token, {"k": token}], "q": quote(token, safe=""),
                      "r": repr(token)})
    return {"echo": token, "r": repr(token), "j": json.dumps(token)}
'''

PLAN = """plan leak {
  use "./leaky.py"
  input key: secret
  input base: str
  step args = std.echo(value = {a: key, b: "x${key}y", e: env.PLAIT_TEST_SECRET})
  step fails = std.fail(message = "bad ${key} ${env.PLAIT_TEST_SECRET}") { optional }
  step each = for v in [1, 2]: leaky.boom(token = key, n = v) { tolerate 50% }
  step emitter = leaky.emit(token = key)
  step web = http.get(url = "${base}/status/404", params = {body: key, e: env.PLAIT_TEST_SECRET}) {
    optional
  }
  step web2 = http.get(url = "${base}/nowhere?token=${key}") { optional }
  output o = args.output
  output e = emitter.output
  output bad = args.output[key]
}
"""


def _forms(secret: str) -> set[str]:
    """Every way the secret may be written into the text plait produces."""
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        html.escape(secret),
        html.escape(secret, quote=False),
    }
    forms |= {json.dumps(f)[1:-1] for f in list(forms)}  # escaped again inside JSON text
    return forms


def _leaks(text: str, secrets: list[str]) -> list[str]:
    return sorted({form for s in secrets for form in _forms(s) if form in text})


def _plait(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plait", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def _journal_display_text(db: Path) -> str:
    """Every table a display command reads; `steps.result`, `elements.result` (a map's
    finished elements) and `runs.raw_inputs` hold the real values on purpose (a resume needs
    them) and are left out."""
    with sqlite3.connect(db) as conn:
        texts = []
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            if table in ("steps", "elements"):
                continue
            cursor = conn.execute(f"SELECT * FROM {table}")
            columns = [c[0] for c in cursor.description]
            for row in cursor:
                texts.extend(
                    str(v)
                    for c, v in zip(columns, row, strict=True)
                    if not (table == "runs" and c == "raw_inputs")
                )
    return "\n".join(texts)


def _check_no_leak(secret: str, server: TestServer) -> None:
    env_secret = secret + "-env"
    secrets = [secret, env_secret]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "leaky.py").write_text(TOOLS)
        (folder / "leak.agent").write_text(PLAN)
        env = {
            **os.environ,
            "PLAIT_TEST_SECRET": env_secret,
            "NO_COLOR": "1",
            "PLAIT_HOME": str(folder),
        }
        env.pop("OTEL_TRACES_EXPORTER", None)
        run = _plait(
            "run",
            "leak.agent",
            "--input",
            f"key={secret}",
            "--input",
            f"base={server.base}",
            "--json",
            "--report",
            "report.json",
            "--events",
            "events.jsonl",
            "--trace",
            "console",
            "--journal",
            "journal.db",
            env=env,
            cwd=folder,
        )
        assert run.returncode == 3, run.stderr  # degraded: optional failures, tolerated map
        report = json.loads((folder / "report.json").read_text())
        run_id = report["run_id"]
        assert "trace_id" in run.stderr  # the OTel spans (console: on stderr)
        emitted = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
        assert any(e["event"] == "tool_event" and e["tool_event"] == "leak" for e in emitted)
        assert report["steps"]["each"]["elements"]["errors"]  # a map element error travelled
        show_json = _plait("show", run_id, "--json", "--journal", "journal.db", env=env, cwd=folder)
        show_text = _plait("show", run_id, "--journal", "journal.db", env=env, cwd=folder)
        html_out = _plait(
            "report", run_id, "-o", "report.html", "--journal", "journal.db", env=env, cwd=folder
        )
        assert show_json.returncode == show_text.returncode == html_out.returncode == 0
        places = {
            "run stdout (--json report)": run.stdout,
            "run stderr (progress, OTel spans)": run.stderr,
            "the report": (folder / "report.json").read_text(),
            "the events": (folder / "events.jsonl").read_text(),
            "plait show --json": show_json.stdout,
            "plait show": show_text.stdout + show_text.stderr,
            "the HTML report": (folder / "report.html").read_text(),
            "the journal's display tables": _journal_display_text(folder / "journal.db"),
        }
        leaked = {place: _leaks(text, secrets) for place, text in places.items()}
        assert not any(leaked.values()), leaked
        assert "***" in places["the report"]


PRINTABLE = st.text(st.sampled_from(string.printable), min_size=4, max_size=16)


# Each example is four `plait` processes: few examples, no shrinking (the explicit ones hold
# the nastiest texts; tests/runtime/test_masking.py draws many secrets in-process)
@pytest.mark.timeout(900)
@settings(
    max_examples=5,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(middle=PRINTABLE)
@example(middle="a/b+c=d&e\"f\\g'h\ni$(x) %2F`;|<>")
@example(middle=string.printable)
def test_no_form_of_a_secret_leaks_anywhere(middle: str, server: TestServer) -> None:
    # Framed by letters no output contains by chance (a drawn secret such as `step` or
    # `null` would also match the words plait writes itself)
    _check_no_leak("Kq" + middle + "9Zx", server)
