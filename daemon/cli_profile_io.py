"""CLI: `profile export` and `profile import`, profiles as JSON files (no secrets)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from daemon.cli_admin import profile_app
from daemon.cli_support import console, run_async, settings
from daemon.errors import ConfigError
from daemon.process import open_services
from daemon.profile_io import export_profiles, import_profiles, parse_document


@profile_app.command("export")
@run_async
async def profile_export(
    names: Annotated[list[str] | None, typer.Argument(help="Profiles (default: all).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
) -> None:
    """Write profiles as JSON; clients and connections by name, never their secrets."""
    async with open_services(settings()) as s:
        doc = await export_profiles(s.pool, names or [])
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"{len(doc['profiles'])} profile(s) written to {output}")


@profile_app.command("import")
@run_async
async def profile_import(
    file: Annotated[Path, typer.Argument(help="A file written by `profile export` (- for stdin).")],
    dry_run: Annotated[bool, typer.Option(help="Check and report; change nothing.")] = False,
) -> None:
    """Create or update profiles by name from a JSON file, all or nothing."""
    source = "stdin" if str(file) == "-" else str(file)
    try:
        raw = sys.stdin.read() if source == "stdin" else file.read_text(encoding="utf-8")
        doc = json.loads(raw)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not JSON ({exc})") from None
    document = parse_document(doc, source)
    async with open_services(settings()) as s:
        results = await import_profiles(s.pool, document, dry_run=dry_run)
    for r in results:
        console.print(
            f"{r.name}: {'would be ' if dry_run and r.action != 'unchanged' else ''}{r.action}"
        )
    if dry_run:
        console.print("dry run: nothing was changed")
