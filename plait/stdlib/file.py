"""`file.*`: read and write text files relative to the plan's folder; writes are atomic
(a temp file in the same folder, then `os.replace`), so a failed run never leaves half a file.

SPEC section 10: both are versioned by the SHA-256 of the file's bytes (after a write).
`file.write(if_version = V)` writes only if the file's SHA-256 is V (`"*"`: it exists, `""`:
it does not), else fails with `stale`; the check and the rename happen under an exclusive
`flock` on `PATH.lock`, so plait processes (and programs taking that lock) never lose an
update. Unconditional writes take no lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from plait.errors import InvalidInput, Permanent, Stale
from plait.stdlib.registry import ToolContext, tool
from plait.versions import Versioned, bytes_sha256


@tool(name="file.read", read=True)
def read(ctx: ToolContext, path: str) -> Versioned:
    """Read a UTF-8 text file (relative to the plan's folder); its version is the SHA-256
    of its bytes."""
    target = resolve(ctx, path)
    try:
        data = target.read_bytes()
        return Versioned(data.decode("utf-8"), bytes_sha256(data))
    except FileNotFoundError:
        raise Permanent(f"no such file: {target}") from None
    except IsADirectoryError:
        raise Permanent(f"is a folder, not a file: {target}") from None
    except UnicodeDecodeError as exc:
        raise Permanent(f"{target} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise Permanent(f"cannot read {target}: {exc.strerror or exc}") from None


@tool(name="file.write")
def write(ctx: ToolContext, path: str, content: str, if_version: str | None = None) -> Versioned:
    """Write text atomically (relative to the plan's folder; missing folders are created);
    returns {path, bytes}: the absolute path written and the size of `content` in UTF-8.

    `if_version`: write only if the file's SHA-256 is this (`"*"`: the file exists; `""`:
    it does not), else fail with `stale`."""
    target = resolve(ctx, path)
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"file.write: `content` is not valid text ({exc.reason})") from None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if if_version is None:
            atomic_write(target, data)
        else:
            with locked(target):
                check_version(target, if_version)
                atomic_write(target, data)
    except OSError as exc:
        raise Permanent(f"cannot write {target}: {exc.strerror or exc}") from None
    return Versioned({"path": str(target), "bytes": len(data)}, bytes_sha256(data))


@contextlib.contextmanager
def locked(target: Path) -> Iterator[None]:
    """An exclusive `flock` on `PATH.lock` (created if absent, left in place)."""
    fd = os.open(f"{target}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def check_version(target: Path, if_version: str) -> None:
    """Raise `Stale` unless the file is at `if_version` (`*`: exists; `""`: absent)."""
    try:
        current: str | None = bytes_sha256(target.read_bytes())
    except FileNotFoundError:
        current = None
    if if_version == "*":
        ok, expected = current is not None, "to exist"
    elif if_version == "":
        ok, expected = current is None, "not to exist"
    else:
        ok, expected = current == if_version.lower(), f"at version {if_version[:12]}…"
    if not ok:
        found = "absent" if current is None else f"at version {current[:12]}…"
        raise Stale(
            f"file.write: expected {target} {expected}, but it is {found} "
            "(it changed since it was read)"
        )


def resolve(ctx: ToolContext, path: str) -> Path:
    """`path` made absolute from the plan's folder, its symlinks resolved, and confined: it
    must lie in the plan's folder or one of `ctx.file_roots` (themselves resolved), else
    `Permanent` naming the allowed folders (docs/security.md). `..`, absolute paths, `~`
    and symlinks are followed first, so none of them leads out."""
    target = Path(os.path.realpath(Path(ctx.plan_dir) / Path(path).expanduser()))
    roots = [Path(os.path.realpath(root)) for root in (ctx.plan_dir, *ctx.file_roots)]
    if any(target.is_relative_to(root) for root in roots):
        return target
    allowed = ", ".join(str(root) for root in roots)
    raise Permanent(
        f"{path!r} is outside the folders plait may read and write ({allowed}); "
        "allow another folder with `--files DIR` or PLAIT_FILES"
    )


def atomic_write(target: Path, data: bytes) -> None:
    """Write to a temp file beside `target`, flush it to disk, then rename it over `target`."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
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
