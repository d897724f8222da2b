"""`wardwatch demo`: a fresh SQLite ward, filled by the real pipeline from the shipped samples.

Everything it shows went through the path production data takes: the sample HL7 v2 lab result
and FHIR bundles are ingested as an interface would send them, and the PhysioNet sample
patients are *replayed* — admitted one by one on a timeline that ends now, their hours
arriving through normalize → quality gate → store → score → alert policy — so the ward has a
census, alerts open as risk rises, and the clock is the replay's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from wardwatch.ingest.pipeline import IngestSummary, Pipeline
from wardwatch.model.serving import ServingModels
from wardwatch.replay import Replay, ReplaySummary, Tick, load_replay_cohort, plan_replay
from wardwatch.settings import Settings
from wardwatch.store import init_db, open_engine

# One admission an hour fills the ward to about 40 beds (the sample's stays last ~40 h);
# 72 replayed hours before the screen opens make the census and the alerts realistic.
STAGGER_HOURS = 1.0
WARM_UP_HOURS = 72
REPLAY_SPEED = 3600.0


@dataclass(frozen=True)
class DemoWard:
    """A demo ward part-way through its replay, ready to go on ticking."""

    pipeline: Pipeline
    replay: Replay
    next_hour: int
    warm_up: ReplaySummary


def sample_dir() -> Path:
    """The shipped sample data (PhysioNet patients, HL7 v2 and FHIR examples)."""
    return Path(str(resources.files("wardwatch") / "data"))


def sample_patients() -> Path:
    return sample_dir() / "physionet_sample" / "setA_sample.tar.gz"


def fresh_pipeline(home: Path) -> Pipeline:
    home.mkdir(parents=True, exist_ok=True)
    for stale in home.glob("wardwatch.db*"):
        stale.unlink()
    settings = Settings(home=home)
    engine = open_engine(settings.resolved_database_url)
    init_db(engine)
    return Pipeline.from_settings(engine, settings)


def ingest_messages(pipeline: Pipeline, console: Console) -> IngestSummary:
    """The sample HL7 v2 and FHIR messages, through the same ingest as production."""
    from wardwatch.cli import ingest_with_progress

    total = IngestSummary()
    for path in (sample_dir() / "hl7v2", sample_dir() / "fhir"):
        total.add(ingest_with_progress(pipeline, path, console))
    return total


def start_ward(
    pipeline: Pipeline, console: Console, warm_up_hours: int = WARM_UP_HOURS
) -> DemoWard:
    """Plan the replay of the sample patients and play its first hours at full speed."""
    cohort = load_replay_cohort(sample_patients())
    # The registry's models in service: a promotion or rollback shows in the running demo.
    models = ServingModels.of(pipeline.engine)
    replay = Replay(pipeline, models, plan_replay(cohort, stagger_hours=STAGGER_HOURS))
    with Progress(TextColumn("replaying the first hours"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[note]}"), console=console) as bar:  # fmt: skip
        task = bar.add_task("replay", total=warm_up_hours + 1, note="")

        def advance(tick: Tick) -> None:
            bar.update(task, advance=1, note=f"{tick.at:%d %b %H:%M}, {tick.scored} on the ward")

        summary = replay.run(advance, last=warm_up_hours)
    return DemoWard(pipeline, replay, warm_up_hours + 1, summary)


def run_demo(home: Path, console: Console, *, serve: bool = True, port: int = 8000) -> None:
    from wardwatch.cli import print_summary
    from wardwatch.ward import show_ward

    console.rule("[bold]wardwatch demo")
    console.print(f"fresh database: {home / 'wardwatch.db'}  (demo data only, no real patients)")
    pipeline = fresh_pipeline(home)
    print_summary(ingest_messages(pipeline, console), title="sample HL7 v2 and FHIR ingested")
    ward = start_ward(pipeline, console)
    console.print(
        f"replayed {ward.warm_up.ticks} hours: {ward.warm_up.stays} admissions, "
        f"{ward.warm_up.ingest.accepted:,} measurements stored, {ward.warm_up.scores:,} scores, "
        f"{ward.warm_up.alerts} sepsis alerts and {ward.warm_up.reviews} needs-review flags"
    )
    show_ward(pipeline.engine, console)
    if serve:
        serve_ward(ward, console, port)


DEMO_BANNER = "Demo: sample patients from PhysioNet, demo accounts — never for real patients"


def serve_ward(ward: DemoWard, console: Console, port: int) -> None:
    """The web app on the demo ward, while the replay goes on at one patient-hour a second."""
    import uvicorn

    from wardwatch.security.demo_users import create_demo_users, format_demo_credentials
    from wardwatch.web.app import create_app
    from wardwatch.web.deps import Services

    credentials = create_demo_users(ward.pipeline.engine)

    ward.replay.speed = REPLAY_SPEED
    ticking = threading.Thread(
        target=ward.replay.run, kwargs={"first": ward.next_hour}, name="replay", daemon=True
    )
    ticking.start()
    services = Services(ward.pipeline.engine, ward.replay.model, ward.replay.book, ward.pipeline)
    console.rule("[bold]the ward is live")
    console.print(format_demo_credentials(credentials), markup=False, highlight=False)
    console.print(
        "Sign in with a password and the 6-digit code of its TOTP secret: add the "
        "secret to an authenticator app, or run `oathtool --totp -b SECRET`."
    )
    console.print(f"open [bold]http://localhost:{port}/[/] — the replay goes on at "
                  f"{REPLAY_SPEED:.0f}x (one patient-hour a second). Ctrl-C stops.")  # fmt: skip
    app = create_app(services, banner=DEMO_BANNER)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
