"""`wardwatch demo`: a fresh SQLite ward, filled from the shipped samples through the real pipeline.

Everything it shows was ingested exactly as production data would be: the PhysioNet sample
patients (PSV), an HL7 v2 lab result and FHIR bundles, each normalized, gated and stored.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rich.console import Console

from wardwatch.ingest.pipeline import IngestSummary, Pipeline
from wardwatch.settings import Settings
from wardwatch.store import init_db, open_engine


def sample_dir() -> Path:
    """The shipped sample data (PhysioNet patients, HL7 v2 and FHIR examples)."""
    return Path(str(resources.files("wardwatch") / "data"))


def fresh_pipeline(home: Path) -> Pipeline:
    home.mkdir(parents=True, exist_ok=True)
    for stale in home.glob("wardwatch.db*"):
        stale.unlink()
    settings = Settings(home=home)
    engine = open_engine(settings.resolved_database_url)
    init_db(engine)
    return Pipeline.from_settings(engine, settings)


def ingest_samples(pipeline: Pipeline, console: Console) -> IngestSummary:
    from wardwatch.cli import ingest_with_progress

    total = IngestSummary()
    patients = sorted((sample_dir() / "physionet_sample").glob("*.tar.gz"))
    for path in [*patients, sample_dir() / "hl7v2", sample_dir() / "fhir"]:
        total.add(ingest_with_progress(pipeline, path, console))
    return total


def run_demo(home: Path, console: Console) -> None:
    from wardwatch.cli import print_summary
    from wardwatch.ward import show_ward

    console.rule("[bold]wardwatch demo")
    console.print(f"fresh database: {home / 'wardwatch.db'}  (demo data only, no real patients)")
    pipeline = fresh_pipeline(home)
    summary = ingest_samples(pipeline, console)
    print_summary(summary, title="shipped samples ingested")
    show_ward(pipeline.engine, console)
