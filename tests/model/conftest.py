"""Tiny models trained on the shipped sample (300 held-out set-A patients), once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import wardwatch
from wardwatch.features import build_features
from wardwatch.ingest.psv import read_cohort
from wardwatch.model.split import assign_split
from wardwatch.model.train import SepsisModelTrainer

SAMPLE = Path(wardwatch.__file__).parent / "data" / "physionet_sample" / "setA_sample.tar.gz"
TEST_SALT = "wardwatch-tests-v1"  # splits the sample itself into train / calibration / test


def tiny_trainer(**overrides: Any) -> SepsisModelTrainer:
    params: dict[str, Any] = dict(
        n_members=2, max_rounds=25, early_stopping_rounds=10, min_data_in_leaf=20,
        num_threads=1, split_salt=TEST_SALT,
    )  # fmt: skip
    return SepsisModelTrainer(**{**params, **overrides})


@pytest.fixture(scope="session")
def make_trainer() -> Any:
    return tiny_trainer


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def sample_wide() -> pd.DataFrame:
    return read_cohort(SAMPLE)


@pytest.fixture(scope="session")
def sample_features(sample_wide: pd.DataFrame) -> pd.DataFrame:
    return build_features(sample_wide)


@pytest.fixture(scope="session")
def trained(sample_wide: pd.DataFrame, sample_features: pd.DataFrame) -> SepsisModelTrainer:
    return tiny_trainer().fit(
        sample_features, sample_wide["SepsisLabel"], sample_wide["patient_id"]
    )


@pytest.fixture(scope="session")
def held_out(sample_wide: pd.DataFrame) -> pd.Series:
    """Rows of the sample's own test split: never seen by the tiny models."""
    return pd.Series(
        assign_split(sample_wide["patient_id"], TEST_SALT) == "test", sample_wide.index
    )
