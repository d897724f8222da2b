"""The patient page's risk chart: risk, its uncertainty band, the threshold, gaps as gaps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd

from wardwatch.web.charts import risk_chart

START = datetime(2026, 11, 20, 0, tzinfo=UTC)


def history(hours: list[int], risk: float = 0.1, uncertainty: float = 0.02) -> pd.DataFrame:
    return pd.DataFrame({
        "as_of": [START + timedelta(hours=h) for h in hours],
        "risk": risk, "uncertainty": uncertainty, "ood": [h == hours[-1] for h in hours],
    })  # fmt: skip


def test_no_scores_is_said_in_words():
    assert "No risk scores yet" in risk_chart(history([0]).iloc[:0], 0.03)


def test_the_chart_draws_risk_band_threshold_and_describes_itself():
    svg = str(risk_chart(history([0, 1, 2, 3]), 0.034))
    assert svg.count('<polyline class="risk"') == 1
    assert svg.count('<polygon class="band"') == 1
    assert 'class="threshold"' in svg and "alert threshold 3.4%" in svg
    assert re.search(r"<desc[^>]*>Risk over 3 hours: now 10.0% \(±2.0 points\)", svg)
    assert svg.count('class="ood"') == 1 and "1 hours with unusual inputs" in svg


def test_hours_without_a_score_break_the_line():
    svg = str(risk_chart(history([0, 1, 2, 6, 7]), 0.034))
    assert svg.count('<polyline class="risk"') == 2
    assert svg.count('<polygon class="band"') == 2


def test_the_band_stays_between_0_and_100_percent():
    svg = str(risk_chart(history([0, 1], risk=0.95, uncertainty=0.2), 0.5))
    band = re.search(r'<polygon class="band" points="([^"]+)"', svg)
    assert band is not None
    ys = [float(p.split(",")[1]) for p in band.group(1).split()]
    top_of_plot = 14  # charts.TOP: y of 100 %
    assert min(ys) >= top_of_plot - 0.01
