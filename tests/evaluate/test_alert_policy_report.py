"""The alert policy's section of `wardwatch evaluate`: JSON, HTML and the command's table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.strategies import wide_frame
from typer.testing import CliRunner

import wardwatch
from wardwatch.alerts.burden import DEFINITIONS, VARIANTS, policy_variants
from wardwatch.alerts.policy import PolicyBook
from wardwatch.cli import app
from wardwatch.evaluate import Predictions, evaluate_cohort, write_report
from wardwatch.evaluate.report import render_html
from wardwatch.evaluate.run import evaluate_data
from wardwatch.model.artifact import load_shipped_model

SAMPLE = Path(wardwatch.__file__).parent / "data" / "physionet_sample" / "setA_sample.tar.gz"
PSV_DIR = Path(__file__).resolve().parents[1] / "data" / "psv"
TITLE = "Alert policy: what clinicians would see"


@pytest.fixture(scope="module")
def cohort() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(11)
    stays, people = {}, {}
    for i in range(8):
        septic, n = i % 3 == 0, int(rng.integers(20, 36))
        first = n - 10 if septic else n
        stays[f"p{i}"] = [
            {"HR": 90.0, "SBP": 85.0 if h % 7 == 3 else 120.0, "SepsisLabel": float(h >= first)}
            for h in range(n)
        ]
        people[f"p{i}"] = {"Age": 60.0, "Gender": i % 2, "Unit1": 1.0, "Unit2": 0.0}
    wide = wide_frame(stays, people)
    labels = wide["SepsisLabel"].to_numpy()
    risk = np.clip(0.02 + 0.1 * labels + rng.normal(0, 0.02, len(wide)), 0, 1)
    ood = rng.random(len(wide)) < 0.03
    return wide, pd.DataFrame({"risk": risk, "uncertainty": 0.01, "ood": ood})


@pytest.fixture(scope="module")
def results(cohort):
    wide, output = cohort
    policy = policy_variants(wide, output, PolicyBook(), 0.05)
    model = Predictions(output["risk"].to_numpy(), 0.05, note="toy")
    return evaluate_cohort(wide, {"toy": model}, alert_policy=policy)


def test_the_json_holds_every_variant_with_its_definitions(results, tmp_path):
    _, json_path = write_report(results, tmp_path)
    stored = json.loads(json_path.read_text())["alert_policy"]
    assert [v["name"] for v in stored["variants"]] == [name for name, _, _ in VARIANTS]
    assert stored["definitions"] == DEFINITIONS
    assert stored["threshold"] == 0.05
    assert set(stored["policies"]) == {"ICU", "ED", "ward"}
    for variant in stored["variants"]:
        for key in ("alerts_per_100_patient_days", "ppv_per_alert", "median_lead_hours"):
            assert key in variant


def test_the_page_shows_the_policy_table_and_is_rebuilt_from_the_json(results, tmp_path):
    html_path, json_path = write_report(results, tmp_path)
    page = html_path.read_text()
    assert f"<h2>{TITLE}</h2>" in page
    assert page.index(TITLE) < page.index("What the numbers mean")
    for name, _, _ in VARIANTS:
        assert name in page
    assert "Review flags / 100 pt-days" in page and "PPV per alert" in page
    assert render_html(json.loads(json_path.read_text())) == page


def test_without_a_policy_there_is_no_section(cohort):
    wide, output = cohort
    plain = evaluate_cohort(wide, {"toy": Predictions(output["risk"].to_numpy(), 0.05)})
    assert "alert_policy" not in plain
    assert TITLE not in render_html(plain)


def test_evaluate_data_replays_the_policy_with_the_models_own_output(tmp_path):
    results, _, _ = evaluate_data(SAMPLE, tmp_path, baselines=(), limit=30)
    policy = results["alert_policy"]
    # The default policy book's ICU threshold is the shipped model's own operating threshold.
    assert policy["threshold"] == pytest.approx(load_shipped_model().threshold, abs=1e-4)
    threshold_only, gated = policy["variants"][0], policy["variants"][1]
    assert threshold_only["review_flags"] == 0 and gated["review_flags"] >= 0
    assert results["models"]["wardwatch model"]["counts"]["patients"] == 30
    silent = PolicyBook.from_table({"ICU": {"threshold": 0.99}})
    quiet, _, _ = evaluate_data(SAMPLE, tmp_path, baselines=(), limit=30, policy_book=silent)
    assert all(v["alerts"] == 0 for v in quiet["alert_policy"]["variants"])
    off, _, _ = evaluate_data(SAMPLE, tmp_path, baselines=(), limit=5, alert_policy=False)
    assert "alert_policy" not in off


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("WARDWATCH_HOME", str(tmp_path))
    monkeypatch.setenv("WARDWATCH_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("COLUMNS", "200")
    return lambda *args: CliRunner().invoke(app, list(args))


def test_the_command_prints_the_policy_table(run, tmp_path):
    config = tmp_path / "policy.toml"
    config.write_text("[alerts.ICU]\nrealert_after_hours = 12\n")
    result = run("evaluate", "--data", str(PSV_DIR), "--out", str(tmp_path / "r"),
                 "--baseline", "qsofa", "--policy-config", str(config))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert TITLE in result.output and "reviews/100 pt-days" in result.output
    stored = json.loads((tmp_path / "r" / "evaluation.json").read_text())
    assert stored["alert_policy"]["policies"]["ICU"]["realert_after_hours"] == 12


def test_the_command_names_a_bad_policy_setting(run, tmp_path):
    config = tmp_path / "policy.toml"
    config.write_text("[alerts.ICU]\nrealert_after = 12\n")
    result = run("evaluate", "--data", str(PSV_DIR), "--policy-config", str(config))
    assert result.exit_code == 2
    assert "[alerts.ICU]" in result.output and "'realert_after'" in result.output
