"""`wardwatch models ...`: the registry at the server's console.

`--by` names the registered user on whose authority a change is made; their role must hold
the permission (`model.manage` to register and shadow, `model.promote` to promote, roll back
and retire; an override of a failed gate needs the governance role). The console already
holds the database's credentials, so `--by` is attribution, checked against the role matrix
and written to the audit chain, not a second authentication.
"""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Connection, Engine

from wardwatch.security import roles, users
from wardwatch.settings import load_settings
from wardwatch.store import engine_from_settings, init_db

HOSPITAL = "hospital"  # registry.HOSPITAL, without importing the model stack for `--help`


class _OnFirstUse:
    """A module imported when first used: the registry pulls in LightGBM and scikit-learn,
    which `wardwatch --help` (and every other command) should not wait for."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


registry = _OnFirstUse("wardwatch.model.registry")

models_app = typer.Typer(
    help="The model registry: versions, the active model per scope, shadows, promotion "
    "through gates, one-step rollback.",
    no_args_is_help=True,
)
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

By = Annotated[str, typer.Option("--by", help="the registered user acting (their role is checked)")]
Reason = Annotated[str, typer.Option(help="why: written to the registry and the audit trail")]
Scope = Annotated[str, typer.Option(help="hospital, or unit:<name> (e.g. unit:MICU)")]


def _fail(message: str, hint: str = "") -> typer.Exit:
    errors.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        errors.print(f"[dim]{escape(hint)}[/]")
    return typer.Exit(2)


def _engine() -> tuple[Engine, Path]:
    settings = load_settings()
    engine = engine_from_settings(settings)
    init_db(engine)
    with engine.begin() as conn:
        registry.ensure_shipped_active(conn)
    return engine, settings.home / "models"


def _authority(conn: Connection, by: str, permission: str) -> str:
    """The role `by` acts in, if it holds `permission`; else a clear refusal."""
    user = users.get_user(conn, by)
    if user is None or user.disabled:
        raise _fail(f"{by!r} is not an enabled user", "name yourself with --by USER "
                    "(`wardwatch users list`)")  # fmt: skip
    if not roles.has_permission(user.role, permission):
        holders = ", ".join(sorted(roles.roles_with(permission)))
        raise _fail(f"{by} ({user.role}) may not {roles.PERMISSIONS[permission]}",
                    f"this needs a {holders}")  # fmt: skip
    return user.role


def _status(conn: Connection) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for scope, role, version, _ in registry.slots(conn):
        found.setdefault(version, []).append(f"{role} · {scope}")
    return found


@models_app.command("list")
def list_models() -> None:
    """Every registered version: where it serves (active or shadow, per scope), or not."""
    engine, _ = _engine()
    with engine.connect() as conn:
        status, entries = _status(conn), registry.list_models(conn)
    table = Table("version", "serving", "label", "threshold", "registered", "by")
    for e in entries:
        serving = ", ".join(status.get(e.version, [])) or ("retired" if e.retired_at else "—")
        table.add_row(e.version, serving, e.label, f"{e.threshold:.4f}",
                      f"{e.registered_at:%Y-%m-%d %H:%M}", e.registered_by)  # fmt: skip
    console.print(table)


@models_app.command("show")
def show(version: Annotated[str, typer.Argument(help="a version, or a unique prefix")]) -> None:
    """A version's card summary, lineage and history."""
    engine, _ = _engine()
    with engine.connect() as conn:
        try:
            entry = registry.get_model(conn, version)
        except registry.RegistryError as error:
            raise _fail(str(error)) from None
        events = [e for e in registry.history(conn) if e["version"] == entry.version]
        serving = _status(conn).get(entry.version, [])
    console.print(f"[bold]{entry.version}[/] {escape(entry.label)}  serving: "
                  f"{', '.join(serving) or 'no'}  artifact: {entry.directory}")  # fmt: skip
    console.print(f"intended use: {escape(str(entry.card.get('intended_use', '—')))}")
    console.print("lineage: " + escape(json.dumps(entry.lineage, indent=1, default=str)))
    for event in reversed(events):
        where = event["scope"] or ""
        console.print(f"  {event['at']:%Y-%m-%d %H:%M} {event['action']:<9} {where:<12} "
                      f"by {event['actor']}: {escape(event['reason'])}")  # fmt: skip


@models_app.command("register")
def register(
    directory: Annotated[Path, typer.Argument(help="a saved model (`wardwatch train --out`)")],
    by: By,
    label: Annotated[str, typer.Option(help="a short name people will recognise")] = "",
) -> None:
    """Copy a trained model into the registry, checksummed; it serves nowhere yet."""
    engine, store = _engine()
    with engine.begin() as conn:
        role = _authority(conn, by, "model.manage")
        try:
            entry = registry.register(conn, store, directory, by=by, role=role, label=label)
        except (registry.ArtifactError, OSError) as error:
            raise _fail(str(error), "give the directory `wardwatch train` wrote") from None
    console.print(f"registered {entry.version} ({entry.artifact})")


@models_app.command("shadow")
def shadow(version: str, by: By, scope: Scope = HOSPITAL, reason: Reason = "") -> None:
    """Score a version beside the active model: stored for comparison, never shown."""
    engine, _ = _engine()
    with engine.begin() as conn:
        role = _authority(conn, by, "model.manage")
        try:
            entry = registry.shadow(conn, version, by=by, role=role, scope=scope, reason=reason)
        except (registry.RegistryError, registry.ArtifactError) as error:
            raise _fail(str(error)) from None
    console.print(f"{entry.version} now runs in shadow for {scope}")


@models_app.command("unshadow")
def unshadow(version: str, by: By, scope: Scope = HOSPITAL, reason: Reason = "") -> None:
    """Stop a shadow run."""
    engine, _ = _engine()
    with engine.begin() as conn:
        role = _authority(conn, by, "model.manage")
        registry.unshadow(conn, version, by=by, role=role, scope=scope, reason=reason)
    console.print(f"{version} no longer runs in shadow for {scope}")


@models_app.command("promote")
def promote(
    version: str,
    by: By,
    reason: Reason,
    data: Annotated[Path | None, typer.Option(
        help="recent labelled PhysioNet-format data to check the gates on")] = None,
    scope: Scope = HOSPITAL,
    override: Annotated[str, typer.Option(
        help="promote despite failed gates: the reason (governance role only)")] = "",
) -> None:  # fmt: skip
    """Make a version the active model of a scope, if it passes the promotion gates.

    The gates (`[governance.gates]` in wardwatch.toml) compare it with the active model on
    `--data`: utility and AUROC non-inferior, calibration within bounds, no subgroup losing
    sensitivity, alert rate within bounds. A failure blocks with the figures; `--override`
    (with a reason, by the governance role) promotes anyway, on the record. Scoring switches
    at the next ward round, without a restart."""
    from wardwatch.model.gates_cli import gate_report

    engine, _ = _engine()
    with engine.begin() as conn:
        role = _authority(conn, by, "model.promote")
        report = gate_report(conn, version, data, scope, console)
        if report is not None and not report["passed"] and not override:
            raise _fail("the promotion gates failed (above); nothing changed",
                        "fix the model, or --override 'why' as the governance role")  # fmt: skip
        if report is None and not override:
            raise _fail("no --data to check the gates on; nothing changed",
                        "give recent labelled data with --data, or --override 'why'")  # fmt: skip
        if override and role != "auditor":
            raise _fail(f"{by} ({role}) may not override the promotion gates",
                        "an override needs the governance role (auditor)")  # fmt: skip
        detail = {"gates": report, "override": override or None}
        try:
            entry = registry.promote(conn, version, by=by, role=role, reason=reason,
                                     scope=scope, detail=detail)  # fmt: skip
        except (registry.RegistryError, registry.ArtifactError) as error:
            raise _fail(str(error), "the active model stays in service") from None
    console.print(f"[bold]{entry.version}[/] is now the active model of {scope}")


@models_app.command("rollback")
def rollback(by: By, reason: Reason, scope: Scope = HOSPITAL) -> None:
    """One step back: the model active before the last promotion serves again, from the
    next ward round."""
    engine, _ = _engine()
    with engine.begin() as conn:
        role = _authority(conn, by, "model.promote")
        try:
            entry = registry.rollback(conn, by=by, role=role, reason=reason, scope=scope)
        except (registry.RegistryError, registry.ArtifactError) as error:
            raise _fail(str(error), "the active model stays in service") from None
    console.print(f"rolled back: [bold]{entry.version}[/] is the active model of {scope}")


@models_app.command("retire")
def retire(version: str, by: By, reason: Reason) -> None:
    """Take a version out of eligibility (never the active one)."""
    engine, _ = _engine()
    with engine.begin() as conn:
        role = _authority(conn, by, "model.promote")
        try:
            entry = registry.retire(conn, version, by=by, role=role, reason=reason)
        except registry.RegistryError as error:
            raise _fail(str(error)) from None
    console.print(f"retired {entry.version}")


@models_app.command("compare")
def compare(
    first: Annotated[str, typer.Argument(help="usually the active model")],
    second: Annotated[str, typer.Argument(help="usually a shadow")],
    since: Annotated[datetime | None, typer.Option(help="only hours from this time (UTC)")] = None,
    out: Annotated[Path | None, typer.Option(help="also write the comparison as JSON")] = None,
) -> None:
    """Two models on the scores they stored for the same stays and hours: agreement, alert
    rates, and once outcomes are known, utility, AUROC and calibration side by side."""
    from wardwatch.model.compare import compare_models
    from wardwatch.model.gates_cli import print_comparison

    engine, _ = _engine()
    with engine.connect() as conn:
        try:
            a, b = registry.get_model(conn, first), registry.get_model(conn, second)
        except registry.RegistryError as error:
            raise _fail(str(error)) from None
        since_utc = since.replace(tzinfo=since.tzinfo or UTC) if since else None
        result = compare_models(conn, a.version, b.version, since_utc)
    print_comparison(result, console)
    if out is not None:
        out.write_text(json.dumps(result, indent=2, default=str))


@models_app.command("site-config")
def site_config(
    path: Annotated[Path, typer.Argument(help="a file written by `wardwatch calibrate-site`")],
    by: By,
    reason: Reason,
) -> None:
    """Make a site configuration (per-unit thresholds set from this hospital's own data) the
    one its model runs with: stored with its lineage, audited, applied from the next round."""
    from wardwatch.site.config import SiteConfig, SiteConfigError
    from wardwatch.site.registry import activate_site_config

    engine, _ = _engine()
    with engine.begin() as conn:
        role = _authority(conn, by, "model.promote")
        try:
            config = SiteConfig.load(path)
            new_id = activate_site_config(conn, config, by=by, role=role, reason=reason)
        except (SiteConfigError, registry.RegistryError, OSError) as error:
            raise _fail(str(error), "give a file written by `wardwatch calibrate-site` for a "
                        "registered model") from None  # fmt: skip
    units = ", ".join(f"{u} {t:.4f}" for u, t in config.thresholds.items())
    console.print(f"site configuration {new_id} active for {config.model_version}: {units}")


@models_app.command("history")
def history(limit: Annotated[int, typer.Option(help="newest events")] = 30) -> None:
    """The registry's events, newest first: registrations, promotions, rollbacks, shadows."""
    engine, _ = _engine()
    with engine.connect() as conn:
        events = registry.history(conn, limit)
    table = Table("when", "action", "scope", "version", "replaced", "by", "reason")
    for e in events:
        table.add_row(f"{e['at']:%Y-%m-%d %H:%M}", e["action"], e["scope"] or "", e["version"],
                      e["previous"] or "", e["actor"], e["reason"])  # fmt: skip
    console.print(table)
