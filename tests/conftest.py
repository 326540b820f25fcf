"""Suite-wide settings. In CI (CI=true) hypothesis draws the same examples every run, so a
submission's result does not depend on the luck of the draw; locally it explores afresh.

Every run a test makes goes to a temporary journal, never the checkout's.

`PLAIT_HOME` moves the default journal (`.plait/journal.db` in the current folder); setting it
for the whole session covers the library API and every `plait` subprocess started with the
tests' environment. Tests that are about `PLAIT_HOME` or `--journal` set their own. The
session fails if the checkout's `.plait/journal.db` changed anyway, so a test that forgets
this cannot pass unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
CHECKOUT_JOURNAL = ROOT / ".plait" / "journal.db"


def _journal_stamp() -> tuple[int, int] | None:
    try:
        stat = CHECKOUT_JOURNAL.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


_BEFORE = _journal_stamp()


@pytest.fixture(autouse=True, scope="session")
def _temporary_plait_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("plait-home")
    saved = os.environ.get("PLAIT_HOME")
    os.environ["PLAIT_HOME"] = str(home)
    yield home
    if saved is None:
        os.environ.pop("PLAIT_HOME", None)
    else:
        os.environ["PLAIT_HOME"] = saved


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _journal_stamp() != _BEFORE:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(
            f"\nerror: a test wrote to the checkout's journal {CHECKOUT_JOURNAL}; "
            "tests must write runs to temporary journals (PLAIT_HOME or --journal)"
        )
