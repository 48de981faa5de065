"""CLI: `fa-sync contact duplicates`, the FreeAgent duplicates audit."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from daemon.cli_admin import JsonOpt
from daemon.cli_contacts import ProfileOpt, contact_app
from daemon.cli_profiles import profile_by_name
from daemon.cli_support import console, run_async, settings
from daemon.errors import ConfigError
from daemon.process import open_services
from profiles.freeagent_contact_export.duplicates import audit, hide_unlinked, render
from profiles.freeagent_contact_export.resolve import ContactIndex


@contact_app.command("duplicates")
@run_async
async def contact_duplicates(
    profile: ProfileOpt,
    hide: Annotated[
        bool,
        typer.Option(
            "--hide-unlinked",
            help="Hide the unlinked copies in e-mail groups where a ledger row links one.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="With --hide-unlinked: say what would be hidden; hide nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """FreeAgent contacts sharing an e-mail or an exact name, and which one the ledger links."""
    async with open_services(settings()) as s:
        row = await profile_by_name(s, profile)
        if row.client_id is None:
            raise ConfigError(f"profile {profile}: no FreeAgent client")
        fa = await s.factory.freeagent(row.client_id, profile_name=row.name)
        index = ContactIndex(pool=s.pool, client_id=row.client_id, freeagent=fa)
        groups = await audit(s.pool, index, row.client_id)
        acted = await hide_unlinked(fa, groups, dry_run=dry_run) if hide else []
    verb = "would hide" if dry_run else "hid"
    if as_json:
        hidden = [{"url": m.url, "by": g.by, "value": g.value} for g, m in acted]
        body = {
            "groups": [g.as_json() for g in groups],
            ("would_hide" if dry_run else "hidden"): hidden,
        }
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
        return
    for line in render(groups):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for group, member in acted:
        console.print(f"{verb} {member.url} ({group.value})", markup=False, highlight=False)
    if hide and not acted:
        console.print("nothing to hide", markup=False)
