"""Where tool calls and runs happen. The seam is the scheduler's `Executor`:
`await executor(spec, validated_args, ctx)` gives the tool's value or raises its error.

- in this process (the default): `plait.runtime.executor.execute`;
- on Ray (`plait[ray]`): `plait.runtime.executors.ray.RayExecutor` makes each tool call a
  Ray task, and `RayLines` spreads the runs of a batch over Ray workers.
"""

from __future__ import annotations

from plait.runtime.executor import execute as local_execute
from plait.runtime.scheduler import Executor

__all__ = ["Executor", "local_execute"]
