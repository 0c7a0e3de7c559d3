"""`newsflow keys create|revoke|list`: the API's keys (SPEC section 6, "Access")."""

from __future__ import annotations

import click

from services.cli.system import command
from shared.db import transaction
from shared.errors import ConfigurationError
from shared.keys import Role, create_key, list_keys, revoke_key


@click.group()
def keys() -> None:
    """API keys: `reader` (every read) or `operator` (also the status and replay)."""


@keys.command("create")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--name", required=True, help="Who or what uses it; recorded with every operator action.")
def create(role: str, name: str) -> None:
    """Create a key; it is shown once, alone on the last line, and stored hashed."""
    with command(log_level="WARNING") as cmd, transaction(cmd.runtime.sessions) as session:
        try:
            key = create_key(session, name, Role(role))
        except ConfigurationError as e:
            raise click.ClickException(str(e)) from e
    click.echo(f"{role} key {name!r} created; it is shown only now:", err=True)
    click.echo(key)


@keys.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke the key of this name: it is refused from now on."""
    with command(log_level="WARNING") as cmd, transaction(cmd.runtime.sessions) as session:
        done = revoke_key(session, name)
    if not done:
        raise click.ClickException(f"no active key named {name!r}")
    click.echo(f"key {name!r} revoked")


@keys.command("list")
def list_() -> None:
    """Every key: name, role, created, revoked."""
    with command(log_level="WARNING") as cmd, cmd.runtime.sessions() as session:
        for key in list_keys(session):
            revoked = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            click.echo(f"{key.name:<24} {key.role:<9} created {key.created_at:%Y-%m-%d %H:%M}  {revoked}")
