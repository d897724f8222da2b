from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from tests.strategies import wide_frame

from wardwatch.evaluate import Predictions, evaluate_cohort, write_report
from wardwatch.evaluate.report import render_html
from wardwatch.scores import BASELINES


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


@pytest.fixture(scope="module")
def cohort():
    rng = np.random.default_rng(7)
    stays, people = {}, {}
    for i in range(14):
        hours, septic = int(rng.integers(20, 40)), i % 3 == 0
        first = int(rng.integers(2, hours)) if septic else hours
        stays[f"p{i:02d}"] = [
            {"HR": float(rng.normal(105 if septic and h >= first - 8 else 80, 8)),
             "Resp": float(rng.normal(20, 4)), "SBP": float(rng.normal(115, 15)),
             "Temp": float(rng.normal(37.2, 0.7)), "SepsisLabel": float(h >= first)}
            for h in range(hours)
        ]  # fmt: skip
        people[f"p{i:02d}"] = {"Gender": i % 2, "Age": 30.0 + 4 * i, "Unit1": i % 2, "Unit2": 0}
    return wide_frame(stays, people)


@pytest.fixture(scope="module")
def results(cohort):
    model_risk = np.clip(cohort["HR"].to_numpy() / 150, 0, 1)
    predictions = {
        "toy model": Predictions(model_risk, 0.65, note="heart rate / 150, for the test"),
        "news2": BASELINES["news2"].predictions(cohort),
        "qsofa": BASELINES["qsofa"].predictions(cohort),
    }
    return evaluate_cohort(cohort, predictions, small_cell=10)


@pytest.fixture(scope="module")
def page(results):
    return render_html(results)


def test_models_and_baselines_side_by_side(results):
    assert [r["name"] for r in results["headline"]] == ["toy model", "news2", "qsofa"]
    assert [r["kind"] for r in results["headline"]] == ["model", "baseline", "baseline"]
    assert results["cohort"]["patients"] == 14 and results["cohort"]["septic_patients"] == 5
    for figure in ("roc", "utility_vs_threshold"):
        assert set(results["figures"][figure]) == {"toy model", "news2", "qsofa"}
    assert set(results["figures"]["reliability"]) == {"toy model"}  # points are no probability
    assert set(results["figures"]["lead_time_histogram"]["patients"]) == {
        "toy model", "news2", "qsofa",
    }  # fmt: skip
    assert "curves" not in results["models"]["news2"]


def test_the_report_files(results, page, tmp_path):
    html_path, json_path = write_report(results, tmp_path / "report")
    assert (html_path.name, json_path.name) == ("evaluation.html", "evaluation.json")
    stored = json.loads(json_path.read_text(), parse_constant=_reject_constant)
    assert stored["headline"] == results["headline"]
    # deterministic, and the page is rebuilt from the JSON alone
    assert html_path.read_text() == page
    assert render_html(stored) == page
    # one self-contained file: no scripts, no links out, figures inline
    assert "<script" not in page and not re.search(r'(src|href)="(?!data:)', page)
    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert len(images) == 4
    assert all(base64.b64decode(i).lstrip().startswith(b"<?xml") for i in images)


def test_the_page_reads_for_a_committee(page):
    sections = ("Headline", "What the numbers mean", "Figures", "Subgroups", "What each model")
    order = [page.index(f"<h2>{h}") for h in sections]
    assert order == sorted(order)
    assert '<tr class="baseline"><td>news2</td><td>≥ 5 points</td>' in page
    assert "⚠ small cell" in page  # 5 septic patients in all: every cell is small
    assert "Age band (years)" in page and "ICU unit" in page
    assert "consciousness" in page  # what NEWS2 cannot use
    assert "heart rate / 150, for the test" in page
