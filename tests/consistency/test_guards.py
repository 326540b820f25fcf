"""`guard` at run time (SPEC section 10, "Guards"): before each attempt of the writer, the
guarded read is called again; a change made between read and write is caught without the
writer being called, against a real HTTP store on 127.0.0.1."""

from __future__ import annotations

import threading
import time

import pytest

from tests.consistency.conftest import Planner
from tests.servers import VersionedStore

pytestmark = pytest.mark.timeout(60)


def change_after_first_read(store: VersionedStore, key: str, value: dict[str, int]) -> None:
    """In a thread: once the record was read once, change it behind the plan's back (a
    version bump that is not one of the writes the store counts)."""

    def meddle() -> None:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if any(r.method == "GET" for r in store.requests):
                with store._lock:
                    store.records[key] = value
                    store.versions[key] = store.versions.get(key, 0) + 1
                return
            time.sleep(0.005)

    threading.Thread(target=meddle, daemon=True).start()


def guarded_plan(url: str, retry: str = "") -> str:
    return f"""
    plan guarded {{
      step read = http.get(url = "{url}")
      step think = std.sleep(seconds = 1.2) {{ after read }}
      step write = http.put(url = "{url}", json = {{"seen": read.output.body.n}}) {{
        after think
        guard read
        {retry}
      }}
    }}
    """


def test_a_change_between_read_and_write_is_caught_without_calling_the_writer(
    planner: Planner, store: VersionedStore
) -> None:
    store.records["c"] = {"n": 1}
    change_after_first_read(store, "c", {"n": 10})
    ran = planner.run(guarded_plan(store.url("/records/c")))
    assert store.writes == 0
    assert not [r for r in store.requests if r.method == "PUT"]
    write = ran.step("write")
    assert write.status == "failed"
    assert write.error.kind == "stale"
    assert "read" in write.error.message
    # the probe replaced the guarded step's output, version and read_at
    assert ran.step("read").output["body"] == {"n": 10}
    assert ran.step("read").version == '"1"'
    assert ran.step("read").executions == 1  # a probe is not an execution
    started, finished = ran.of("probe_started")[0], ran.of("probe_finished")[0]
    assert (started.step, started.source, started.version) == ("write", "read", '"0"')
    assert (finished.step, finished.source, finished.version, finished.changed) == (
        "write",
        "read",
        '"1"',
        True,
    )
    assert ran.step("read").stale_readers == []  # nothing else read it


def test_an_unchanged_guard_lets_the_write_go_and_updates_read_at(
    planner: Planner, store: VersionedStore
) -> None:
    store.records["c"] = {"n": 1}
    ran = planner.run(guarded_plan(store.url("/records/c")))
    assert ran.report.outcome == "succeeded"
    assert store.writes == 1 and store.records["c"] == {"seen": 1}
    assert [e.changed for e in ran.of("probe_finished")] == [False]
    gets = [r for r in store.requests if r.method == "GET"]
    assert len(gets) == 2  # the read, then its probe
    first_read_at = next(e for e in ran.of("step_finished") if e.step == "read").outcome.read_at
    assert ran.step("read").read_at > first_read_at


def test_a_stale_guard_re_decides_with_the_new_data(
    planner: Planner, store: VersionedStore
) -> None:
    store.records["c"] = {"n": 1}
    change_after_first_read(store, "c", {"n": 10})
    ran = planner.run(guarded_plan(store.url("/records/c"), "retry 2 on stale backoff 0ms"))
    assert ran.report.outcome == "succeeded", ran.report.reasons
    assert store.writes == 1
    assert store.records["c"] == {"seen": 10}  # written from the data the probe read
    write = ran.step("write")
    assert write.attempts == 2
    # the probe replaced `read` already: it is a source, but does not run again
    assert write.redecisions == [{"attempt": 1, "sources": ["read"], "rerun": []}]
    detected = ran.of("stale_detected")[0]
    assert (detected.source, detected.old_version, detected.new_version) == ("read", '"0"', '"1"')
    assert ran.step("read").executions == 1


def test_a_failed_probe_fails_the_attempt_with_its_kind(
    planner: Planner, store: VersionedStore
) -> None:
    store.records["c"] = {"n": 1}

    def vanish() -> None:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if any(r.method == "GET" for r in store.requests):
                with store._lock:
                    del store.records["c"]
                return
            time.sleep(0.005)

    threading.Thread(target=vanish, daemon=True).start()
    ran = planner.run(guarded_plan(store.url("/records/c")))
    assert store.writes == 0
    write = ran.step("write")
    assert write.status == "failed"
    assert write.error.kind == "permanent"  # a 404, as http.get reports it
    assert "probing guarded step `read` failed" in write.error.message
    assert ran.of("probe_finished")[0].kind == "permanent"
    assert ran.step("read").output["body"] == {"n": 1}  # a failed probe replaces nothing


def test_concurrent_element_attempts_share_one_probe(
    planner: Planner, store: VersionedStore
) -> None:
    store.records["c"] = {"n": 1}
    store.get_delay = 0.2  # the probe is still running when the other elements ask
    url = store.url("/records/c")
    ran = planner.run(f"""
    plan fan {{
      step read = http.get(url = "{url}")
      step notes = for x in [1, 2, 3, 4]: http.post(url = "{store.url("/records/note")}",
          json = {{x: x, seen: read.output.body.n}}) {{ guard read }}
    }}
    """)
    assert ran.report.outcome == "succeeded", ran.report.reasons
    assert len(ran.of("probe_started")) == 1
    assert len([r for r in store.requests if r.method == "GET"]) == 2  # the read, one probe
    assert store.writes == 4


def test_a_resumed_guarded_step_is_probed_with_its_arguments_again(planner: Planner) -> None:
    """The call that produced a kept step's output is not journaled: after a resume, its
    probe evaluates the step's arguments again (a file changed between the sessions)."""
    from plait.runtime.session import RunSession

    (planner.folder / "data.txt").write_text("v1")
    path = planner.write("""
    plan filed {
      step src = file.read(path = "data.txt")
      step slow = std.sleep(seconds = 5) { after src }
      step w = file.write(path = "out.txt", content = src.output) { after slow; guard src }
    }
    """)
    journal = planner.folder / "j.db"
    session: RunSession | None = None

    def stop_at_slow(event: object) -> None:  # as Ctrl-C would, once `slow` started
        if getattr(event, "event", "") == "step_started" and getattr(event, "step", "") == "slow":
            assert session is not None and session.runner.run_obj is not None
            session.runner.run_obj.stop("signal")

    session = RunSession.start(path, journal=journal, events=stop_at_slow)
    first = session.run_sync()
    assert first.steps["src"].status == "succeeded"
    assert first.steps["slow"].status == "cancelled"
    (planner.folder / "data.txt").write_text("v2")
    (planner.folder / "plan.agent").write_text(
        (planner.folder / "plan.agent").read_text().replace("seconds = 5", "seconds = 0")
    )
    report = RunSession.resume(first.run_id, journal=journal, force=True).run_sync()
    assert report.steps["w"].status == "failed" and report.steps["w"].error.kind == "stale"
    assert not (planner.folder / "out.txt").exists()
    assert report.steps["src"].output == "v2"
