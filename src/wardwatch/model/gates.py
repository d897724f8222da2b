"""Promotion gates: what a candidate must show, on recent labelled data, to replace the
active model. Defined as data (`[governance.gates]` in wardwatch.toml), checked side by side
with the active model on the same patients and hours, reported with the figures.

    utility      candidate utility >= active utility - utility_margin   (non-inferiority)
    auroc        candidate AUROC   >= active AUROC   - auroc_margin
    calibration  candidate expected calibration error <= ece_max
    subgroups    no sex, age band or unit whose patient sensitivity drops by more than
                 subgroup_drop (cells with fewer than `min_septic` septic patients are shown,
                 not judged: their sensitivity moves by whole patients)
    alert rate   candidate alerts per 100 patient-days within [alert_ratio_low,
                 alert_ratio_high] x the active model's (a new model that alerts twice as
                 often is a different deployment, whatever its AUROC)

The figures come from `evaluate` (the PhysioNet utility, hourly AUROC, patient-level
sensitivity, the alert burden) at each model's own threshold. A failing gate blocks
promotion with the failing figures; only the governance role may override, with a reason.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wardwatch.evaluate.metrics import Predictions, evaluate_predictions, headline
from wardwatch.evaluate.subgroups import evaluate_subgroups
from wardwatch.evaluate.utility import Stays
from wardwatch.features import build_features
from wardwatch.ingest.psv import LABEL
from wardwatch.model.risk import RiskModel


@dataclass(frozen=True, slots=True)
class GateRules:
    utility_margin: float = 0.02
    auroc_margin: float = 0.01
    ece_max: float = 0.05
    subgroup_drop: float = 0.05
    min_septic: int = 10
    alert_ratio_low: float = 0.67
    alert_ratio_high: float = 1.5

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> GateRules:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(f"unknown keys in [governance.gates]: {unknown}; known: "
                             f"{sorted(known)}")  # fmt: skip
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in table.items()})


def load_rules(config_file: Path | None = None) -> GateRules:
    """The gates of the settings file's `[governance.gates]`, else the defaults above."""
    if config_file is None or not Path(config_file).is_file():
        return GateRules()
    table = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
    return GateRules.from_table(table.get("governance", {}).get("gates", {}))


@dataclass(frozen=True, slots=True)
class Gate:
    name: str
    passed: bool
    message: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GateReport:
    gates: list[Gate]
    rules: GateRules
    active: dict[str, Any]
    candidate: dict[str, Any]
    patients: int
    septic_patients: int

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failed(self) -> list[Gate]:
        return [g for g in self.gates if not g.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "gates": [asdict(g) for g in self.gates],
                "rules": asdict(self.rules), "active": self.active, "candidate": self.candidate,
                "patients": self.patients, "septic_patients": self.septic_patients}  # fmt: skip


def _predictions(model: RiskModel, features: pd.DataFrame) -> Predictions:
    risk = model.predict(features)["risk"].to_numpy()
    return Predictions(risk, model.threshold, kind="model", note=model.version)


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def _at_least(name: str, cand: float | None, act: float | None, margin: float) -> Gate:
    figures = {"candidate": cand, "active": act, "margin": margin}
    if cand is None or act is None:
        return Gate(name, False, f"{name}: cannot be computed on this data", figures)
    ok = cand >= act - margin
    verdict = "non-inferior" if ok else "worse than the active model by more than the margin"
    return Gate(name, ok, f"{name} {_fmt(cand)} vs active {_fmt(act)} (margin {margin}): "
                f"{verdict}", figures)  # fmt: skip


def _calibration(cand: dict[str, Any], rules: GateRules) -> Gate:
    ece = cand.get("ece")
    ok = ece is not None and ece <= rules.ece_max
    return Gate("calibration", ok, f"expected calibration error {_fmt(ece)} (at most "
                f"{rules.ece_max})", {"candidate": ece, "max": rules.ece_max})  # fmt: skip


def _alert_rate(cand: dict[str, Any], act: dict[str, Any], rules: GateRules) -> Gate:
    c, a = cand["alerts_per_100_patient_days"], act["alerts_per_100_patient_days"]
    ratio = c / a if a else (1.0 if not c else float("inf"))
    ok = rules.alert_ratio_low <= ratio <= rules.alert_ratio_high
    allowed = f"{rules.alert_ratio_low}–{rules.alert_ratio_high}"
    message = (f"{_fmt(c, '{:.1f}')} alerts per 100 patient-days vs active "
               f"{_fmt(a, '{:.1f}')} (ratio {ratio:.2f}; allowed {allowed})")  # fmt: skip
    return Gate("alert rate", ok, message, {"candidate": c, "active": a, "ratio": ratio})


def _subgroups(wide: pd.DataFrame, preds: dict[str, Predictions], rules: GateRules) -> Gate:
    cells = evaluate_subgroups(wide, preds, small_cell=rules.min_septic)
    drops, judged = [], 0
    for grouping, levels in cells.items():
        for level, cell in levels.items():
            if cell["small_cell"]:
                continue
            judged += 1
            cand = cell["models"]["candidate"]["sensitivity"]
            act = cell["models"]["active"]["sensitivity"]
            if cand is not None and act is not None and act - cand > rules.subgroup_drop:
                drops.append({"group": f"{grouping}={level}", "candidate": cand, "active": act})
    text = "; ".join(f"{d['group']}: sensitivity {d['active']:.2f} → {d['candidate']:.2f}"
                     for d in drops)  # fmt: skip
    message = (f"sensitivity drops by more than {rules.subgroup_drop} in {text}" if drops else
               f"no subgroup loses more than {rules.subgroup_drop} sensitivity "
               f"({judged} subgroups judged)")  # fmt: skip
    return Gate("subgroups", not drops, message, {"drops": drops, "judged": judged})


def check_gates(candidate: RiskModel, active: RiskModel, wide: pd.DataFrame,
                rules: GateRules | None = None) -> GateReport:  # fmt: skip
    """Both models on the same labelled cohort (PhysioNet-style wide frame), gate by gate."""
    rules = rules or GateRules()
    if LABEL not in wide.columns or wide[LABEL].isna().all():
        raise ValueError("promotion gates need labelled data (a SepsisLabel column)")
    features = build_features(wide)
    preds = {"active": _predictions(active, features),
             "candidate": _predictions(candidate, features)}  # fmt: skip
    labels = wide[LABEL].to_numpy()
    stays = Stays.from_labels(wide["patient_id"].to_numpy(), labels)
    flat = {name: headline(evaluate_predictions(stays, labels, p, curves=False))
            for name, p in preds.items()}  # fmt: skip
    cand, act = flat["candidate"], flat["active"]
    gates = [
        _at_least("utility", cand["utility"], act["utility"], rules.utility_margin),
        _at_least("AUROC", cand["auroc"], act["auroc"], rules.auroc_margin),
        _calibration(cand, rules),
        _subgroups(wide, preds, rules),
        _alert_rate(cand, act, rules),
    ]
    return GateReport(gates, rules, act, cand, stays.n_stays, int(np.sum(stays.septic)))
