"""CLI: rows first-run matching left for a person (`needs_review`), and the person's decision.

fa-sync match list [--profile P]      rows waiting, with their candidate contacts
fa-sync match link ROW URL            use this FreeAgent contact (the next export updates it)
fa-sync match create ROW              create a new contact even though candidates exist
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from daemon.cli_admin import JsonOpt
from daemon.cli_profiles import profile_by_name
from daemon.cli_support import console, run_async, settings
from daemon.db.queries import QUERIES
from daemon.process import open_services
from daemon.runner import utcnow
from profiles.freeagent_contact_export import review

match_app = typer.Typer(
    help="Review matches: rows that could be several FreeAgent contacts.", no_args_is_help=True
)
ByOpt = Annotated[str | None, typer.Option("--by", help="Who decides (default: the login name).")]


def _who(by: str | None) -> str:
    if by and by.strip():
        return by.strip()[:100]
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        return "unknown"


def _customer(row: Mapping[str, Any]) -> str:
    data = row["source_data"] if isinstance(row["source_data"], dict) else {}
    first = data.get("firstname") or data.get("customer_firstname") or ""
    last = data.get("lastname") or data.get("customer_lastname") or ""
    return " ".join(str(x).strip() for x in (first, last) if x and str(x).strip()) or "(no name)"


def render_reviews(rows: Sequence[Mapping[str, Any]]) -> RenderableType:
    """One block per row: id, customer, e-mail, why, then each candidate; fits 80 columns."""
    if not rows:
        return Text("no rows wait for review", style="dim")
    blocks: list[RenderableType] = []
    for row in rows:
        meta = row["metadata"] if isinstance(row["metadata"], dict) else {}
        info = meta.get("review") or {}
        if not info and meta.get("drift"):  # on_drift: review, decided with queue resolve
            info = {"reason": "contact edited in FreeAgent since fa-sync wrote it: "
                    f"fa-sync queue resolve {row['id']} --keep|--overwrite"}  # fmt: skip
        site = f", website {row['website_id']}" if row["website_id"] is not None else ""
        head = Text.assemble(
            (f"row {row['id']}", "bold"), f"  {row['source_key']}{site}  ",
            (str(row["profile_name"]), "dim"),
        )  # fmt: skip
        lines: list[RenderableType] = [head, Text(f"  customer  {_customer(row)}")]
        lines.append(Text(f"  e-mail    {row['email'] or '(none)'}"))
        if info.get("reason"):
            lines.append(Text(f"  why       {info['reason']}", style="yellow"))
        for n, cand in enumerate(info.get("candidates") or [], 1):
            status = f" ({cand.get('status')})" if cand.get("status") else ""
            lines.append(Text(f"  {n}. {cand.get('name') or '(no name)'}{status}"))
            lines.append(Text(f"     {cand.get('url')}", style="cyan", overflow="fold"))
        lines.append(Text(""))
        blocks.append(Group(*lines))
    tail = Text("decide: fa-sync match link ROW URL | fa-sync match create ROW", style="dim")
    return Group(*blocks, tail)


@match_app.command("list")
@run_async
async def match_list(
    profile: Annotated[str | None, typer.Option("--profile", "-p")] = None,
    limit: int = 100,
    as_json: JsonOpt = False,
) -> None:
    """Rows waiting for a person, with the FreeAgent contacts they could be."""
    async with open_services(settings()) as s:
        profile_id = (await profile_by_name(s, profile)).id if profile else None
        found = await s.pool.fetch(QUERIES["entity_review_list"], profile_id, limit)
    rows = [dict(r) for r in found]
    if as_json:
        doc = [
            {"id": r["id"], "profile": r["profile_name"], "source_key": r["source_key"],
             "customer": _customer(r), "email": r["email"], "website_id": r["website_id"],
             **((r["metadata"] or {}).get("review") or {})}
            for r in rows
        ]  # fmt: skip
        sys.stdout.write(json.dumps(doc, default=str, indent=2) + "\n")
        return
    console.print(render_reviews(rows))


@match_app.command("link")
@run_async
async def match_link(
    row: Annotated[int, typer.Argument(help="Ledger row id (fa-sync match list).")],
    url: Annotated[str, typer.Argument(help="The FreeAgent contact's URL.")],
    by: ByOpt = None,
) -> None:
    """Use this FreeAgent contact for the row; the next export updates it."""
    async with open_services(settings()) as s:
        done = await review.link(s.pool, row, url, by=_who(by), now=utcnow())
    console.print(f"row {done.row_id} ({done.source_key}) -> {done.url}")
    if done.also_used_by:
        console.print(f"[yellow]also used by ledger rows {', '.join(done.also_used_by)}[/yellow]")
    console.print("pending: the next export updates that contact")


@match_app.command("create")
@run_async
async def match_create(
    row: Annotated[int, typer.Argument(help="Ledger row id (fa-sync match list).")],
    by: ByOpt = None,
) -> None:
    """Create a new FreeAgent contact for the row even though candidates exist."""
    async with open_services(settings()) as s:
        done = await review.create(s.pool, row, by=_who(by), now=utcnow())
    was = f" (was {done.previous_url})" if done.previous_url else ""
    console.print(f"row {done.row_id} ({done.source_key}): a new contact{was}")
    console.print("pending: the next export creates it")
