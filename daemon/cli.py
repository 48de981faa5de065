"""The `fa-sync` command line (typer + rich)."""

from __future__ import annotations

from typing import Annotated

import typer
from aiohttp import web

from daemon import cli_duplicates, cli_profile_io, cli_profiles  # noqa: F401  (register commands)
from daemon.cli_admin import client_app, magento_app, profile_app
from daemon.cli_alerts import alerts_app
from daemon.cli_contacts import contact_app, queue_app
from daemon.cli_match import match_app
from daemon.cli_status import history, status
from daemon.cli_support import console, err_console, load_settings, run_async, settings
from daemon.db.pool import migrate
from daemon.errors import ConfigError
from daemon.logs import configure
from daemon.loop import run as run_loop
from daemon.process import main as daemon_main
from daemon.process import open_services
from daemon.secretbox import prepare_secrets, reseal_all

app = typer.Typer(
    help="fa-sync: keeps FreeAgent contacts in step with Magento 2 customers.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold secrets
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets stored in the database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(secrets_app, name="secrets")
app.add_typer(client_app, name="client")
app.add_typer(magento_app, name="magento")
app.add_typer(profile_app, name="profile")
app.add_typer(contact_app, name="contact")
app.add_typer(queue_app, name="queue")
app.add_typer(match_app, name="match")
app.add_typer(alerts_app, name="alerts")
app.command("history")(history)
app.command("status")(status)


@db_app.command("migrate")
@run_async
async def db_migrate() -> None:
    """Apply schema.sql (idempotent; the daemon also does this at start)."""
    async with open_services(settings(), migrate_schema=False) as s:
        await migrate(s.pool)
        sealed = await prepare_secrets(s.pool, s.factory.secrets)
    console.print("schema up to date" + (f"; {sealed} plain secrets sealed" if sealed else ""))


@secrets_app.command("rotate-key")
@run_async
async def secrets_rotate_key() -> None:
    """Seal every stored secret with FA_SYNC_SECRET_KEY (old keys in FA_SYNC_SECRET_KEYS_OLD)."""
    async with open_services(settings()) as s:
        count = await reseal_all(s.pool, s.factory.secrets, plain_only=False)
    console.print(f"{count} secrets sealed with the current key; old keys can be removed")


@app.command("run")
def run() -> None:
    """Run the daemon: every enabled profile on its schedule, until SIGTERM/SIGINT."""
    s = load_settings()
    configure(log_format=s.log_format, level=s.log_level)
    try:
        code = run_loop(daemon_main(s), loop=s.event_loop)
    except ConfigError as exc:  # e.g. the secret key cannot open the stored secrets
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command("simulate")
def simulate(
    service: Annotated[str, typer.Argument(help="freeagent | magento")],
    host: str = "127.0.0.1",
    port: int = 8080,
    customers: Annotated[int, typer.Option(help="magento: seeded customers")] = 50,
    guest_orders: Annotated[int, typer.Option(help="magento: seeded guest orders")] = 10,
    seed: int = 7,
) -> None:
    """Serve a FreeAgent or Magento simulator (demo and tests; never production)."""
    if service == "freeagent":
        from simulators.freeagent import FreeAgentState, create_app

        state = FreeAgentState(seed=seed)
        _access, refresh = state.issue_tokens()
        console.print(
            f"FreeAgent simulator: http://{host}:{port}/v2/ client demo-client/demo-secret"
        )
        console.print(
            f"refresh token (FA_SYNC_REFRESH_TOKEN of client authorize --refresh-token): {refresh}"
        )
        web.run_app(create_app(state), host=host, port=port, print=None)
    elif service == "magento":
        from simulators.magento import MagentoState
        from simulators.magento import create_app as create_magento

        console.print(f"Magento simulator: http://{host}:{port} bearer token demo-magento-token")
        web.run_app(
            create_magento(MagentoState.seeded(customers, guest_orders, seed)),
            host=host,
            port=port,
            print=None,
        )
    else:
        raise typer.BadParameter("service must be freeagent or magento")


@app.command("demo")
def demo(
    customers: Annotated[int, typer.Option(help="Magento customers to seed.")] = 60,
    faults: Annotated[bool, typer.Option(help="Inject 429s and 5xx along the way.")] = True,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Keep the simulators and a daemon running until Ctrl-C, to try the "
            "operator's commands on from another terminal.",
        ),
    ] = False,
    schedule: Annotated[str, typer.Option(help="--serve: the demo profile's cron.")] = "* * * * *",
    trickle: Annotated[
        float, typer.Option(min=1, help="--serve: seconds between Magento changes.")
    ] = 20.0,
) -> None:
    """Export simulated Magento customers to a simulated FreeAgent, end to end, and show it."""
    if serve:
        from daemon.demo_serve import serve_demo

        raise typer.Exit(
            run_async(serve_demo)(
                customers=customers, faults=faults, schedule=schedule, trickle_seconds=trickle
            )
        )
    from daemon.demo import run_demo

    raise typer.Exit(run_async(run_demo)(customers=customers, faults=faults))


if __name__ == "__main__":
    app()
