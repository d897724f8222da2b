"""A few shipped PhysioNet sample patients, ingested through the real pipeline."""

from __future__ import annotations

import tarfile
from pathlib import Path

from wardwatch.demo import sample_patients
from wardwatch.ingest.files import ingest_path
from wardwatch.ingest.pipeline import Pipeline

# Two septic stays, two not; all have vital signs from their first hours.
SAMPLE_IDS = ("p000200", "p000265", "p000842", "p000872")
OLD_ID = "p999097"  # a copy of p000842 aged 97.31: ages over 89 must leave as 90


def sample_files(directory: Path, ids: tuple[str, ...] = SAMPLE_IDS) -> Path:
    """The chosen sample patients' .psv files, plus one patient older than 89."""
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sample_patients()) as archive:
        for member in archive:
            if Path(member.name).stem in ids:
                (directory / Path(member.name).name).write_bytes(
                    archive.extractfile(member).read()  # type: ignore[union-attr]
                )
    _aged_copy(directory / f"{ids[2]}.psv", directory / f"{OLD_ID}.psv", age="97.31")
    return directory


def _aged_copy(source: Path, target: Path, age: str) -> None:
    header, *rows = source.read_text().splitlines()
    at = header.split("|").index("Age")
    aged = []
    for row in rows:
        cells = row.split("|")
        cells[at] = age
        aged.append("|".join(cells))
    target.write_text("\n".join([header, *aged]) + "\n")


def ingest_samples(pipeline: Pipeline, directory: Path) -> list[str]:
    """Ingest the sample files; returns the patient ids."""
    files = sample_files(directory)
    summary = ingest_path(pipeline, files)
    assert summary.accepted > 0 and not summary.errors
    return sorted(p.stem for p in files.glob("*.psv"))
