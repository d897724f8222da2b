"""Two models side by side on the scores they stored for the same stays and hours: the
active model and a shadow, over the same live (or replayed) patients.

Without outcomes: how often they agree on alerting (each at its own threshold), their alert
rates, how far their risks differ. With outcomes — stays whose sepsis onset is recorded, or
that ended without one — the evaluation's figures side by side: utility, AUROC, calibration,
sensitivity, alert burden (`evaluate.metrics`), on the scored hours of those stays.

An hour's label is PhysioNet's: septic from 6 hours before the recorded onset on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select

from wardwatch.evaluate.metrics import Predictions, evaluate_predictions, headline
from wardwatch.evaluate.utility import Stays
from wardwatch.store.schema import encounters, scores

LABEL_LEAD_HOURS = 6


def _scores(conn: Connection, version: str, since: datetime | None) -> pd.DataFrame:
    columns = ["encounter_id", "hour", "as_of", "risk", "threshold", "id"]
    query = select(*(scores.c[name] for name in columns))
    query = query.where(scores.c.model_version == version)
    if since is not None:
        query = query.where(scores.c.as_of >= since)
    frame = pd.DataFrame(conn.execute(query).mappings().all(), columns=columns)
    # A stay re-scored at the same hour (new data arrived): the later score is the one shown.
    return frame.sort_values("id").drop_duplicates(["encounter_id", "hour"], keep="last")


def paired_scores(conn: Connection, first: str, second: str,
                  since: datetime | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per (stay, hour) both models scored: risk_a, risk_b, alert_a, alert_b."""
    a, b = _scores(conn, first, since), _scores(conn, second, since)
    both = a.merge(b, on=["encounter_id", "hour"], suffixes=("_a", "_b"))
    both["alert_a"] = both["risk_a"] >= both["threshold_a"]
    both["alert_b"] = both["risk_b"] >= both["threshold_b"]
    return both.sort_values(["encounter_id", "hour"], ignore_index=True)


def _outcomes(conn: Connection, stays: list[str]) -> pd.DataFrame:
    query = select(encounters.c.encounter_id, encounters.c.admitted_at,
                   encounters.c.sepsis_onset_at, encounters.c.discharged_at)  # fmt: skip
    frame = pd.DataFrame(conn.execute(query).mappings().all(),
                         columns=["encounter_id", "admitted_at", "sepsis_onset_at",
                                  "discharged_at"])  # fmt: skip
    return frame.loc[frame["encounter_id"].isin(stays)]


def _labelled(conn: Connection, pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs of stays whose outcome is known, each hour with its PhysioNet label."""
    known = _outcomes(conn, list(pairs["encounter_id"].unique()))
    known = known.loc[known["sepsis_onset_at"].notna() | known["discharged_at"].notna()]
    rows = pairs.merge(known, on="encounter_id")
    onset = (rows["sepsis_onset_at"] - rows["admitted_at"]).dt.total_seconds() / 3600
    rows["label"] = ((rows["hour"] >= onset - LABEL_LEAD_HOURS) & onset.notna()).astype(int)
    return rows


def _side(rows: pd.DataFrame, suffix: str, stays: Stays) -> dict[str, Any]:
    labels = rows["label"].to_numpy()
    risk = rows[f"risk_{suffix}"].to_numpy()
    threshold = float(rows[f"threshold_{suffix}"].iloc[0])
    return headline(evaluate_predictions(stays, labels, Predictions(risk, threshold),
                                         curves=False))  # fmt: skip


def compare_models(conn: Connection, first: str, second: str,
                   since: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """The comparison (module docstring) as a JSON-able dict."""
    pairs = paired_scores(conn, first, second, since)
    result: dict[str, Any] = {"first": first, "second": second, "since": since,
                              "hours": len(pairs),
                              "stays": int(pairs["encounter_id"].nunique())}  # fmt: skip
    if pairs.empty:
        return result | {"note": "no hour scored by both models in this period"}
    result |= {
        "agreement": float((pairs["alert_a"] == pairs["alert_b"]).mean()),
        "alert_rate_first": float(pairs["alert_a"].mean()),
        "alert_rate_second": float(pairs["alert_b"].mean()),
        "mean_abs_risk_difference": float((pairs["risk_a"] - pairs["risk_b"]).abs().mean()),
        "risk_correlation": float(np.corrcoef(pairs["risk_a"], pairs["risk_b"])[0, 1])
        if len(pairs) > 1 else None,
    }  # fmt: skip
    rows = _labelled(conn, pairs)
    if rows.empty or rows["label"].nunique() < 2:
        return result | {"labelled": None, "note": "outcomes not known yet for these stays"}
    stays = Stays.from_labels(rows["encounter_id"].to_numpy(), rows["label"].to_numpy())
    result["labelled"] = {"stays": stays.n_stays, "septic": int(stays.septic.sum()),
                          "first": _side(rows, "a", stays),
                          "second": _side(rows, "b", stays)}  # fmt: skip
    return result
