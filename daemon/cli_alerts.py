"""`fa-sync alerts test`: send a test alert to every configured channel, say which took it."""

from __future__ import annotations

import aiohttp
import typer

from daemon.alerts.channels import build_channels
from daemon.alerts.dispatcher import send_test
from daemon.cli_support import console, err_console, run_async, settings
from daemon.runner import utcnow

alerts_app = typer.Typer(help="Alert channels (webhook, e-mail).", no_args_is_help=True)


@alerts_app.command("test")
@run_async
async def alerts_test() -> None:
    """Send a test alert to each configured channel; exit 1 if any did not take it."""
    s = settings()
    async with aiohttp.ClientSession() as session:
        channels = build_channels(s, lambda: session)
        if not channels:
            err_console.print(
                "alerts are off: set FA_SYNC_ALERT_WEBHOOK_URL and/or FA_SYNC_ALERT_SMTP_HOST"
            )
            raise typer.Exit(1)
        results = await send_test(channels, now=utcnow(), replica=s.replica_id)
    for name, error in results:
        if error is None:
            console.print(f"{name}: [green]ok[/green]")
        else:
            console.print(f"{name}: [red]failed[/red]: {error}", markup=True, highlight=False)
    if any(error for _, error in results):
        raise typer.Exit(1)
