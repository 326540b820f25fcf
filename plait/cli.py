"""The `plait` command line: argv -> library calls -> exit code. Thin glue, no logic of its own.

Each command lives in its own section below; exit codes are the named constants here.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click

from plait import __version__
from plait.errors import UserError

# Exit codes (SPEC section 7).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_DEGRADED = 3
EXIT_INTERNAL = 70
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

F = TypeVar("F", bound=Callable[..., Any])


def fail_usage(message: str) -> None:
    """Print a one-line error for bad user input and exit 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_INVALID)


def guarded(func: F) -> F:
    """Turn UserError into exit 2 and any other exception into exit 70 with one line.

    The traceback is shown only with PLAIT_DEBUG=1: no input may end in a traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            fail_usage(str(exc))
        except (SystemExit, KeyboardInterrupt, click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:
            if os.environ.get("PLAIT_DEBUG") == "1":
                traceback.print_exc()
            click.echo(f"internal error (a bug in plait): {type(exc).__name__}: {exc}"
                       " (set PLAIT_DEBUG=1 for the traceback)", err=True)
            sys.exit(EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="plait")
def cli() -> None:
    """plait: declarative, fault-tolerant orchestration for AI agents.

    \b
    Write a plan in a .agent file, then:
      plait check plan.agent          validate it (errors with file:line:col and hints)
      plait graph plan.agent -o p.svg draw its DAG
      plait run plan.agent --input k=v run it; exit 0 ok, 3 degraded, 1 failed, 2 invalid
    """


# --- compiler commands: check, compile, graph, tools ----------------------------------------


# --- runtime commands: run ------------------------------------------------------------------


# --- journal commands: resume, runs, show, report -------------------------------------------


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="plait", standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)
