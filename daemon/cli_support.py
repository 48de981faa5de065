"""Shared plumbing of the CLI: running async commands, errors, tables, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from daemon.errors import FaSyncError
from daemon.logs import configure
from daemon.loop import run as run_loop
from daemon.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    """Settings from the environment; a bad value is one red line and exit code 1."""
    try:
        return Settings.load()
    except FaSyncError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def settings() -> Settings:
    """Settings from the environment; logging set up for a CLI command."""
    s = load_settings()
    configure(log_format=s.log_format, level="WARNING" if s.log_level == "INFO" else s.log_level)
    return s


def run_async(func: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """Run an async command on the configured event loop; fa-sync errors become one red line
    and exit code 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        # The command loads the settings again inside the loop; every command needs them, so a
        # bad value stops it here with the same red line, only sooner.
        loop = load_settings().event_loop
        try:
            return run_loop(func(*args, **kwargs), loop=loop)  # type: ignore[arg-type]
        except FaSyncError as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S%z")
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)[:80]
    return str(value)


def show(
    rows: Sequence[dict[str, Any]], columns: Iterable[str], *, title: str, as_json: bool
) -> None:
    """Print rows as a rich table, or as JSON for scripts."""
    cols = list(columns)
    if as_json:
        sys.stdout.write(
            json.dumps([{c: r.get(c) for c in cols} for r in rows], default=str, indent=2) + "\n"
        )
        return
    table = Table(title=title)
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*(_cell(r.get(c)) for c in cols))
    console.print(table)
