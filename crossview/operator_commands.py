"""Operator commands of the CLI, talking to a hub's REST API: `enroll`, `search`, `watch`, `alerts` (and the
admins' `operators` and `audit` groups, `crossview.admin_commands`).

The hub and the credentials come from options or the environment (``CROSSVIEW_HUB_URL``,
``CROSSVIEW_USER``, ``CROSSVIEW_PASSWORD`` or ``CROSSVIEW_TOKEN``), read here, at the entry point.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from cloud.times import format_time
from crossview.api_client import HubApiError, HubClient
from models.scores import DEFAULT_WATCH_P_SAME, P_SAME_LABEL, check_p_same

HubOption = Annotated[str, typer.Option("--hub", envvar="CROSSVIEW_HUB_URL", help="The hub's REST API address.")]
UserOption = Annotated[str, typer.Option("--user", envvar="CROSSVIEW_USER", help="Operator name.")]
PasswordOption = Annotated[str | None, typer.Option("--password", envvar="CROSSVIEW_PASSWORD",
                                                    help="Operator password (or set CROSSVIEW_TOKEN).")]
TokenOption = Annotated[str | None, typer.Option("--token", envvar="CROSSVIEW_TOKEN",
                                                 help="A session token from an earlier login.")]
DEFAULT_HUB = "http://127.0.0.1:8080"


def connect(hub: str, user: str, password: str | None, token: str | None) -> HubClient:
    client = HubClient(hub, token=token)
    if token is None:
        if password is None:
            client.close()
            raise HubApiError("no credentials: pass --password (or CROSSVIEW_PASSWORD) or --token (CROSSVIEW_TOKEN)")
        try:
            client.login(user, password)
        except BaseException:
            client.close()
            raise
    return client


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


P_SAME_NOTE = (f"{P_SAME_LABEL}: the probability, 0-1, that it is the same person (0.9: about 9 in 10 such matches "
               "are); times in UTC, or 'video +s' into a replay without recorded_at")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def identity_line(identity: dict[str, Any]) -> str:
    watch = identity.get("watchlist_threshold")
    return (f"identity {identity['identity_id']} {identity.get('display_name') or '(no name)'!s}: "
            f"{identity.get('crop_count', '?')} reference crop(s), "
            f"{f'watched at {P_SAME_LABEL} >= {watch:.2f}' if watch is not None else 'not watched'}")


def _threshold(value: float | None) -> float | None:
    return None if value is None else check_p_same("threshold", value)


def print_search(outcome: dict[str, Any], by_photo: bool) -> bool:
    """The hub's stored sightings of the person (by identity or sighting), then the edges' hits; whether
    anything was searched (False: no edge connected and nothing stored)."""
    stored = outcome.get("sightings") or []
    if stored:
        typer.echo(f"stored at the hub: {len(stored)} sighting(s)")
        print_table(["sighting", "identity", "edge", "camera", "time", P_SAME_LABEL, "stage 1", "stage 2"],
                    [[str(s["sighting_id"]), s.get("display_name") or s.get("identity_id") or "(unknown person)",
                      s["edge_id"], s["camera_id"], format_time(s["start_s"]), _p(s.get("p_same")),
                      _p(s.get("stage1_p_same")), _p(s.get("stage2_p_same"))] for s in stored])
    asked = outcome.get("edges_asked") or []
    if not asked:
        what = ": only the hub's stored sightings are shown" if stored else (
            ": nothing was searched" if by_photo else ", and the hub holds no sighting of this person")
        typer.echo(f"no edge is connected to the hub{what}", err=True)
        return bool(stored)
    rows = [[str(h["rank"]), h["edge_id"], h["camera_id"], format_time(h["start_s"]), _p(h.get("p_same")),
             _p(h.get("stage1_p_same")), _p(h.get("stage2_p_same")), h["verdict"],
             h.get("identity_id") or "-"] for h in outcome["hits"]]
    if stored:
        typer.echo("")
    print_table(["rank", "edge", "camera", "time", P_SAME_LABEL, "stage 1", "stage 2", "verdict", "identity"], rows)
    silent = outcome.get("edges_silent") or []
    failed = outcome.get("edges_failed") or {}
    typer.echo(f"{len(rows)} hit(s) from {len(outcome.get('edges_answered') or [])} of {len(asked)} edge(s)"
               + (f"; silent: {', '.join(silent)}" if silent else "")
               + (f"; failed: {', '.join(f'{e} ({m})' for e, m in failed.items())}" if failed else ""))
    typer.echo(P_SAME_NOTE)
    return True


def _matched(hit: dict[str, Any]) -> str:
    """Constraints that hold under the hit's attributes (p >= 0.5), then the ones that do not, marked '!'."""
    matched = hit.get("matched") or []
    if not matched and hit.get("attributes") is None:
        return "(no attributes)"
    return " ".join(f"{'' if m['matched'] else '!'}{m['constraint'].replace(' ', '-')}" for m in matched)


def _colours(hit: dict[str, Any]) -> str:
    attributes = hit.get("attributes") or {}
    read = [f"{part} {attributes[part]['name']}" for part in ("upper", "lower") if attributes.get(part)]
    return ", ".join(read) or "-"


def print_text_search(outcome: dict[str, Any]) -> bool:
    """A search by description: what was understood and ignored, the hits, the notes; whether an edge was asked."""
    text = outcome.get("text") or {}
    typer.echo(f"understood: {', '.join(text.get('constraints') or []) or '-'}")
    if text.get("ignored"):
        typer.echo(f"ignored (not searched): {', '.join(repr(w) for w in text['ignored'])}")
    asked = outcome.get("edges_asked") or []
    if not asked:
        typer.echo("no edge is connected to the hub: nothing was searched", err=True)
        return False
    rows = [[str(h["rank"]), h["edge_id"], h["camera_id"], format_time(h["start_s"]), _p(h.get("text_score")),
             _p(h.get("judge_score")), _p(h.get("score")), _matched(h), _colours(h)] for h in outcome["hits"]]
    print_table(["rank", "edge", "camera", "time", "text score", "judge", "score", "attributes ('!': not matched)",
                 "colours read"], rows)
    failed = outcome.get("edges_failed") or {}
    typer.echo(f"{len(rows)} hit(s) from {len(outcome.get('edges_answered') or [])} of {len(asked)} edge(s)"
               + (f"; failed: {', '.join(f'{e} ({m})' for e, m in failed.items())}" if failed else ""))
    for note in outcome.get("notes") or []:  # the hub's notes include what the scores mean
        typer.echo(f"note: {note}")
    return True


def register(app: typer.Typer) -> None:
    """Add the operator commands to `app`."""

    @app.command()
    def enroll(
        photos: Annotated[list[Path] | None, typer.Argument(help="JPEG or PNG photos of one person.")] = None,
        sighting: Annotated[int | None, typer.Option(help="Enroll from this sighting's crop instead.")] = None,
        name: Annotated[str, typer.Option(help="Display name.")] = "",
        watch: Annotated[float | None, typer.Option(
            help=f"Also put on the watchlist: alert at this {P_SAME_LABEL} (0-1).")] = None,
        hub: HubOption = DEFAULT_HUB, user: UserOption = "admin", password: PasswordOption = None,
        token: TokenOption = None,
    ) -> None:
        """Enroll a person in the hub's gallery (pushed to every edge) from photos or a sighting."""
        if bool(photos) == (sighting is not None):
            raise HubApiError("enroll: give photos or --sighting ID (exactly one of them)")
        watch = _threshold(watch)
        with connect(hub, user, password, token) as client:
            if sighting is not None:
                identity = client.enroll_from_sighting(sighting, display_name=name, watchlist_threshold=watch)
            else:
                identity = client.enroll(photos or [], display_name=name, watchlist_threshold=watch)
        typer.echo(identity_line(identity))

    @app.command()
    def search(
        photos: Annotated[list[Path] | None, typer.Argument(help="Photos of the person to look for.")] = None,
        sighting: Annotated[int | None, typer.Option(help="Search with this sighting's crop.")] = None,
        identity: Annotated[str | None, typer.Option(help="Search for this gallery identity.")] = None,
        text: Annotated[str | None, typer.Option(
            "--text", help="Search by description, e.g. \"woman, red top, black trousers, backpack\".")] = None,
        gender: Annotated[str | None, typer.Option(help="Description filter: man or woman.")] = None,
        backpack: Annotated[bool | None, typer.Option("--backpack/--no-backpack", show_default=False)] = None,
        bag: Annotated[bool | None, typer.Option("--bag/--no-bag", show_default=False)] = None,
        hat: Annotated[bool | None, typer.Option("--hat/--no-hat", show_default=False)] = None,
        long_sleeves: Annotated[bool | None, typer.Option("--long-sleeves/--short-sleeves",
                                                          show_default=False)] = None,
        long_trousers: Annotated[bool | None, typer.Option("--long-trousers/--shorts", show_default=False)] = None,
        long_hair: Annotated[bool | None, typer.Option("--long-hair/--short-hair", show_default=False)] = None,
        coat: Annotated[bool | None, typer.Option("--coat/--no-coat", show_default=False)] = None,
        upper_colour: Annotated[str | None, typer.Option(help="Description filter: colour of the top.")] = None,
        lower_colour: Annotated[str | None, typer.Option(help="Description filter: colour of the bottoms.")] = None,
        camera: Annotated[list[str] | None, typer.Option(help="Only this camera (repeat for more).")] = None,
        site: Annotated[list[str] | None, typer.Option(help="Only the edges of this site (repeat for more).")] = None,
        top_k: Annotated[int, typer.Option(help="Results per edge.")] = 20,
        deadline: Annotated[float, typer.Option(help="Seconds to wait for the edges.")] = 10.0,
        hub: HubOption = DEFAULT_HUB, user: UserOption = "admin", password: PasswordOption = None,
        token: TokenOption = None,
    ) -> None:
        """Search for a person: by identity or sighting, the hub's stored sightings of them first; then every
        connected edge's footage, hits best first. Or by description (--text and/or the attribute filters).
        Exit status 1 when no edge is connected and nothing is stored."""
        if gender not in (None, "man", "woman", "male", "female"):
            raise HubApiError(f"search: --gender: expected man or woman, got {gender!r}")
        filters = {"male": None if gender is None else gender in ("man", "male"), "backpack": backpack, "bag": bag,
                   "hat": hat, "long_sleeves": long_sleeves, "long_trousers": long_trousers, "long_hair": long_hair,
                   "coat_jacket": coat, "upper_colour": upper_colour, "lower_colour": lower_colour}
        described = text is not None or any(v is not None for v in filters.values())
        if sum((bool(photos), sighting is not None, identity is not None, described)) != 1:
            raise HubApiError("search: give photos, --sighting ID, --identity ID or a description (--text and/or "
                              "attribute filters) (exactly one of them)")
        with connect(hub, user, password, token) as client:
            outcome = client.search(photos=photos or [], sighting_id=sighting, identity_id=identity, top_k=top_k,
                                    deadline_s=deadline, text=text, filters=filters if described else None,
                                    camera_ids=camera or (), sites=site or ())
        shown = print_text_search(outcome) if described else print_search(outcome, by_photo=bool(photos))
        if not shown:
            raise typer.Exit(1)

    @app.command()
    def watch(
        identity: Annotated[str | None, typer.Argument(help="Identity id; leave out to list the watchlist.")] = None,
        threshold: Annotated[float, typer.Option(
            help=f"Alert when a confirmed sighting's {P_SAME_LABEL} (0-1) reaches this.")] = DEFAULT_WATCH_P_SAME,
        remove: Annotated[bool, typer.Option("--remove", help="Take the identity off the watchlist.")] = False,
        hub: HubOption = DEFAULT_HUB, user: UserOption = "admin", password: PasswordOption = None,
        token: TokenOption = None,
    ) -> None:
        """Put an identity on the watchlist (alerts when seen), take it off, or list the watchlist."""
        if not remove:
            _threshold(threshold)
        with connect(hub, user, password, token) as client:
            if identity is None:
                rows = [[i["identity_id"], i.get("display_name") or "-", _p(i.get("watchlist_threshold")),
                         format_time(i.get("last_seen_s"))] for i in client.watchlist()]
                print_table(["identity", "name", f"alert at {P_SAME_LABEL} >=", "last seen"], rows)
                return
            record = client.unwatch(identity) if remove else client.watch(identity, threshold)
        typer.echo(identity_line(record))

    @app.command()
    def alerts(
        after: Annotated[int, typer.Option(help="Only alerts after this alert id.")] = 0,
        count: Annotated[int, typer.Option(help="Stop after this many alerts (0: run until Ctrl-C).")] = 0,
        hub: HubOption = DEFAULT_HUB, user: UserOption = "admin", password: PasswordOption = None,
        token: TokenOption = None,
    ) -> None:
        """Follow the hub's watchlist alerts as they happen."""
        with connect(hub, user, password, token) as client:
            for seen, alert in enumerate(client.alerts(after_id=after), start=1):
                seen_at = alert.get("time_label") or format_time(alert.get("start_s"))
                typer.echo(f"alert {alert['alert_id']}: {alert.get('display_name') or alert['identity_id']} on "
                           f"{alert['edge_id']}/{alert['camera_id']}, seen {seen_at} "
                           f"({P_SAME_LABEL} {_p(alert.get('p_same'))}, sighting {alert['sighting_id']})")
                if count and seen >= count:
                    break
