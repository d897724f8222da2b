"""wardwatch: a sepsis early-warning system, put at the bedside safely.

Every command reads its configuration from the environment (WARDWATCH_HOME,
WARDWATCH_DATABASE_URL, WARDWATCH_LOCAL_CODE_MAP, ...) or from the file named by
WARDWATCH_CONFIG (default ./wardwatch.toml). With nothing set, data lives in an SQLite
database under ./var/.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wardwatch.ingest.pipeline import IngestSummary, Pipeline
from wardwatch.settings import Settings, load_settings
from wardwatch.store import engine_from_settings, init_db

if TYPE_CHECKING:  # imported lazily below: `wardwatch --help` must not load the model stack
    from wardwatch.alerts.watch import Round, Watcher
    from wardwatch.model.serving import ServingModels
    from wardwatch.replay import Tick

app = typer.Typer(
    help=__doc__,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Create and inspect the database.", no_args_is_help=True)
quarantine_app = typer.Typer(
    help="Look at what the quality gate kept out, and why.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(quarantine_app, name="quarantine")


def _register_security(root: typer.Typer) -> None:
    """Users, machine clients, consent, export and audit commands live beside the security
    code they drive."""
    from wardwatch.security.audit_cli import audit_app
    from wardwatch.security.clients_cli import cds_clients_app, tokens_app
    from wardwatch.security.export_cli import consent_app, export_command
    from wardwatch.security.users_cli import users_app

    root.add_typer(users_app, name="users")
    root.add_typer(tokens_app, name="tokens")
    root.add_typer(cds_clients_app, name="cds-clients")
    root.add_typer(consent_app, name="consent")
    root.add_typer(audit_app, name="audit")
    root.command("export")(export_command)


_register_security(app)


def _register_governance(root: typer.Typer) -> None:
    """Monitoring, fairness and site-adaptation commands live beside the code they drive."""
    from wardwatch.alerts.silent_cli import deployment_app
    from wardwatch.model.registry_cli import models_app
    from wardwatch.monitor.cli import register as register_monitor
    from wardwatch.monitor.fairness_cli import register as register_fairness
    from wardwatch.monitor.report_cli import register as register_report
    from wardwatch.site.calibrate_cli import register as register_calibrate_site

    register_fairness(root)
    register_calibrate_site(root)
    register_monitor(root)
    register_report(root)
    root.add_typer(models_app, name="models")
    root.add_typer(deployment_app, name="deployment")


_register_governance(app)
console = Console()
errors = Console(stderr=True)
SHOWN_CHANGES = 10  # alerts listed after a ward round; the rest are counted


def fail(message: str, hint: str = "") -> typer.Exit:
    """Print what was wrong and what to do, and return the exit to raise."""
    errors.print(f"[bold red]error:[/] {message}")
    if hint:
        errors.print(f"[yellow]what to do:[/] {hint}")
    return typer.Exit(code=2)


def _pipeline(settings: Settings | None = None) -> Pipeline:
    settings = settings or load_settings()
    engine = engine_from_settings(settings)
    init_db(engine)
    return Pipeline.from_settings(engine, settings)


@db_app.command("init")
def db_init() -> None:
    """Create the tables (safe to run again: existing data is never touched)."""
    settings = load_settings()
    init_db(engine_from_settings(settings))
    console.print(f"database ready: {settings.resolved_database_url}")


def print_summary(summary: IngestSummary, title: str = "ingest") -> None:
    table = Table(title=title, show_header=False)
    table.add_row("received", f"{summary.received:,}")
    table.add_row("accepted (stored)", f"[green]{summary.accepted:,}[/]")
    table.add_row("duplicates (already stored)", f"{summary.duplicates:,}")
    table.add_row("quarantined", f"[yellow]{summary.quarantined_total:,}[/]")
    for reason, n in summary.quarantined.most_common():
        table.add_row(f"  · {reason}", f"{n:,}")
    table.add_row("patients", f"{summary.patients:,}")
    if summary.messages:
        table.add_row("messages / documents", f"{summary.messages:,}")
    if summary.duplicate_messages:
        table.add_row("messages already received", f"{summary.duplicate_messages:,}")
    for resource, n in summary.ignored.most_common():
        table.add_row(f"ignored {resource} (not used)", f"{n:,}")
    console.print(table)
    for error in summary.errors[:20]:
        errors.print(f"[red]refused[/] {error}")
    if summary.quarantined_total:
        console.print("see why with: [bold]wardwatch quarantine list[/]")


def ingest_with_progress(
    pipeline: Pipeline, path: Path, out: Console | None = None
) -> IngestSummary:
    from wardwatch.ingest.files import ingest_path, work_units

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=out or console, transient=False) as bar:
        task = bar.add_task(f"ingest {path.name}", total=work_units(path))
        return ingest_path(pipeline, path, lambda n: bar.advance(task, n))


@app.command()
def ingest(
    path: Annotated[
        Path,
        typer.Argument(
            help="A .psv file, directory or .tar.gz; FHIR .json/"
            ".ndjson; HL7 v2 files; or a folder mixing them."
        ),
    ],
    score: Annotated[
        bool, typer.Option(help="score the stays that received data, and alert (a ward round)")
    ] = True,
) -> None:
    """Ingest files: parse, normalize to LOINC and canonical units, gate, store; then score.

    Every item ends in exactly one of: accepted, duplicate (already stored), or quarantined
    with a reason. Ingesting the same files again stores nothing twice. Afterwards a ward
    round scores every stay that received data and applies the alert policy (`--no-score`
    leaves that to `wardwatch score` or a running server).
    """
    from wardwatch.ingest.files import IngestError

    pipeline = _pipeline()
    try:
        summary = ingest_with_progress(pipeline, path)
    except IngestError as error:
        raise fail(
            str(error), "check the path; `wardwatch ingest --help` lists what it reads"
        ) from error
    print_summary(summary)
    if score and summary.accepted:
        with console.status("scoring the stays that received data…"):
            done = _watcher(pipeline).round_now()
        _print_round(done)


@quarantine_app.command("list")
def quarantine_list(
    reason: Annotated[str | None, typer.Option(help="only this reason code")] = None,
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 50,
) -> None:
    """Show quarantined items, newest first, with the reason each was kept out."""
    from wardwatch.store.reads import quarantine_counts, quarantine_items

    pipeline = _pipeline()
    with pipeline.engine.connect() as conn:
        counts = quarantine_counts(conn)
        items = quarantine_items(conn, reason, limit)
    if not counts:
        console.print("quarantine is empty")
        return
    console.print("by reason: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    table = Table("received", "source", "id", "reason", "payload", show_lines=True)
    for item in items:
        payload = str(item["payload"])
        table.add_row(f"{item['received_at']:%Y-%m-%d %H:%M}", str(item["source"]),
                      str(item["source_id"]), str(item["reason"]),
                      payload[:160] + ("…" if len(payload) > 160 else ""))  # fmt: skip
    console.print(table)


@app.command()
def mllp(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (2575 is the HL7 convention)")] = 2575,
    scoring: Annotated[
        bool, typer.Option(help="score stays and raise alerts as results arrive")
    ] = True,
    tls_cert: Annotated[
        Path | None, typer.Option(help="serve TLS with this certificate (PEM, chain after it)")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="the certificate's private key (PEM, unencrypted)")
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(help="require client certificates signed by this CA (PEM): mutual TLS"),
    ] = None,
) -> None:
    """Listen for HL7 v2 ORU^R01 results over MLLP.

    Each message is acknowledged AA only after it is committed to the database; a message
    that cannot be used gets AE or AR with the reason, and is kept in quarantine. A resend
    (same MSH-10) is acknowledged and not stored twice. With scoring on (the default), ward
    rounds run in the background: a stay with new results is scored within seconds of the
    ACK, and every stay on the ward at least every 15 minutes.

    With `--tls-cert` and `--tls-key` the listener speaks TLS (1.2 or later) only; add
    `--tls-client-ca` to accept only senders whose certificate that CA signed (mutual TLS,
    as interface engines are usually connected). Without TLS, keep it on a trusted network.
    """
    from wardwatch.ingest import mllp_tls
    from wardwatch.ingest.listener import hl7_handler
    from wardwatch.ingest.mllp import run_forever

    try:  # before anything starts: a bad certificate is found at once, not at the first sender
        context = mllp_tls.from_options(tls_cert, tls_key, tls_client_ca)
    except mllp_tls.TLSSetupError as error:
        raise fail(str(error), mllp_tls.HINT.format(command="mllp")) from None
    if context is None and not mllp_tls.is_loopback(host):
        errors.print(f"[yellow]note:[/] HL7 v2 over plain TCP on {host}: results cross the "
                     "network unencrypted; use --tls-cert/--tls-key or a VPN")  # fmt: skip
    pipeline = _pipeline()
    watcher = _watcher(pipeline).start() if scoring else None
    transport = "MLLP" if context is None else "MLLP over TLS"
    if tls_client_ca is not None:
        transport += " (client certificates required)"
    console.print(f"listening for HL7 v2 over {transport} on {host}:{port} (Ctrl-C to stop)")
    try:
        run_forever(host, port, hl7_handler(pipeline), ssl=context)
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        if watcher is not None:
            watcher.stop()


def _serving(pipeline: Pipeline) -> ServingModels:
    """The registry's models in service (the shipped model made active on a fresh store)."""
    from wardwatch.model.serving import ServingModels

    serving = ServingModels.of(pipeline.engine)
    serving.on_problem = lambda message: errors.print(f"[bold red]model registry:[/] {message}")
    return serving


def _watcher(pipeline: Pipeline) -> Watcher:
    from wardwatch.alerts.policy import load_policy_book
    from wardwatch.alerts.watch import Watcher

    def report(error: Exception) -> None:
        errors.print(f"[bold red]scoring failed, retrying:[/] {error}")

    return Watcher(pipeline.engine, _serving(pipeline), load_policy_book(), on_error=report)


@app.command()
def score() -> None:
    """Run one ward round now: score every stay with new data or on the ward, and alert.

    The listener and the web server do this by themselves; run it after a bulk
    `wardwatch ingest`, or from a scheduler. Patients who opted out are never scored.
    """
    watcher = _watcher(_pipeline())
    with console.status("scoring…"):
        done = watcher.round_now()
    _print_round(done)


def _print_round(done: Round) -> None:
    from collections import Counter

    console.print(f"ward round at {done.at:%Y-%m-%d %H:%M} UTC: {len(done.scored)} stays scored")
    for reason, count in Counter(done.scored.skipped.values()).most_common():
        console.print(f"  not scored ({count}): {reason}")
    for action, count in Counter(c.action.value for c in done.changes).most_common():
        console.print(f"  {action}: {count}")
    for change in done.changes[:SHOWN_CHANGES]:
        console.print(f"  {change.action.value} {change.encounter_id}: {change.reasons[0]}")
    if len(done.changes) > SHOWN_CHANGES:
        console.print(f"  … and {len(done.changes) - SHOWN_CHANGES} more: `wardwatch alerts`")


@app.command()
def replay(
    data: Annotated[Path, typer.Argument(help="PhysioNet .psv files: a directory or .tar.gz")],
    speed: Annotated[
        str, typer.Option(help="3600x = one patient-hour per second; max = no waiting")
    ] = "3600x",
    stagger: Annotated[float, typer.Option(help="hours between two admissions")] = 1.0,
    limit: Annotated[int | None, typer.Option(help="only the first N patients")] = None,
) -> None:
    """Replay past ICU stays through the live pipeline, in accelerated time.

    Each stay is admitted in turn (one every `--stagger` hours) on a timeline that ends
    now; then the ward clock advances an hour per tick: the hour's measurements are ingested
    as an interface would send them (normalize, quality gate, store), every stay on the ward
    is scored, and the alert policy opens, suppresses or resumes alerts. What you see on the
    worklist is what the system would have done on these patients. Scores are exactly those
    of `wardwatch predict-psv` for the same files (tested).

    Replays into the configured database (WARDWATCH_HOME or WARDWATCH_DATABASE_URL); use a
    separate one for a replay of real past data.
    """
    from wardwatch.alerts.policy import load_policy_book
    from wardwatch.replay import Replay, ReplayError, load_replay_cohort, parse_speed, plan_replay

    try:
        factor = parse_speed(speed)
        plan = plan_replay(load_replay_cohort(data, limit), stagger_hours=stagger)
    except ReplayError as error:
        raise fail(str(error), "give a directory or .tar.gz of PhysioNet .psv files") from None
    pipeline = _pipeline()
    runner = Replay(pipeline, _serving(pipeline), plan, speed=factor, book=load_policy_book())
    columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[note]}"))  # fmt: skip
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("replay", total=plan.hours + 1, note="")

        def advance(tick: Tick) -> None:
            note = f"{tick.at:%d %b %H:%M} · {tick.scored} on the ward"
            bar.update(task, advance=1, note=note)

        summary = runner.run(advance)
    console.print(
        f"replayed {summary.ticks} hours of {summary.stays} stays: "
        f"{summary.ingest.accepted:,} measurements stored "
        f"({summary.ingest.quarantined_total} quarantined), {summary.scores:,} scores, "
        f"{summary.alerts} sepsis alerts, {summary.reviews} needs-human-review flags"
    )


@app.command()
def alerts() -> None:
    """List the open and paused alerts, newest first."""
    from wardwatch.alerts.records import open_alerts

    with _pipeline().engine.connect() as conn:
        found = open_alerts(conn)
    if not found:
        console.print("no open or paused alerts")
        return
    table = Table("alert", "patient", "kind", "state", "opened", "risk", "why")
    for a in found:
        risk = "" if a.risk is None else f"{a.risk:.1%}"
        why = a.reasons[0] if a.reasons else ""
        opened = f"{a.opened_at:%d %b %H:%M}"
        table.add_row(str(a.alert_id), a.patient_id, a.kind.value, a.state.value, opened, risk, why)
    console.print(table)


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="labelled PhysioNet .psv directory or .tar.gz")],
    out: Annotated[Path, typer.Option(help="where the HTML and JSON reports go")] = Path(
        "var/evaluation"
    ),
    model: Annotated[Path | None, typer.Option(help="model directory (default: shipped)")] = None,
    baseline: Annotated[
        list[str] | None, typer.Option(help="rule baselines: qsofa, sirs, news2, sofa (repeat)")
    ] = None,
    no_model: Annotated[bool, typer.Option(help="evaluate only the baselines")] = False,
    limit: Annotated[int | None, typer.Option(help="only the first N patients")] = None,
    alert_policy: Annotated[
        bool, typer.Option(help="replay the alert policy over the cohort (needs the model)")
    ] = True,
    policy_config: Annotated[
        Path | None,
        typer.Option(help="TOML file whose [alerts] table sets the policy (default: settings)"),
    ] = None,
) -> None:
    """Evaluate the model and the bedside rules side by side on labelled patients.

    Reports the PhysioNet 2019 normalized utility, hourly AUROC/AUPRC, patient-level
    sensitivity and PPV at the operating threshold, alerts per 100 patient-days, median lead
    time, calibration, and all of it per sex, age band and ICU unit, as HTML and JSON. With
    the model, also the alert policy's burden: alerts and review flags per 100 patient-days,
    sensitivity, PPV per alert and lead time, with each policy switch on and off.
    """
    from rich.markup import escape

    from wardwatch.alerts.policy import PolicyBook, load_policy_book
    from wardwatch.evaluate.run import evaluate_data

    chosen = tuple(baseline) if baseline else ("qsofa", "sirs", "news2", "sofa")
    try:
        book = PolicyBook.load(policy_config) if policy_config else load_policy_book()
    except (ValueError, OSError) as error:
        raise fail(escape(str(error)), "fix the alerts table of the settings file") from error
    try:
        with console.status("scoring and evaluating…"):
            results, html, json_path = evaluate_data(
                data, out, model_dir=model, baselines=chosen, with_model=not no_model,
                limit=limit, alert_policy=alert_policy, policy_book=book,
            )  # fmt: skip
    except (ValueError, FileNotFoundError) as error:
        raise fail(
            str(error), "give --data a directory or .tar.gz of labelled .psv files"
        ) from error
    table = Table("model", "utility", "AUROC", "AUPRC", "sens.", "PPV", "alerts/100 pt-days",
                  "median lead h", title=f"{results['cohort']['patients']:,} patients")  # fmt: skip
    for row in results["headline"]:
        cells = [row[k] for k in ("utility", "auroc", "auprc", "sensitivity", "ppv",
                                  "alerts_per_100_patient_days", "median_lead_hours")]  # fmt: skip
        table.add_row(row["name"], *("–" if c is None else f"{c:.3f}" for c in cells))
    console.print(table)
    if "alert_policy" in results:
        policy = Table("policy", "alerts/100 pt-days", "reviews/100 pt-days", "sens.",
                       "PPV/alert", "median lead h",
                       title="Alert policy: what clinicians would see")  # fmt: skip
        for row in results["alert_policy"]["variants"]:
            cells = [row[k] for k in ("alerts_per_100_patient_days",
                                      "review_flags_per_100_patient_days", "sensitivity",
                                      "ppv_per_alert", "median_lead_hours")]  # fmt: skip
            policy.add_row(row["name"], *("–" if c is None else f"{c:.3f}" for c in cells))
        console.print(policy)
    console.print(f"report: {html}\nfigures: {json_path}")


@app.command()
def train(
    data: Annotated[
        Path,
        typer.Argument(help="labelled PhysioNet 2019 .psv files: a directory or .tar.gz"),
    ],
    out: Annotated[Path, typer.Option(help="new or empty directory for the model artifact")],
    transfer: Annotated[
        bool, typer.Option(help="also run the Unit1 -> Unit2 transfer experiment")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="only the first N patients")] = None,
    members: Annotated[
        int | None, typer.Option(help="ensemble members (default 5; fewer is faster)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (default 2019)")] = None,
    replace: Annotated[
        bool, typer.Option(help="overwrite the model artifact already in --out")
    ] = False,
) -> None:
    """Train a sepsis risk model on labelled patients and save it as a model artifact.

    Reads the files as the live store would hold them (values the quality gate rejects as
    implausible are blanked), splits patients by a hash of their id (70 % train, 15 %
    calibration, 15 % test), trains a bagged LightGBM ensemble, calibrates it and sets the
    alert threshold on calibration patients, and validates it on test patients it never
    saw. The same data and seed give the same trees, calibration and threshold. On all of
    PhysioNet 2019 set A (20,336 patients) it takes about 4 minutes on 2 cores;
    `--transfer` adds four one-member models; `--limit` and `--members` make a quick trial.

    `--out` receives the model, its card (`card.md` to read, `card.json`: intended use,
    population, test-split figures overall and per subgroup, limitations, and lineage: data
    hash, code commit, libraries, parameters, split rule) and `figures.json`.

    The new model is **not active**: nothing scores patients with it until it is registered
    (`wardwatch models register DIR --by USER`), run in shadow (`wardwatch models shadow`)
    and promoted through the gates (`wardwatch models promote`). Offline, use it with
    `wardwatch evaluate --data DATA --model DIR` or `wardwatch predict-psv IN OUT --model DIR`.
    """
    from rich.progress import SpinnerColumn

    from wardwatch.model.training_run import TrainingError, train_model

    columns = (SpinnerColumn(finished_text="[green]✓[/]"), TextColumn("{task.description}"),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as bar:

        def phase(message: str) -> None:
            for task in bar.tasks:
                bar.update(task.id, total=1, completed=1)
            if message:
                bar.add_task(message, total=None)

        try:
            result = train_model(
                data, out, transfer=transfer, progress=phase, limit=limit, n_members=members,
                seed=seed, replace=replace,
            )  # fmt: skip
        except TrainingError as error:
            raise fail(str(error), error.hint) from error
        phase("")
    split, test = result.report["split"], result.figures
    table = Table(title=f"model {result.version}", show_header=False)
    for name, counts in (*split.items(), ("test", test["counts"])):
        table.add_row(f"{name.replace('_', ' ')} patients (septic)",
                      f"{counts['patients']:,} ({counts['septic_patients']:,})")  # fmt: skip
    table.add_row("alert threshold", f"{result.model.threshold:.4f}")
    for label, key in (("test AUROC", "auroc"), ("test utility", "utility"),
                       ("test sensitivity", "sensitivity"), ("test PPV", "ppv"),
                       ("alerts / 100 patient-days", "alerts_per_100_patient_days")):  # fmt: skip
        table.add_row(label, "–" if test.get(key) is None else f"{test[key]:.3f}")
    console.print(table)
    for warning in result.warnings:
        errors.print(f"[yellow]warning:[/] {warning}")
    console.print(f"model card: {result.out_dir / 'card.md'}")
    console.print(f"[bold]not active[/]: nothing scores patients with it until it is promoted; "
                  f"try it with `wardwatch evaluate --data DATA --model {result.out_dir}` or "
                  f"`wardwatch predict-psv IN OUT --model {result.out_dir}`")  # fmt: skip


@app.command("predict-psv")
def predict_psv_command(
    in_dir: Annotated[Path, typer.Argument(help="directory (or .tar.gz) of .psv patient files")],
    out_dir: Annotated[Path, typer.Argument(help="where one prediction file per patient goes")],
    model: Annotated[Path | None, typer.Option(help="model directory (default: shipped)")] = None,
    site_config: Annotated[
        Path | None,
        typer.Option(
            help="a site configuration from `wardwatch calibrate-site`: its per-unit "
            "thresholds (and prior shift) decide PredictedLabel"
        ),
    ] = None,
) -> None:
    """Write PhysioNet 2019 challenge predictions: `PredictedProbability|PredictedLabel`
    per hour, each hour computed from that hour and earlier ones only, so anyone can score
    wardwatch with the official evaluation code on data it never saw. With `--site-config`,
    each stay's unit threshold of that configuration decides the label (and a prior shift in
    it adjusts the probability); it must have been set for the same model."""
    from rich.markup import escape

    from wardwatch.ingest.psv import count_patient_files
    from wardwatch.model.artifact import load_model, load_shipped_model
    from wardwatch.model.predict import predict_psv
    from wardwatch.site.config import SiteConfig, SiteConfigError

    chosen = load_model(model) if model else None
    site = None
    if site_config is not None:
        try:
            site = SiteConfig.load(site_config)
            chosen = chosen or load_shipped_model()
            site.check_model(chosen.version)
        except SiteConfigError as error:
            raise fail(escape(str(error)), "give a file written by `wardwatch calibrate-site` "
                       "for this model") from None  # fmt: skip
    columns = (TextColumn("[bold]predict"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("predict", total=count_patient_files(in_dir))
        written = predict_psv(
            in_dir, out_dir, chosen, progress=lambda done, _t: bar.update(task, completed=done),
            site=site,
        )  # fmt: skip
    console.print(f"wrote {written:,} prediction files to {out_dir}")


@app.command()
def demo(
    home: Annotated[Path, typer.Option(help="where the demo's database lives")] = Path("var/demo"),
    port: Annotated[int, typer.Option(help="port of the web app on 127.0.0.1")] = 8000,
    serve: Annotated[bool, typer.Option(help="serve the web app (off: terminal view only)")] = True,
) -> None:
    """The demo: a fresh SQLite ward, filled and scored by the real pipeline, on the web.

    Ingests the shipped sample HL7 v2 and FHIR messages, then replays the shipped sample ICU
    patients (PhysioNet 2019, test-split patients the model never saw) through ingest,
    scoring and the alert policy: 72 hours at full speed, then one patient-hour a second
    while the web app serves the worklist and patient pages on http://127.0.0.1:8000/.
    Demo data only; the demo sign-in has no passwords.
    """
    from wardwatch.demo import run_demo

    os.environ["WARDWATCH_HOME"] = str(home)
    os.environ.pop("WARDWATCH_DATABASE_URL", None)
    run_demo(home, console, serve=serve, port=port)


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    scoring: Annotated[bool, typer.Option(help="run ward rounds in the background")] = True,
    tls_cert: Annotated[
        Path | None, typer.Option(help="serve HTTPS with this certificate (PEM, chain after it)")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="the certificate's private key (PEM, unencrypted)")
    ] = None,
) -> None:
    """Serve the web app: worklist, patient pages, JSON API, CDS Hooks and FHIR out.

    Reads the configured database (WARDWATCH_HOME or WARDWATCH_DATABASE_URL) with the shipped
    model and the alert policy of the settings file. With scoring on, stays with new data are
    scored and alerted within seconds, and every stay on the ward every 15 minutes.

    Session cookies are `Secure`: browsers send them over HTTPS, and over plain HTTP only to
    localhost. To serve other machines, give `--tls-cert` and `--tls-key`, or listen on
    127.0.0.1 behind a reverse proxy that terminates TLS.
    """
    import uvicorn

    from wardwatch.alerts.policy import load_policy_book
    from wardwatch.ingest import mllp_tls
    from wardwatch.web.app import create_app
    from wardwatch.web.deps import Services

    try:  # uvicorn would load the pair only after the model, with a traceback: check it first
        tls = mllp_tls.from_options(tls_cert, tls_key) is not None
    except mllp_tls.TLSSetupError as error:
        raise fail(str(error), mllp_tls.HINT.format(command="serve")) from None
    if not tls and not mllp_tls.is_loopback(host):
        errors.print(
            f"[bold yellow]WARNING:[/] serving plain HTTP on {host}. Session cookies are Secure, "
            "so browsers will not send them over plain HTTP except to localhost: nobody can "
            "sign in from another machine, and tokens cross the network readable. Put TLS "
            "here (--tls-cert, --tls-key) or in a reverse proxy in front (and listen on "
            "127.0.0.1)."
        )
    pipeline = _pipeline()
    watcher = _watcher(pipeline).start() if scoring else None
    models = watcher.model if watcher is not None else _serving(pipeline)
    services = Services(pipeline.engine, models, load_policy_book(), pipeline)
    console.print(f"serving on http{'s' if tls else ''}://{host}:{port}/ (Ctrl-C to stop)")
    try:
        uvicorn.run(create_app(services), host=host, port=port, log_level="warning",
                    ssl_certfile=tls_cert, ssl_keyfile=tls_key)  # fmt: skip
    finally:
        if watcher is not None:
            watcher.stop()


def main() -> None:  # pragma: no cover - console-script shim
    app()
