"""``serverguard serve``: the HTTP API (uvicorn), on loopback unless told otherwise."""

from __future__ import annotations

import ipaddress
import math
from typing import Annotated

import typer

from orchestrator.cli.common import BatchOpt, InventoryOpt, err_console, inventory_paths
from orchestrator.errors import ConfigError
from orchestrator.storage.settings import ServiceSettings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str | None, typer.Option(
        "--host", help="Address to listen on. Default: $SERVERGUARD_API_HOST, else 127.0.0.1.",
        show_default=False)] = None,
    port: Annotated[int | None, typer.Option(
        "--port", help="TCP port. Default: $SERVERGUARD_API_PORT, else 8080.",
        show_default=False)] = None,
    inventory: InventoryOpt = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    collect: Annotated[
        bool,
        typer.Option("--collect/--no-collect", help="Sweep the inventory's hosts for metrics."),
    ] = True,
    vm_url: Annotated[
        str | None,
        typer.Option("--vm-url", help="VictoriaMetrics URL (default: an embedded child)."),
    ] = None,
    interval: Annotated[float | None, typer.Option(
        help="Seconds between sweeps of a host. Default: $SERVERGUARD_COLLECT_INTERVAL, "
             "else 15.")] = None,
    batch: BatchOpt = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs); the first start creates an admin account.

    Its random password is printed here, once.
    """
    import uvicorn

    from api import create_app
    from api.app import freeze_startup_heap
    from orchestrator import audit
    from orchestrator.auth.service import AuthService
    from orchestrator.collection import check_collection
    from orchestrator.storage.db import Database
    from orchestrator.storage.models import AuditEntryCreate

    if interval is not None and not (math.isfinite(interval) and interval > 0):
        raise ConfigError(f"--interval {interval:g}: must be a finite number of seconds > 0")
    settings = ServiceSettings()  # SERVERGUARD_* first, then the options given
    if interval is not None:
        settings = settings.model_copy(update={"collect_interval": interval})
    if batch is not None:
        settings = settings.model_copy(update={"collect_batch": batch})
    if vm_url:
        settings = settings.model_copy(update={"vm_url": vm_url})
    host = host or settings.api_host
    port = settings.api_port if port is None else port
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: not a TCP port")
    try:
        sources = inventory_paths(inventory, settings)
    except ConfigError:
        sources = []  # the API still serves users, tokens and the audit log
        err_console.print("[yellow]no inventory: hosts, groups and runs will be empty[/] "
                          "(pass -i FILE or set SERVERGUARD_INVENTORY)")
    settings = settings.model_copy(update={"inventory": sources, "collect": collect})
    # An inventory the sweeps cannot start from is refused here, as `serverguard collect`
    # refuses it, before the database or the server is touched: one line of error, not a
    # failed application startup (the lifespan starts from this very inventory).
    checked = (check_collection(sources, settings, settings.collect_pattern)
               if collect and sources else None)
    db = Database.from_settings(settings)
    db.migrate()
    with db.session() as session:
        created = AuthService(settings).ensure_admin(session)
    if created is not None:
        username, password = created
        audit.append(db, AuditEntryCreate(action="user.bootstrap", target=f"user:{username}",
                                          source="local", result="ok",
                                          detail={"role": "admin"}))
        # Shown here, once, on the terminal: never logged, never stored in clear.
        typer.echo(f"First start: created the admin account {username!r} with password\n\n"
                   f"    {password}\n\n"
                   "Sign in (POST /api/v1/login) and change it (POST /api/v1/users/me/password);"
                   " it will not be shown again.")
    if not _is_loopback(host):
        err_console.print(f"[yellow]warning:[/] listening on {host}, beyond this machine: "
                          "put TLS in front (a reverse proxy) before exposing it")
    err_console.print(f"ServerGuard API on http://{host}:{port} (docs at /docs), "
                      f"database {db.display_url}")
    app = create_app(settings, database=db, inventory=checked)
    freeze_startup_heap()
    # The stdlib event loop, not uvloop even when installed: under 50 concurrent clients
    # uvloop's p99 was 200-350 ms against 47-50 ms (benchmarks/api/README.md).
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=False,
                loop="asyncio", http="httptools")
