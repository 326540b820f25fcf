"""Ray as plait's engine for scale (`pip install plait[ray]`).

Two ways to use a cluster, both through public Ray APIs only:

- `RayExecutor` (`plait run --executor ray`): each tool call is a Ray task. The scheduler,
  policies, events and report stay in the driver; a timeout or cancellation cancels the
  task (`force=True`, killing the worker process, for a sync tool, which cannot be
  interrupted otherwise); a retry submits a new task (Ray's own retries are off).
- `RayLines` (`plait batch --executor ray`): whole runs go to worker actors, each running
  many runs at once on its own event loop. Resource limits stay in one place: one named
  actor per resource holds its rate window, bulkhead and breaker, and every run on every
  worker goes through it, so `rate 10/s` is 10/s however many workers there are.

What crosses a process boundary is JSON-compatible data: tool arguments, outputs (an
output that is not a JSON value is `invalid_output`, as locally), inputs and results.
Per-run tool state (`ToolContext.run_state`: std.flaky's and the scripted model's
counters) travels with each call: its plain-data entries go with the task and the changes
come back (counts as increments), so a retried std.flaky counts its attempts per run as
locally. Other state (an HTTP client, loaded modules) lives per worker process.

`use "./tools.py"` files and the plan's folder travel as the job's Ray `runtime_env`
(`working_dir`) when plait connects to Ray itself. Tools run with the plan's real folder
when it exists on the worker (one machine, a shared file system), else the copy that
travelled. When the embedder has already called `ray.init`, its runtime_env is used as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from plait.compiler.ir import BreakerPolicy, CompiledPlan, Plan, Rate
from plait.errors import ErrorKind, ToolError, UserError, error_for_kind, kind_of
from plait.runtime.api import plan_dir_of
from plait.runtime.batch import InputLine, LineResult
from plait.runtime.guards import ResourceGuards
from plait.runtime.policies.breaker import BreakerTransition, CircuitBreaker
from plait.runtime.policies.ratelimit import RateLimiter
from plait.runtime.values import DEFAULT_OUTPUT_LIMIT, to_json_value
from plait.stdlib.registry import ToolContext, ToolRegistry, ToolSpec, plan_registry
from plait.versions import Versioned

INSTALL_HINT = "--executor ray needs Ray: pip install 'plait[ray]'"
NAMESPACE = "plait"
WARM_UP = 16  # worker processes started before a run on Ray
# Never shipped to workers with the plan's folder.
EXCLUDES = [".git", ".plait", ".venv", "venv", "__pycache__", "*.pyc", "node_modules"]


def import_ray() -> ModuleType:
    """The `ray` module, or UserError (exit 2) saying what to install."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise UserError(INSTALL_HINT) from None


def connect(plan: Plan, address: str | None = None) -> bool:
    """Make sure this process is a Ray driver: join `address`, or start a local Ray (on the
    loopback interface only). The plan's folder and plait's settings go to the workers as
    the job's runtime_env. Returns True when this call connected (close with `disconnect`),
    False when the embedder's `ray.init` was already in place."""
    if address is None or _is_loopback(address):
        # a Ray of this machine alone is reached on 127.0.0.1 (Ray otherwise swaps a
        # loopback address for the machine's network address, which a Ray started on
        # loopback does not listen on); read by Ray when it is first imported
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = import_ray()
    if ray.is_initialized():
        return False
    env = {k: v for k, v in os.environ.items() if k.startswith("PLAIT_")}
    runtime_env: dict[str, Any] = {
        "working_dir": str(plan_dir_of(plan)),
        "excludes": EXCLUDES,
        "env_vars": env,
    }
    import logging

    try:
        ray.init(
            address=address,
            runtime_env=runtime_env,
            namespace=NAMESPACE,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UserError(
            f"cannot start or reach Ray{f' at {address}' if address else ''}: {exc}"
        ) from None
    return True


def _is_loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def disconnect() -> None:
    import_ray().shutdown()


# --- one tool call as a Ray task ------------------------------------------------------------


class RayExecutor:
    """The scheduler's executor seam, making each tool call a Ray task."""

    def __init__(self, plan: Plan) -> None:
        ray = import_ray()
        self.ray = ray
        self.uses = tuple(u.target for u in plan.uses)
        self.plan_dir = str(plan_dir_of(plan))
        self._task = ray.remote(max_retries=0)(call_tool_in_worker)

    async def __call__(
        self,
        spec: ToolSpec,
        args: dict[str, Any],
        ctx: ToolContext | None,
        *,
        limit: int | None = DEFAULT_OUTPUT_LIMIT,
        on_block: Callable[[float], None] | None = None,
    ) -> Any:
        call = _call_fields(ctx)
        state = portable_state(ctx.run_state) if ctx is not None else {}
        ref = self._task.remote(spec.name, self.uses, self.plan_dir, args, call, state, limit)
        try:
            reply = await ref
        except asyncio.CancelledError:
            # a timeout or the run's cancellation: stop the task (a sync tool cannot be
            # interrupted, so its worker process is killed)
            self.ray.cancel(ref, force=not spec.is_async)
            raise
        except self.ray.exceptions.RayError as exc:
            raise error_for_kind(
                ErrorKind.TOOL_ERROR,
                f"the Ray task running {spec.name} failed: "
                f"{type(exc).__name__}: {_first_line(exc)}",
            ) from None
        return settle(reply, ctx)


def _call_fields(ctx: ToolContext | None) -> dict[str, Any] | None:
    if ctx is None:
        return None
    return {
        "run_id": ctx.run_id,
        "step": ctx.step,
        "attempt": ctx.attempt,
        "element": ctx.element,
        "idempotency_key": ctx.idempotency_key,
        "iteration": ctx.iteration,
    }


def settle(reply: dict[str, Any], ctx: ToolContext | None) -> Any:
    """The driver's side of a call's reply: state changes and tool events applied to the
    run, then the value returned or the error raised with its kind."""
    if ctx is not None:
        merge_state(ctx.run_state, reply.get("state") or {})
        for name, fields in reply.get("events") or []:
            ctx.emit(name, fields)
    if reply["ok"]:
        if "version" in reply:  # the tool returned a Versioned value
            return Versioned(reply["value"], reply["version"])
        return reply["value"]
    raise error_for_kind(reply["kind"], reply["message"], retry_after=reply.get("retry_after"))


def call_tool_in_worker(
    tool: str,
    uses: tuple[str, ...],
    plan_dir: str,
    args: dict[str, Any],
    call: dict[str, Any] | None,
    state: dict[str, dict[Any, Any]],
    limit: int | None = DEFAULT_OUTPUT_LIMIT,
) -> dict[str, Any]:
    """Runs in a Ray worker: one tool call, its result as plain data (never raises)."""
    registry = worker_registry(uses, plan_dir)
    spec = registry.get(tool)
    if spec is None:
        return _error(ErrorKind.INVALID_INPUT, f"unknown tool `{tool}` on the Ray worker")
    events: list[tuple[str, dict[str, Any]]] = []
    before = {k: dict(v) for k, v in state.items()}
    ctx = None
    if call is not None:
        ctx = ToolContext(
            **call,
            plan_dir=Path(worker_plan_dir(plan_dir)),
            run_state=state,
            emit=lambda name, fields: events.append((name, dict(fields))),
        )
    kwargs = args if spec.context_param is None else {**args, spec.context_param: ctx}
    try:
        value = asyncio.run(_run_async(spec, kwargs, ctx)) if spec.is_async else spec.func(**kwargs)
        reply = _success(to_json_value(value, limit))
    except Exception as exc:  # a tool's failure, with its kind, as data
        hint = exc.retry_after if isinstance(exc, ToolError) else None
        reply = _error(kind_of(exc), _describe(exc), hint)
    reply["state"] = state_changes(before, state)
    reply["events"] = events
    return reply


async def _run_async(spec: ToolSpec, kwargs: dict[str, Any], ctx: ToolContext | None) -> Any:
    try:
        return await spec.func(**kwargs)
    finally:
        for hook in ctx.on_run_end if ctx is not None else []:  # e.g. close an HTTP client
            result = hook()
            if asyncio.iscoroutine(result):
                await result


def _warm_up(uses: tuple[str, ...], plan_dir: str) -> int:
    worker_registry(uses, plan_dir)
    return os.getpid()


@cache
def worker_registry(uses: tuple[str, ...], plan_dir: str) -> ToolRegistry:
    """The plan's tools in this worker process, loaded once."""
    return plan_registry(list(uses), Path(worker_plan_dir(plan_dir)))


def worker_plan_dir(plan_dir: str) -> str:
    """The plan's real folder when this worker sees it, else the copy that travelled (the
    job's working_dir is the worker's current folder)."""
    return plan_dir if Path(plan_dir).is_dir() else os.getcwd()


def _success(value: Any) -> dict[str, Any]:
    """A JSON value (the one coercion, `values.to_json_value`, already applied)."""
    if isinstance(value, Versioned):
        return {"ok": True, "value": value.value, "version": value.version}
    return {"ok": True, "value": value}


def _error(kind: ErrorKind | str, message: str, hint: float | None = None) -> dict[str, Any]:
    return {"ok": False, "kind": ErrorKind(kind).value, "message": message, "retry_after": hint}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ToolError):
        return exc.message or type(exc).__name__
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else ""


# --- run state that travels with a call -----------------------------------------------------

_SCALARS = (int, float, str, bool, type(None))


def portable_state(run_state: Mapping[str, Any]) -> dict[str, dict[Any, Any]]:
    """The entries of a run's tool state that are plain data: dicts of scalars."""
    return {
        k: v
        for k, v in run_state.items()
        if isinstance(v, dict) and all(isinstance(x, _SCALARS) for x in v.values())
    }


def state_changes(
    before: Mapping[str, dict[Any, Any]], after: Mapping[str, Any]
) -> dict[str, dict[Any, tuple[str, Any]]]:
    """What a call changed in the plain-data state: numbers as increments ("add"), other
    values as replacements ("set")."""
    changes: dict[str, dict[Any, tuple[str, Any]]] = {}
    for key, now in portable_state(after).items():
        old = before.get(key, {})
        for k, v in now.items():
            was = old.get(k)
            if k in old and was == v:
                continue
            if _is_number(v) and (k not in old or _is_number(was)):
                changes.setdefault(key, {})[k] = ("add", v - (was or 0))
            else:
                changes.setdefault(key, {})[k] = ("set", v)
    return changes


def merge_state(
    run_state: dict[str, Any], changes: Mapping[str, Mapping[Any, tuple[str, Any]]]
) -> None:
    for key, entries in changes.items():
        target = run_state.setdefault(key, {})
        for k, (how, v) in entries.items():
            target[k] = target.get(k, 0) + v if how == "add" else v


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --- resources held in one place: a named actor per resource --------------------------------


class ResourceState:
    """One resource's rate window, bulkhead and breaker, for every worker of a batch (run
    as an async Ray actor). Callers name each admission and slot with a ticket of their
    own, so one they stopped waiting for can be given back whichever arrives first."""

    def __init__(
        self, name: str, rate: Rate | None, concurrency: int | None, breaker: BreakerPolicy | None
    ) -> None:
        from plait.runtime.clock import RealClock

        clock = RealClock()
        self.name = name
        self.breaker = CircuitBreaker(name, breaker, clock) if breaker is not None else None
        self.limiter = RateLimiter(rate, clock) if rate is not None else None
        self.limit = concurrency
        self._slots: asyncio.Semaphore | None = None
        self.admissions: dict[str, Any] = {}
        self.held: set[str] = set()
        self.abandoned: set[str] = set()
        self.starts: list[float] = []  # rate grants (monotonic), for tests and figures

    # breaker
    async def admit(self, ticket: str) -> tuple[bool, list[BreakerTransition]]:
        assert self.breaker is not None
        admission = self.breaker.admit()
        if admission is None:
            return False, []
        if ticket in self.abandoned:  # the caller gave up before the answer
            self.abandoned.discard(ticket)
            self.breaker.record(admission, ErrorKind.CANCELLED)
            return False, []
        self.admissions[ticket] = admission
        return True, list(admission.transitions)

    async def still_closed_for(self, ticket: str) -> bool:
        assert self.breaker is not None
        admission = self.admissions.get(ticket)
        return admission is not None and self.breaker.still_closed_for(admission)

    async def record(self, ticket: str, kind: str | None) -> list[BreakerTransition]:
        assert self.breaker is not None
        admission = self.admissions.pop(ticket, None)
        if admission is None:
            self.abandoned.add(ticket)
            return []
        return self.breaker.record(admission, kind)

    # bulkhead
    async def acquire_slot(self, ticket: str) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit or 1)
        await self._slots.acquire()
        if ticket in self.abandoned:
            self.abandoned.discard(ticket)
            self._slots.release()
            return
        self.held.add(ticket)

    async def release_slot(self, ticket: str) -> None:
        if ticket in self.held:
            self.held.discard(ticket)
            assert self._slots is not None
            self._slots.release()
        else:
            self.abandoned.add(ticket)

    # rate window
    async def acquire_rate(self) -> None:
        assert self.limiter is not None
        await self.limiter.acquire()
        import time

        self.starts.append(time.monotonic())

    async def rate_starts(self) -> list[float]:
        return list(self.starts)


_tickets = itertools.count()


def _ticket() -> str:
    return f"{os.getpid()}-{next(_tickets)}"


class _RemoteAdmission:
    __slots__ = ("ticket", "transitions")

    def __init__(self, ticket: str, transitions: list[BreakerTransition]) -> None:
        self.ticket, self.transitions = ticket, transitions


class RemoteBreaker:
    """The scheduler's breaker interface over a resource actor."""

    def __init__(self, name: str, actor: Any) -> None:
        self.name, self.actor = name, actor

    async def admit(self) -> Any | None:
        ticket = _ticket()
        try:
            ok, transitions = await self.actor.admit.remote(ticket)
        except asyncio.CancelledError:
            self.actor.record.remote(ticket, ErrorKind.CANCELLED.value)
            raise
        return _RemoteAdmission(ticket, transitions) if ok else None

    async def still_closed_for(self, admission: Any) -> bool:
        return bool(await self.actor.still_closed_for.remote(admission.ticket))

    async def record(self, admission: Any, kind: ErrorKind | str | None) -> list[BreakerTransition]:
        value = None if kind is None else ErrorKind(kind).value
        return list(await self.actor.record.remote(admission.ticket, value))

    def release(self, admission: Any) -> list[BreakerTransition]:
        self.actor.record.remote(admission.ticket, ErrorKind.CANCELLED.value)
        return []


class RemoteSlots:
    """A resource's bulkhead held by its actor, entered around one attempt."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.tickets: list[str] = []

    async def __aenter__(self) -> RemoteSlots:
        ticket = _ticket()
        try:
            await self.actor.acquire_slot.remote(ticket)
        except asyncio.CancelledError:
            self.actor.release_slot.remote(ticket)
            raise
        self.tickets.append(ticket)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # attempts of one run overlap: any held ticket of this proxy frees the same slot
        self.actor.release_slot.remote(self.tickets.pop())


class RemoteRate:
    """A resource's rate window held by its actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    async def acquire(self) -> None:
        await self.actor.acquire_rate.remote()


def remote_guards(actors: Mapping[str, Any], plan: Plan) -> ResourceGuards:
    """Guards whose state lives in the resource actors (one per resource)."""
    resources = plan.resources.values()
    return ResourceGuards(
        breakers={
            r.name: RemoteBreaker(r.name, actors[r.name])
            for r in resources
            if r.breaker is not None
        },
        bulkheads={
            r.name: RemoteSlots(actors[r.name]) for r in resources if r.concurrency is not None
        },
        limiters={r.name: RemoteRate(actors[r.name]) for r in resources if r.rate is not None},
    )


# --- a batch over Ray workers ---------------------------------------------------------------


class BatchWorker:
    """A Ray actor running many runs of one plan at once on its own event loop."""

    def __init__(
        self, plan_json: str, actor_names: dict[str, str], environ: dict[str, str]
    ) -> None:
        from plait.runtime.batch import LocalLines

        ray = import_ray()
        plan = CompiledPlan.model_validate_json(plan_json)
        real = plan_dir_of(plan)
        here = Path(worker_plan_dir(str(real)))
        if here != real and plan.source_path:  # the plan's folder travelled: read it there
            plan = plan.model_copy(update={"source_path": str(here / Path(plan.source_path).name)})
        actors = {
            name: ray.get_actor(actor, namespace=NAMESPACE) for name, actor in actor_names.items()
        }
        registry = worker_registry(tuple(u.target for u in plan.uses), str(real))
        self.lines = LocalLines(
            plan, registry, guards=remote_guards(actors, plan), environ={**os.environ, **environ}
        )

    async def run_line(self, line: int, inputs: dict[str, Any]) -> dict[str, Any]:
        result = await self.lines.run(InputLine(line, inputs))
        return asdict(result)

    def stop(self) -> None:
        self.lines.stop()

    def pid(self) -> int:
        return os.getpid()


class RayLines:
    """`plait batch --executor ray`: lines go to worker actors, the least busy first."""

    def __init__(
        self, ray: Any, workers: list[Any], resources: dict[str, Any], connected: bool
    ) -> None:
        self.ray, self.workers, self.resources = ray, workers, resources
        self.in_flight = [0] * len(workers)
        self.connected = connected

    @classmethod
    def start(
        cls,
        plan: Plan,
        *,
        address: str | None = None,
        workers: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> RayLines:
        from plait.runtime.state import check_env

        connected = connect(plan, address)
        ray = import_ray()
        batch = uuid.uuid4().hex[:12]
        names = {r: f"plait-{batch}-{r}" for r in plan.resources}
        resource_actor = ray.remote(num_cpus=0)(ResourceState)
        resources = {
            r.name: resource_actor.options(
                name=names[r.name], namespace=NAMESPACE, max_concurrency=10_000
            ).remote(r.name, r.rate, r.concurrency, r.breaker)
            for r in plan.resources.values()
        }
        env = check_env(plan, os.environ if environ is None else environ)
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        worker = ray.remote(num_cpus=1)(BatchWorker)
        plan_json = plan.model_dump_json()
        actors = [
            worker.options(max_concurrency=10_000).remote(plan_json, names, env)
            for _ in range(count)
        ]
        lines = cls(ray, actors, resources, connected)
        try:
            ray.get([a.pid.remote() for a in actors])  # started, and the plan's tools loaded
        except ray.exceptions.RayError as exc:
            lines.close()
            raise UserError(f"the Ray workers could not start: {_first_line(exc)}") from None
        return lines

    async def run(self, item: InputLine) -> LineResult:
        i = min(range(len(self.workers)), key=self.in_flight.__getitem__)
        self.in_flight[i] += 1
        try:
            data = await self.workers[i].run_line.remote(item.line, item.inputs)
        except self.ray.exceptions.RayError as exc:
            return LineResult(
                item.line,
                "failed",
                reasons=[
                    {
                        "why": f"the Ray worker running this line was lost: {_first_line(exc)}",
                        "kind": "tool_error",
                    }
                ],
            )
        finally:
            self.in_flight[i] -= 1
        return LineResult(**data)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop.remote()

    def close(self) -> None:
        for actor in [*self.workers, *self.resources.values()]:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        if self.connected:
            disconnect()


def ray_executor_for(plan: Plan, address: str | None) -> tuple[RayExecutor, Callable[[], None]]:
    """`plait run --executor ray`: connect, and the executor plus how to let go.

    Worker processes are started before the run (one task per CPU, at most WARM_UP): a
    step's `timeout` then measures its tool, not a worker's start-up."""
    connected = connect(plan, address)
    ray = import_ray()
    cpus = int(ray.cluster_resources().get("CPU", 1))
    warm = ray.remote(max_retries=0)(_warm_up)
    ray.get(
        [
            warm.remote(tuple(u.target for u in plan.uses), str(plan_dir_of(plan)))
            for _ in range(max(1, min(cpus, WARM_UP)))
        ]
    )
    return RayExecutor(plan), (disconnect if connected else (lambda: None))
