"""`file.*`: read and write text files relative to the plan's folder; writes are atomic
(a temp file in the same folder, then `os.replace`), so a failed run never leaves half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from plait.errors import InvalidInput, Permanent
from plait.stdlib.registry import ToolContext, tool


@tool(name="file.read")
def read(ctx: ToolContext, path: str) -> str:
    """Read a UTF-8 text file (relative to the plan's folder)."""
    target = resolve(ctx, path)
    try:
        return target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Permanent(f"no such file: {target}") from None
    except IsADirectoryError:
        raise Permanent(f"is a folder, not a file: {target}") from None
    except UnicodeDecodeError as exc:
        raise Permanent(f"{target} is not UTF-8 text ({exc.reason} at byte {exc.start})"
                        ) from None
    except OSError as exc:
        raise Permanent(f"cannot read {target}: {exc.strerror or exc}") from None


@tool(name="file.write")
def write(ctx: ToolContext, path: str, content: str) -> dict[str, Any]:
    """Write text atomically (relative to the plan's folder; missing folders are created)."""
    target = resolve(ctx, path)
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"file.write: `content` is not valid text ({exc.reason})") from None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
    except OSError as exc:
        raise Permanent(f"cannot write {target}: {exc.strerror or exc}") from None
    return {"path": str(target), "bytes": len(data)}


def resolve(ctx: ToolContext, path: str) -> Path:
    """`path` made absolute from the plan's folder (an absolute path stays as it is)."""
    return (Path(ctx.plan_dir) / Path(path).expanduser()).absolute()


def atomic_write(target: Path, data: bytes) -> None:
    """Write to a temp file beside `target`, flush it to disk, then rename it over `target`."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, _mode_for(target))
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def _mode_for(target: Path) -> int:
    """Keep an existing file's permissions; a new file gets 0o666 minus the umask, as
    `open()` would give it (mkstemp's own 0o600 would surprise users)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    # Reading the umask with os.umask() changes it for a moment, which races with other
    # threads; Linux publishes it in /proc instead.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022
