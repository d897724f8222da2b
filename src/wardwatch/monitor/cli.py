"""`wardwatch monitor` and `wardwatch validate-site`: drift and local validation commands.

Registered by `cli.py` (`_register_governance`). The model stack is imported inside the
commands, so `wardwatch --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from typing import Any

    from sqlalchemy import Engine

    from wardwatch.model.risk import RiskModel
    from wardwatch.monitor.drift import DriftThresholds
    from wardwatch.monitor.notices import Webhook
    from wardwatch.monitor.reference import Profile
    from wardwatch.monitor.run import MonitorResult

monitor_app = typer.Typer(  # its manual is the callback's docstring
    invoke_without_command=True,
    no_args_is_help=False,
)
DATA_HINT = "give a directory of .psv files, one .psv file, or a .tar.gz of them"


def register(root: typer.Typer) -> None:
    root.add_typer(monitor_app, name="monitor")
    root.command("validate-site")(validate_site_command)


def _reference(path: Path | None) -> Profile:
    from wardwatch.cli import fail
    from wardwatch.monitor.reference import ProfileError, load_profile, load_shipped_reference

    try:
        return load_profile(path) if path else load_shipped_reference()
    except ProfileError as error:
        raise fail(str(error), "give a profile written by scripts/build_reference.py, or "
                   "leave --reference out to use the shipped one") from None  # fmt: skip


def _settings_or_fail(config: Path | None) -> tuple[DriftThresholds, Webhook | None]:
    from wardwatch.cli import fail
    from wardwatch.monitor.drift import load_thresholds
    from wardwatch.monitor.notices import webhook_from_settings

    try:
        return load_thresholds(config), webhook_from_settings(config)
    except (ValueError, OSError) as error:
        raise fail(str(error), "correct the [monitor] table of the settings file "
                   "(see `wardwatch monitor --help`)") from None  # fmt: skip


def _engine() -> Engine:
    from wardwatch.settings import load_settings
    from wardwatch.store import engine_from_settings, init_db

    engine = engine_from_settings(load_settings())
    init_db(engine)
    return engine


def _model(model_dir: Path | None) -> RiskModel:
    from wardwatch.cli import fail
    from wardwatch.model.artifact import ArtifactError, load_model, load_shipped_model

    try:
        return load_model(model_dir) if model_dir else load_shipped_model()
    except (ArtifactError, OSError) as error:
        raise fail(f"cannot load the model: {error}", "give a model directory written by "
                   "`wardwatch train`, or leave --model out") from None  # fmt: skip


def _check_data(data: Path) -> None:
    from wardwatch.cli import fail

    if not data.exists():
        raise fail(f"{data}: no such file or directory", DATA_HINT)


@monitor_app.callback()
def monitor_command(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(
            help="compare these PhysioNet files (directory, .psv or .tar.gz) instead "
            "of what the store received since the last run"
        ),
    ] = None,
    reference: Annotated[
        Path | None, typer.Option(help="a reference profile (default: the shipped one)")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="with --data: the model to score with (default: shipped)")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="settings file with a [monitor] table (default: settings)")
    ] = None,
) -> None:
    """Compare recent data with the model's training reference and raise operations notices.

    Without options, reads what the store received since the last run (observations of the
    stays that got new data, from their first new hour; the scores the ward rounds stored) and
    remembers how far it read, so the next run continues from there: run it from cron, e.g.
    hourly. With `--data`, compares a cohort of PhysioNet files on demand.

    Per measured variable: PSI and KS of the values, the change in how often it is measured,
    the median offset and a suspected unit confusion (°F sent as °C). For the model: drift of
    the risk distribution, of the alert rate and of the out-of-distribution share; with
    outcomes, calibration. A crossed threshold becomes an operations notice (stored, shown
    with `wardwatch monitor notices`, POSTed to the webhook if one is set) that says what was
    found and recommends a review. A notice still open is not raised again.

    Thresholds and the webhook live in the settings file:

        [monitor]
        value_psi = 0.25            # per-variable PSI
        measured_psi = 0.1          # PSI of measured / not measured
        alert_rate_ratio = 1.5      # either way
        webhook_url = "https://ops.example.org/hooks/wardwatch"

    (every key: `wardwatch.monitor.drift.DriftThresholds`). `WARDWATCH_MONITOR_WEBHOOK_URL`
    overrides the URL. Each run is recorded in the audit chain.
    """
    if ctx.invoked_subcommand is not None:
        return
    limits, webhook = _settings_or_fail(config)
    profile = _reference(reference)
    result = _run(data, profile, model, limits, webhook)
    _print_result(result)


def _run(
    data: Path | None,
    profile: Profile,
    model_dir: Path | None,
    limits: DriftThresholds,
    webhook: Webhook | None,
) -> MonitorResult | None:
    from rich.markup import escape

    from wardwatch.cli import console, fail
    from wardwatch.ingest.psv import PSVError
    from wardwatch.monitor.reference import ProfileError
    from wardwatch.monitor.run import monitor_files, monitor_store
    from wardwatch.store.engine import StoreError

    engine = _engine()
    try:
        with console.status("monitoring") as status:
            step = lambda text: status.update(f"[bold]monitor:[/] {escape(text)}")  # noqa: E731
            if data is None:
                result = monitor_store(engine, profile, limits, webhook=webhook, step=step)
            else:
                _check_data(data)
                result = monitor_files(engine, data, profile, _model(model_dir), limits,
                                       webhook=webhook, step=step)  # fmt: skip
    except (PSVError, ProfileError) as error:
        raise fail(escape(str(error)), DATA_HINT) from None
    except StoreError as error:
        raise fail(escape(str(error)), "check WARDWATCH_DATABASE_URL") from None
    if result is None:
        console.print("nothing new since the last monitor run: no observations or scores arrived")
    return result


def _print_result(result: MonitorResult | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    from wardwatch.cli import console

    if result is None:
        return
    report = result.report
    console.print(f"monitor run {result.run_id}: {report.patients:,} stays, {report.hours:,} "
                  f"patient-hours from {escape(result.source)}")  # fmt: skip
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if not report.findings:
        console.print("[green]no drift beyond the thresholds[/]")
        return
    table = Table(title="drift beyond the thresholds", show_lines=True)
    for column in ("kind", "subject", "finding", "recommended"):
        table.add_column(column)
    for f in report.findings:
        table.add_row(f.kind, f.subject, escape(f.message), escape(f.recommendation))
    console.print(table)
    new = len(result.notice_ids)
    console.print(f"{new} new operations notice{'s' * (new != 1)} "
                  f"({len(report.findings) - new} already open); list them with "
                  "[bold]wardwatch monitor notices[/]")  # fmt: skip
    if result.webhook:
        console.print(f"webhook: {escape(result.webhook)}")


@monitor_app.command("notices")
def notices_command(
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
) -> None:
    """List the operations notices nobody has acknowledged yet, newest first."""
    from rich.markup import escape
    from rich.table import Table

    from wardwatch.cli import console
    from wardwatch.monitor.notices import open_notices

    with _engine().connect() as conn:
        found = open_notices(conn, limit)
    if not found:
        console.print("[green]no open operations notices[/]")
        return
    table = Table(title="open operations notices", show_lines=True)
    for column in ("id", "raised", "kind", "subject", "finding", "recommended"):
        table.add_column(column)
    for n in found:
        table.add_row(str(n["id"]), f"{n['raised_at']:%Y-%m-%d %H:%M}", n["kind"], n["subject"],
                      escape(n["message"]), escape(n["recommendation"]))  # fmt: skip
    console.print(table)
    console.print("after review: [bold]wardwatch monitor acknowledge ID --by USER --note TEXT[/]")


@monitor_app.command("acknowledge")
def acknowledge_command(
    notice_id: Annotated[int, typer.Argument(help="the notice's id (wardwatch monitor notices)")],
    by: Annotated[str, typer.Option(help="who reviewed it (a user id)")],
    note: Annotated[str, typer.Option(help="what was decided")] = "",
) -> None:
    """Record that a notice was reviewed, by whom and with what decision (audited)."""
    from rich.markup import escape

    from wardwatch.cli import console, fail
    from wardwatch.monitor.notices import NoticeNotFound, acknowledge

    try:
        with _engine().begin() as conn:
            acknowledge(conn, notice_id, by, note)
    except NoticeNotFound as error:
        raise fail(str(error), "list the open ones with `wardwatch monitor notices`") from None
    except ValueError as error:
        raise fail(escape(str(error)), "nothing to do if it was already reviewed") from None
    console.print(f"notice {notice_id} acknowledged by {escape(by)}")


def validate_site_command(
    data: Annotated[
        Path | None,
        typer.Argument(
            help="the site's PhysioNet files (directory, .psv or .tar.gz); "
            "leave out to validate what is already in the store"
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="directory for the HTML and JSON report")] = Path(
        "site-validation"
    ),
    model: Annotated[Path | None, typer.Option(help="model directory (default: shipped)")] = None,
    reference: Annotated[
        Path | None, typer.Option(help="a reference profile (default: the shipped one)")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="settings file: its [alerts] policy and [monitor] limits (default: settings)"
        ),
    ] = None,
) -> None:
    """Validate the model on a site's own data before go-live: a report for the governance
    committee, with a verdict (go / go with changes / no-go) and the reasons.

    Without outcomes: how often this site measures each variable and where its values sit
    against the model's training patients (unit or calibration offsets such as temperature in
    °F or a systematic SpO2 shift are named), the share of hours out of the model's
    distribution, the risk per unit, and the alert burden the current per-unit thresholds
    would produce (alerts per 100 patient-days, share of patients alerted). With outcomes
    (SepsisLabel): also everything `wardwatch evaluate` reports, per unit and subgroup, with
    the utility-vs-threshold curve for this site.

    Writes site_validation.html and site_validation.json (and, with outcomes,
    evaluation.html/json) into --out. Exit code 0 whatever the verdict: read the report.
    """
    from rich.markup import escape

    from wardwatch.alerts.policy import load_policy_book
    from wardwatch.cli import console, fail
    from wardwatch.ingest.psv import PSVError
    from wardwatch.site.validate import SiteDataError, site_from_files, site_from_store
    from wardwatch.site.validate import validate_site as validate
    from wardwatch.site.validate_report import write_site_report

    limits, _ = _settings_or_fail(config)
    try:
        book = load_policy_book(config)
    except (ValueError, OSError) as error:
        raise fail(escape(str(error)), "correct the [alerts] table of the settings file") from None
    profile, chosen = _reference(reference), _model(model)
    try:
        with console.status("validating") as status:
            step = lambda text: status.update(f"[bold]validate-site:[/] {escape(text)}")  # noqa: E731
            if data is not None:
                _check_data(data)
                step(f"reading {data}")
            site = site_from_files(data) if data is not None else site_from_store(_engine())
            results = validate(site, chosen, profile, book, limits, step=step)
            html, json_path = write_site_report(results, out)
    except (PSVError, SiteDataError) as error:
        raise fail(escape(str(error)), DATA_HINT) from None
    _print_verdict(results, html, json_path)


def _print_verdict(results: dict[str, Any], html: Path, json_path: Path) -> None:
    from rich.markup import escape

    from wardwatch.cli import console

    decision = results["verdict"]["decision"]
    colour = {"go": "green", "go with changes": "yellow", "no-go": "red"}[decision]
    console.print(f"verdict: [bold {colour}]{decision}[/]")
    for reason in results["verdict"]["reasons"]:
        console.print(f"  · [{colour}]{reason['decision']}[/]: {escape(reason['finding'])}")
    console.print(f"report: {html}\n        {json_path}")
