"""The ward at a glance in a terminal: every stay's latest hour, scored, highest risk first.

This is the demo's view until the web worklist exists. It reads the store through the same
wide hourly frame and the same feature code that training used, so what it shows is what
the live pipeline would score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from wardwatch.features import build_features
from wardwatch.model.artifact import load_shipped_model
from wardwatch.model.risk import RiskModel
from wardwatch.store.cohort import load_wide

ICU_UNITS = ("ICU", "MICU", "SICU")
SHOWN = (("HR", "HR"), ("MAP", "MAP"), ("Temp", "Temp"), ("Resp", "Resp"), ("O2Sat", "SpO2"),
         ("Lactate", "Lactate"))  # fmt: skip


def latest_scores(engine: Engine, model: RiskModel) -> pd.DataFrame:
    """Each stay's latest hour with its calibrated risk, uncertainty and OOD flag."""
    with engine.connect() as conn:
        wide = load_wide(conn)
    # The worklist is the ICU's: outpatient visits (e.g. a FHIR history) are not ICU stays.
    wide = wide.loc[wide["unit"].isin(ICU_UNITS)].reset_index(drop=True)
    if wide.empty:
        return wide
    # The model's unit of analysis is one ICU stay, so a stay is scored as its own history.
    predictions = model.predict(build_features(wide.assign(patient_id=wide["encounter_id"])))
    scored = pd.concat([wide.reset_index(drop=True), predictions.reset_index(drop=True)], axis=1)
    scored["above_threshold"] = scored["risk"] >= model.threshold
    last = scored.groupby("encounter_id", sort=False)["hour"].idxmax()
    return _with_ages(wide, scored).loc[last].sort_values("risk", ascending=False)


def _with_ages(wide: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """Last known value of each shown variable and how many hours old it is (rule 1)."""
    for variable, _ in SHOWN:
        measured = wide[variable].notna()
        when = wide["hour"].where(measured).groupby(wide["encounter_id"]).ffill()
        scored[f"{variable}_last"] = wide[variable].groupby(wide["encounter_id"]).ffill()
        scored[f"{variable}_age"] = wide["hour"] - when
    return scored


def _band(risk: float, threshold: float) -> str:
    if risk >= threshold:
        return f"[bold white on red] {risk:5.1%} [/]"
    if risk >= threshold / 2:
        return f"[black on yellow] {risk:5.1%} [/]"
    return f"[green] {risk:5.1%} [/]"


def _value(row: pd.Series, variable: str) -> str:
    value, age = row[f"{variable}_last"], row[f"{variable}_age"]
    if pd.isna(value):
        return "[dim]never[/]"
    text = f"{value:.3g}"
    return text if age == 0 else f"{text} [dim]{age:.0f}h ago[/]"


def show_ward(engine: Engine, console: Console, rows: int = 15) -> None:
    model = load_shipped_model()
    scores = latest_scores(engine, model)
    if scores.empty:
        console.print("no ICU stays in the database yet")
        return
    threshold = model.threshold
    table = Table(title=f"ICU worklist: {len(scores)} stays, highest risk first", expand=False)
    for heading in ("patient", "unit", "hour", "risk", "±", *(h for _, h in SHOWN), "flag"):
        table.add_column(heading, justify="right" if heading not in {"patient", "flag"} else "left")
    for _, row in scores.head(rows).iterrows():
        flag = "[magenta]needs human review (unusual input)[/]" if row["ood"] else ""
        if row["above_threshold"] and not row["ood"]:
            flag = "[red]above alert threshold[/]"
        table.add_row(str(row["patient_id"]), str(row["unit"]), f"{row['hour']:.0f}",
                      _band(row["risk"], threshold), f"{row['uncertainty']:.1%}",
                      *(_value(row, v) for v, _ in SHOWN), flag)  # fmt: skip
    console.print(table)
    above = int(np.sum(scores["above_threshold"]))
    console.print(
        f"{above} of {len(scores)} stays are above the operating threshold ({threshold:.1%}); "
        "risk is a calibrated probability of sepsis within hours, ± is model disagreement. "
        "The model informs; the clinician decides."
    )
