"""Admin commands of the CLI, through the hub's REST API like the other operator commands:
``crossview operators list|add|disable|enable|reset-password|set-role`` and ``crossview audit list|export``.

A new password is never an argument (it would show in `ps`): it is prompted for twice, hidden, or read
from ``CROSSVIEW_NEW_PASSWORD``. Times (`--since`, `--until`) are Unix seconds or ISO 8601 (UTC unless
the text says otherwise).
"""

from __future__ import annotations

import codecs
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cloud.times import format_time
from crossview.api_client import HubApiError
from crossview.operator_commands import (
    DEFAULT_HUB,
    HubOption,
    PasswordOption,
    TokenOption,
    UserOption,
    connect,
    print_table,
)

ROLES = ("viewer", "operator", "admin")
NewPassword = Annotated[str, typer.Option("--new-password", envvar="CROSSVIEW_NEW_PASSWORD", prompt=True,
                                          hide_input=True, confirmation_prompt=True,
                                          help="Prompted for (hidden) or from CROSSVIEW_NEW_PASSWORD.")]
Since = Annotated[str | None, typer.Option(help="From this time on: Unix seconds or ISO 8601 (UTC by default).")]
Until = Annotated[str | None, typer.Option(help="Before this time: Unix seconds or ISO 8601 (UTC by default).")]
Who = Annotated[str | None, typer.Option("--operator", help="Only this operator's lines.")]
Action = Annotated[str | None, typer.Option(help="Only this action (search, enrol, view_crop, login_failed, ...).")]
Target = Annotated[str | None, typer.Option(help="Only this target (identity id, 'sighting N', search job id, ...).")]


def parse_time(name: str, text: str | None) -> float | None:
    """Unix seconds or an ISO 8601 date/time (naive: UTC); HubApiError naming the option otherwise."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HubApiError(f"--{name}: expected Unix seconds or an ISO 8601 time like 2026-12-07T08:00, "
                          f"got {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _role(role: str) -> str:
    if role not in ROLES:
        raise HubApiError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    return role


def operator_line(record: dict[str, Any]) -> str:
    return f"operator {record['username']}: {record['role']}, {'disabled' if record['disabled'] else 'enabled'}"


def register(app: typer.Typer) -> None:
    """Add the `operators` and `audit` command groups to `app`."""
    operators = typer.Typer(help="Operator accounts of the hub (admins only).", no_args_is_help=True)
    audit = typer.Typer(help="The hub's audit trail (admins only).", no_args_is_help=True)
    app.add_typer(operators, name="operators")
    app.add_typer(audit, name="audit")

    @operators.command("list")
    def list_(hub: HubOption = DEFAULT_HUB, user: UserOption = "admin", password: PasswordOption = None,
              token: TokenOption = None) -> None:
        """Every operator with its role and whether it is disabled."""
        with connect(hub, user, password, token) as client:
            rows = [[o["username"], o["role"], "disabled" if o["disabled"] else "enabled", format_time(o["created_s"])]
                    for o in client.operators()]
        print_table(["operator", "role", "state", "created"], rows)

    @operators.command()
    def add(name: Annotated[str, typer.Argument(help="The new operator's name.")],
            role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "operator",
            new_password: NewPassword = "", hub: HubOption = DEFAULT_HUB, user: UserOption = "admin",
            password: PasswordOption = None, token: TokenOption = None) -> None:
        """Create an operator (viewer: reads only; operator: also enrols, watches, renames, deletes; admin: also
        manages operators and reads the audit trail)."""
        _role(role)
        with connect(hub, user, password, token) as client:
            typer.echo(operator_line(client.add_operator(name, new_password, role)))

    @operators.command()
    def disable(name: str, hub: HubOption = DEFAULT_HUB, user: UserOption = "admin", password: PasswordOption = None,
                token: TokenOption = None) -> None:
        """Disable an operator: it cannot log in and its sessions end (the last enabled admin cannot be)."""
        with connect(hub, user, password, token) as client:
            typer.echo(operator_line(client.set_operator_disabled(name, True)))

    @operators.command()
    def enable(name: str, hub: HubOption = DEFAULT_HUB, user: UserOption = "admin", password: PasswordOption = None,
               token: TokenOption = None) -> None:
        """Let a disabled operator log in again."""
        with connect(hub, user, password, token) as client:
            typer.echo(operator_line(client.set_operator_disabled(name, False)))

    @operators.command("reset-password")
    def reset_password(name: str, new_password: NewPassword = "", hub: HubOption = DEFAULT_HUB,
                       user: UserOption = "admin", password: PasswordOption = None, token: TokenOption = None) -> None:
        """Give an operator a new password: its sessions end and a lockout is lifted."""
        with connect(hub, user, password, token) as client:
            typer.echo(operator_line(client.reset_password(name, new_password)) + "; its sessions were ended")

    @operators.command("set-role")
    def set_role(name: str, role: Annotated[str, typer.Argument(help="viewer, operator or admin.")],
                 hub: HubOption = DEFAULT_HUB, user: UserOption = "admin", password: PasswordOption = None,
                 token: TokenOption = None) -> None:
        """Change an operator's role (the last enabled admin cannot be demoted)."""
        with connect(hub, user, password, token) as client:
            typer.echo(operator_line(client.set_role(name, _role(role))))

    @audit.command("list")
    def audit_list(who: Who = None, action: Action = None, target: Target = None, since: Since = None,
                   until: Until = None, before: Annotated[int | None, typer.Option(
                       help="Only lines older than this audit id (the next page).")] = None,
                   limit: Annotated[int, typer.Option(help="At most this many lines (1-1000).")] = 50,
                   hub: HubOption = DEFAULT_HUB, user: UserOption = "admin", password: PasswordOption = None,
                   token: TokenOption = None) -> None:
        """Audit lines, newest first."""
        filters = {"username": who, "action": action, "target": target, "since_s": parse_time("since", since),
                   "until_s": parse_time("until", until)}
        with connect(hub, user, password, token) as client:
            lines = client.audit(before_id=before, limit=limit, **filters)
        print_table(["id", "time (UTC)", "operator", "role", "from", "action", "target", "detail"],
                    [[str(a["audit_id"]), a["time_utc"], a["username"], a["role"], a["client"], a["action"],
                      a["target"] or "-", a["detail"] or "-"] for a in lines])
        if len(lines) == limit:
            typer.echo(f"more: --before {lines[-1]['audit_id']}")

    @audit.command("export")
    def audit_export(fmt: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
                     output: Annotated[Path | None, typer.Option(help="Write here (default: stdout).")] = None,
                     who: Who = None, action: Action = None, target: Target = None, since: Since = None,
                     until: Until = None, hub: HubOption = DEFAULT_HUB, user: UserOption = "admin",
                     password: PasswordOption = None, token: TokenOption = None) -> None:
        """Every matching audit line, oldest first, as CSV (with a header) or JSON Lines."""
        if fmt not in ("csv", "jsonl"):
            raise HubApiError(f"--format: expected csv or jsonl, got {fmt!r}")
        filters = {"username": who, "action": action, "target": target, "since_s": parse_time("since", since),
                   "until_s": parse_time("until", until)}
        with connect(hub, user, password, token) as client:
            if output is None:
                decoder = codecs.getincrementaldecoder("utf-8")()
                for chunk in client.audit_export(fmt, **filters):
                    typer.echo(decoder.decode(chunk), nl=False)
                typer.echo(decoder.decode(b"", final=True), nl=False)
                return
            with output.open("wb") as out:
                size = sum(out.write(chunk) for chunk in client.audit_export(fmt, **filters))
        typer.echo(f"wrote {size} bytes to {output}", err=True)
