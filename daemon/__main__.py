from daemon.cli import app

app(prog_name="fa-sync")
