"""The shipped model and the shipped sample (300 set-A patients), scored once per session."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

import wardwatch
from wardwatch.ingest.psv import LABEL, read_cohort
from wardwatch.model.artifact import load_shipped_model
from wardwatch.model.risk import RiskModel
from wardwatch.site.calibrate import SiteData

SAMPLE = Path(wardwatch.__file__).parent / "data" / "physionet_sample" / "setA_sample.tar.gz"


@pytest.fixture(scope="session")
def model() -> RiskModel:
    return load_shipped_model()


@pytest.fixture(scope="session")
def sample(model: RiskModel) -> SiteData:
    return SiteData.score(read_cohort(SAMPLE, as_stored=True), model)


@pytest.fixture(scope="session")
def unlabelled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's files as a site without labels would send them (no SepsisLabel)."""
    directory = tmp_path_factory.mktemp("site")
    with tarfile.open(SAMPLE) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith(".psv"):
                handle = archive.extractfile(member)
                assert handle is not None
                lines = handle.read().decode().splitlines()
                assert lines[0].endswith(f"|{LABEL}")
                kept = [line.rsplit("|", 1)[0] for line in lines]
                (directory / Path(member.name).name).write_text("\n".join(kept) + "\n")
    return directory
