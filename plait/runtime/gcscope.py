"""Keep the garbage collector off what existed before a run, for the run's duration.

A run allocates a few objects per step that stay alive until its report is built, and
CPython's full collections walk every tracked object on the heap: the plan (about ten
objects per step), the compiler's leftovers, the embedder's data. Measured on a
10,000-step fan-out, a third of the run's time went to collections walking objects that
were alive before the run started and could not become garbage because of it.

`frozen_heap()` calls `gc.freeze()` at the start (everything alive moves to the permanent
generation, which collections skip) and `gc.unfreeze()` at the end (it all goes back to
the oldest generation, so nothing is leaked: the next full collection sees it again).
Objects made during the run are collected as usual, cycles included.

It also raises the youngest generation's threshold (700 allocations by default) to
`RUN_GEN0_THRESHOLD` for the run, and restores it after: a step's short-lived objects
(events, coroutines, tasks) otherwise survive a young collection every 700 allocations,
get promoted and are walked again by the older collections before they die. The price is
at most that many more objects awaiting a young collection (a few MB at worst). Measured
on the 10,000-step fan-out: collector time 0.12-0.19 s -> 0.06-0.09 s.

Used only at the command line's edge (`plait run`, `plait resume`), around the whole run:
the process is then plait's own. `run_plan` never changes an embedding program's collector.

Not done when the embedder already froze objects (`gc.get_freeze_count() > 0`, e.g. a
server that freezes before forking to keep pages shared): unfreezing would undo their
choice. Overlapping runs in one process freeze once; the last one to end unfreezes.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

RUN_GEN0_THRESHOLD = 20_000

_holders = 0  # runs inside `frozen_heap` right now (the first froze, the last unfreezes)
_saved_threshold: tuple[int, ...] = ()


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freeze the heap for the body unless someone else's freeze is in place."""
    global _holders, _saved_threshold
    if _holders == 0:
        if gc.get_freeze_count() > 0:
            yield  # the embedder's freeze: leave the collector as they set it
            return
        gc.freeze()
        _saved_threshold = gc.get_threshold()
        young, *older = _saved_threshold
        gc.set_threshold(max(young, RUN_GEN0_THRESHOLD), *older)
    _holders += 1
    try:
        yield
    finally:
        _holders -= 1
        if _holders == 0:
            gc.set_threshold(*_saved_threshold)
            gc.unfreeze()


@contextlib.contextmanager
def paused_collector() -> Iterator[None]:
    """Pause the cyclic collector for the body (restored as it was after).

    For compiling a plan at the command line's edge: compiling allocates many small objects
    that all stay alive until it ends and makes no garbage cycles worth finding early, so
    the collector would only walk them again and again (it more than halved the compile
    time of a 10,000-step plan, see bench/README.md). The compiler's own API
    (`compile_source`, `load_plan`, `run_plan_async`) never touches the collector: an
    embedding program keeps it as it set it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
