"""`wardwatch validate-site`: is the model fit to switch on at this hospital, and what must change?

Local validation before go-live, on the site's own data (PhysioNet-style files, or what is
already in the store). It works without outcomes and says more with them:

- **Inputs**, always: per measured variable, how often this site measures it against the
  model's training patients, where its values sit (median, PSI, KS against the training
  reference, `monitor.drift`), the share the quality gate would quarantine as implausible, and
  a suspected unit confusion by name (°F sent as °C, mmol/L sent as mg/dL).
- **The model's view**, always: the share of patient-hours flagged out of distribution (the
  model's `ood` output: those patients get review flags, not alerts), the risk distribution per
  unit, and the **projected alert burden** per unit (alerts per 100 patient-days, share of
  patients alerted) from replaying the alert policy with its per-unit thresholds
  (`alerts.burden.simulate`; without outcomes the simulated clinician dismisses every alert).
- **Performance**, with outcomes (SepsisLabel): everything `wardwatch evaluate` reports (the
  model beside the bedside rules, per unit, sex and age band, the alert policy's yield, the
  utility-vs-threshold curve for this site), and calibration against the training reference.

The **verdict** is the worst of the reasons found (each with what to do):

- **no-go**: a variable arrives in the wrong unit (a confusion matches, or at least
  `QUARANTINE_LIMIT` of its values are implausible); more than `OOD_NO_GO` of hours are out of
  distribution; with outcomes, AUROC below `AUROC_NO_GO` or utility at or below zero.
- **go with changes**: inputs drifted (values or how often measured); more hours out of
  distribution than the monitor tolerates; the projected burden of a unit differs from the
  training patients' by more than the monitor's alert-rate ratio; with outcomes, calibration
  off (recalibrate, `wardwatch calibrate-site`) or a better threshold for this site; without
  outcomes, a shadow-mode period to measure performance before clinicians see alerts.
- **go**: none of these.

The site's data is read as received (to see the units it arrives in) and as the store would
hold it (implausible values blanked: what the model would read).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select

from wardwatch.alerts.burden import simulate
from wardwatch.alerts.policy import PolicyBook
from wardwatch.evaluate.metrics import HOURS_PER_DAY, Predictions, number
from wardwatch.evaluate.subgroups import unit_groups
from wardwatch.ingest.psv import LABEL, MEASURED
from wardwatch.model.cohort import score_cohort
from wardwatch.model.risk import RiskModel
from wardwatch.monitor.drift import DriftReport, DriftThresholds, compare
from wardwatch.monitor.reference import Profile, has_labels, profile_cohort
from wardwatch.monitor.run import read_sorted
from wardwatch.quality import blank_implausible
from wardwatch.store.cohort import load_wide
from wardwatch.store.schema import observations

GO, CHANGES, NO_GO = "go", "go with changes", "no-go"
SEVERITY = {GO: 0, CHANGES: 1, NO_GO: 2}
QUARANTINE_LIMIT = 0.2  # share of a variable's values implausible: it arrives in the wrong unit
OOD_NO_GO = 0.10  # share of hours out of distribution: the model does not know these patients
AUROC_NO_GO = 0.70
UTILITY_GAIN = 0.05  # a better threshold worth setting locally
RISK_BINS = np.r_[0.0, np.geomspace(0.002, 1.0, 28)]  # log-spaced: most hours sit near 0.01
MIN_UNIT_DAYS = 20.0  # patient-days of a unit before its burden is compared
Step = Callable[[str], None]


def _quiet(_: str) -> None:
    """No progress display."""


@dataclass(frozen=True)
class SiteData:
    """A site's cohort as received and as the store would hold it, patient-sorted."""

    received: pd.DataFrame
    stored: pd.DataFrame
    source: str
    from_store: bool = False

    @property
    def labelled(self) -> bool:
        return has_labels(self.stored)


class SiteDataError(ValueError):
    """Site data that cannot be validated; the message says what is wrong."""


def site_from_files(data: Path) -> SiteData:
    """A directory, .psv or .tar.gz of PhysioNet 2019 files."""
    received = read_sorted(Path(data), as_stored=False)
    return SiteData(received, blank_implausible(received), str(data))


def site_from_store(engine: Engine) -> SiteData:
    """Every stay in the store; the gate already quarantined implausible values there."""
    with engine.connect() as conn:
        # load_wide cannot build a frame from an empty store: ask first.
        stored = conn.scalar(select(func.count()).select_from(observations)) or 0
        wide = load_wide(conn) if stored else pd.DataFrame()
    if wide.empty:
        raise SiteDataError("the store holds no stays with observations: ingest the site's "
                            "data first (wardwatch ingest PATH), or give PATH here")  # fmt: skip
    wide = wide.sort_values(["patient_id", "encounter_id", "hour"], kind="stable")
    # A stay is the unit of the model: patients with several stays are told apart by stay.
    wide = wide.assign(patient_id=wide["encounter_id"]).reset_index(drop=True)
    return SiteData(wide, wide, "the store", from_store=True)


# ---------------------------------------------------------------- the parts


def quarantined_shares(site: SiteData) -> dict[str, float | None]:
    """Per variable, the share of received values the gate would quarantine as implausible."""
    shares: dict[str, float | None] = {}
    for v in MEASURED:
        received = int(site.received[v].notna().sum())
        kept = int(site.stored[v].notna().sum())
        shares[v] = number(1 - kept / received) if received else None
    return shares


def risk_by_unit(
    wide: pd.DataFrame, outputs: pd.DataFrame, threshold: float, book: PolicyBook
) -> dict[str, Any]:
    """Per unit: patients, hours, risk quantiles, share at or above the unit's threshold, the
    out-of-distribution share, and histogram counts on `RISK_BINS`."""
    units = unit_groups(wide)
    risk, ood = outputs["risk"].to_numpy(np.float64), outputs["ood"].to_numpy(bool)
    found = {}
    for unit in ["all", *sorted(set(units.tolist()))]:
        rows = np.ones(len(wide), bool) if unit == "all" else units == unit
        limit = _unit_threshold(book, unit, threshold)
        r = risk[rows]
        found[unit] = {
            "patients": int(wide.loc[rows, "patient_id"].nunique()),
            "hours": int(rows.sum()),
            "threshold": limit,
            "median": number(np.median(r)),
            "p90": number(np.quantile(r, 0.9)),
            "p99": number(np.quantile(r, 0.99)),
            "share_at_or_above_threshold": number(np.mean(r >= limit)),
            "ood_share": number(np.mean(ood[rows])),
            "histogram": np.histogram(r, RISK_BINS)[0].tolist(),
        }
    return {"bins": RISK_BINS.tolist(), "units": found}


def _unit_threshold(book: PolicyBook, unit: str, threshold: float) -> float:
    code = None if unit in ("all", "unknown") else unit
    own = book.for_unit(code).threshold
    return float(threshold if own is None else own)


def projected_burden(
    wide: pd.DataFrame, outputs: pd.DataFrame, book: PolicyBook, threshold: float
) -> dict[str, Any]:
    """The alert policy replayed over the cohort: per unit (and all), alerts and review flags
    per 100 patient-days and the share of patients alerted. Without outcomes the simulated
    clinician dismisses every alert (the policy then suppresses re-alerts as it would)."""
    replayed = wide if has_labels(wide) else wide.assign(**{LABEL: 0.0})
    simulated = simulate(replayed, outputs, book, threshold)
    fired, review = simulated["fired"].to_numpy(bool), simulated["review"].to_numpy(bool)
    units = unit_groups(wide)
    ids = wide["patient_id"].to_numpy()
    found = {}
    for unit in ["all", *sorted(set(units.tolist()))]:
        rows = np.ones(len(wide), bool) if unit == "all" else units == unit
        days = rows.sum() / HOURS_PER_DAY
        patients = pd.unique(ids[rows])
        alerted = pd.unique(ids[rows & fired])
        found[unit] = {
            "patients": len(patients),
            "patient_days": number(days),
            "threshold": _unit_threshold(book, unit, threshold),
            "alerts": int(fired[rows].sum()),
            "alerts_per_100_patient_days": number(100 * fired[rows].sum() / days) if days else None,
            "review_flags_per_100_patient_days": number(100 * review[rows].sum() / days)
            if days
            else None,
            "patients_alerted": number(len(alerted) / len(patients)) if len(patients) else None,
        }
    return found


def _performance(
    site: SiteData, outputs: pd.DataFrame, threshold: float, book: PolicyBook
) -> dict[str, Any]:
    """Everything `wardwatch evaluate` reports, on this site's labelled stays."""
    from wardwatch.alerts.burden import policy_variants
    from wardwatch.evaluate.report import evaluate_cohort
    from wardwatch.scores import DEFAULT_BASELINES, get_baseline

    wide = site.stored
    predictions = {"wardwatch model": Predictions(
        outputs["risk"].to_numpy(), threshold, kind="model", note="calibrated probability"
    )}  # fmt: skip
    for name in DEFAULT_BASELINES:
        predictions[name] = get_baseline(name).predictions(wide)
    policy = policy_variants(wide, outputs, book, threshold)
    title = f"Sepsis early warning at this site: {site.source}"
    return evaluate_cohort(wide, predictions, title=title, alert_policy=policy)


# ---------------------------------------------------------------- the verdict


@dataclass(frozen=True)
class Reason:
    """One reason for the verdict: how serious, what was found, what to do."""

    decision: str
    finding: str
    action: str


def _input_reasons(
    drift: DriftReport, quarantined: dict[str, float | None], limits: DriftThresholds
) -> list[Reason]:
    reasons = []
    for v in drift.variables:
        q = quarantined.get(v.variable) or 0.0
        wrong_unit = v.suspected_unit or (q >= QUARANTINE_LIMIT and v.values >= limits.min_values)
        finding = drift.finding("input_values", v.variable)
        if wrong_unit:
            parts = [finding.message if finding else f"{v.variable} arrives out of range."]
            if q:
                parts.append(f"{q:.0%} of its values would be quarantined as implausible.")
            reasons.append(Reason(NO_GO, " ".join(parts), _unit_action(v.variable)))
        elif finding is not None:
            reasons.append(Reason(CHANGES, finding.message, finding.recommendation))
    for f in drift.findings:
        if f.kind == "input_measured":
            reasons.append(Reason(CHANGES, f.message, f.recommendation))
    return reasons


def _unit_action(variable: str) -> str:
    return (f"Fix {variable} at the interface (send it in the unit the model reads, or map the "
            "local code with its true unit) and validate again; until then the model reads "
            "wrong values for every patient.")  # fmt: skip


def _model_reasons(drift: DriftReport, by_unit: dict[str, Any]) -> list[Reason]:
    reasons = []
    ood = by_unit["units"]["all"]["ood_share"] or 0.0
    if ood > OOD_NO_GO:
        reasons.append(Reason(
            NO_GO, f"{ood:.0%} of patient-hours are out of the model's training distribution "
            f"(limit {OOD_NO_GO:.0%}): for them the model asks for a human review instead of "
            "judging, so it would add work without adding warnings.",
            "Find which inputs make these patients unusual (the inputs table); retrain or "
            "recalibrate on local data before go-live.",
        ))  # fmt: skip
    for f in drift.findings:
        if f.kind in ("ood", "prediction") and not (f.kind == "ood" and ood > OOD_NO_GO):
            reasons.append(Reason(CHANGES, f.message, f.recommendation))
    return reasons


def _burden_reasons(
    burden: dict[str, Any], reference: Profile, limits: DriftThresholds
) -> list[Reason]:
    """Each unit's projected burden against the same unit's on the training patients."""
    trained = reference.notes.get("alert_burden") or {}
    reasons = []
    for unit, row in burden.items():
        expected = (trained.get(unit) or trained.get("all") or {}).get(
            "alerts_per_100_patient_days"
        )
        rate = row["alerts_per_100_patient_days"]
        if not expected or rate is None or (row["patient_days"] or 0) < MIN_UNIT_DAYS:
            continue
        ratio = rate / expected
        if ratio > limits.alert_rate_ratio or ratio < 1 / limits.alert_rate_ratio:
            reasons.append(Reason(
                CHANGES, f"Projected alert burden in {unit}: {rate:.1f} alerts per 100 "
                f"patient-days against {expected:.1f} on the training patients "
                f"({ratio:.1f} times).",
                "Agree the burden with the unit's leads; set a unit threshold in [alerts] "
                "(wardwatch calibrate-site proposes one) if it is not acceptable.",
            ))  # fmt: skip
    return reasons


def _performance_reasons(
    performance: dict[str, Any], drift: DriftReport, threshold: float
) -> list[Reason]:
    head = next(r for r in performance["headline"] if r["name"] == "wardwatch model")
    auroc, utility = head["auroc"], head["utility"]
    reasons = []
    if (auroc is not None and auroc < AUROC_NO_GO) or (utility is not None and utility <= 0):
        reasons.append(Reason(
            NO_GO, f"At this site the model ranks septic hours with AUROC {auroc:.3f} and its "
            f"alerts earn a normalised utility of {utility:.3f} (no-go below AUROC "
            f"{AUROC_NO_GO} or at utility 0 or less).",
            "Do not switch it on; retrain on local data and validate again.",
        ))  # fmt: skip
    reasons += [Reason(CHANGES, f.message, f.recommendation)
                for f in drift.findings if f.kind == "calibration"]  # fmt: skip
    best = _best_threshold(performance["figures"]["utility_vs_threshold"]["wardwatch model"])
    here = utility if utility is not None else 0.0
    if best and best[1] - here >= UTILITY_GAIN:
        reasons.append(Reason(
            CHANGES, f"A threshold of {best[0]:.3g} would earn utility {best[1]:.3f} here, "
            f"against {here:.3f} at the model's {threshold:.3g}.",
            "Set a local threshold (wardwatch calibrate-site) and check its alert burden.",
        ))  # fmt: skip
    return reasons


def _best_threshold(curve: dict[str, Any]) -> tuple[float, float] | None:
    pairs = [(t, u) for t, u in zip(curve["thresholds"], curve["utility"], strict=True)
             if t is not None and u is not None]  # fmt: skip
    return max(pairs, key=lambda p: p[1]) if pairs else None


def verdict(reasons: list[Reason], labelled: bool) -> dict[str, Any]:
    """The worst decision among the reasons; without outcomes, never better than 'go with
    changes' (a shadow-mode period must measure what the report could not)."""
    if not labelled:
        reasons = [*reasons, Reason(
            CHANGES, "No outcomes (SepsisLabel) were given: the model's accuracy at this site "
            "is unknown.",
            "Run the model in shadow mode (scored, not shown) until enough outcomes are "
            "recorded, then validate again with them.",
        )]  # fmt: skip
    decision = max((r.decision for r in reasons), key=SEVERITY.__getitem__, default=GO)
    ordered = sorted(reasons, key=lambda r: -SEVERITY[r.decision])
    return {"decision": decision, "reasons": [asdict(r) for r in ordered]}


# ---------------------------------------------------------------- the whole report


def validate_site(
    site: SiteData,
    model: RiskModel,
    reference: Profile,
    book: PolicyBook,
    thresholds: DriftThresholds | None = None,
    *,
    step: Step = _quiet,
) -> dict[str, Any]:
    """Every section of the local-validation report, as JSON-able data."""
    limits = thresholds or DriftThresholds()
    if site.stored.empty:
        raise SiteDataError(f"{site.source}: no patient-hours to validate")
    step(f"scoring {site.stored['patient_id'].nunique():,} patients")
    outputs = score_cohort(site.stored, model)
    step("comparing inputs with the training patients")
    received = profile_cohort(site.received, like=reference, source=site.source)
    modelled = profile_cohort(site.stored, outputs, model.threshold, like=reference)
    drift = compare(reference, _joined(received, modelled), limits)
    quarantined = quarantined_shares(site)
    by_unit = risk_by_unit(site.stored, outputs, model.threshold, book)
    step("replaying the alert policy")
    burden = projected_burden(site.stored, outputs, book, model.threshold)
    reasons = _input_reasons(drift, quarantined, limits) + _model_reasons(drift, by_unit)
    reasons += _burden_reasons(burden, reference, limits)
    performance = None
    if site.labelled:
        step("evaluating against the outcomes")
        performance = _performance(site, outputs, model.threshold, book)
        reasons += _performance_reasons(performance, drift, model.threshold)
    return _results(site, model, reference, drift, quarantined, by_unit, burden, performance,
                    verdict(reasons, site.labelled))  # fmt: skip


def _joined(received: Profile, modelled: Profile) -> Profile:
    """Inputs as received (their units are the question), the model's side as it would run."""
    return replace(modelled, variables=received.variables)


def _results(
    site: SiteData,
    model: RiskModel,
    reference: Profile,
    drift: DriftReport,
    quarantined: dict[str, float | None],
    by_unit: dict[str, Any],
    burden: dict[str, Any],
    performance: dict[str, Any] | None,
    decided: dict[str, Any],
) -> dict[str, Any]:
    wide = site.stored
    units = unit_groups(wide)
    first = pd.Series(units).groupby(wide["patient_id"].to_numpy()).first()
    return {
        "title": f"Local validation: {site.source}",
        "source": site.source,
        "model_version": model.version,
        "threshold": model.threshold,
        "reference": drift.reference | {"patients": reference.patients,
                                        "hours": reference.hours},
        "cohort": {"patients": int(wide["patient_id"].nunique()), "hours": len(wide),
                   "patient_days": len(wide) / HOURS_PER_DAY, "labelled": site.labelled,
                   "units": first.value_counts().to_dict()},
        "verdict": decided,
        "drift": drift.to_dict(),
        "quarantined": quarantined,
        "scores": by_unit,
        "burden": burden,
        "reference_burden": reference.notes.get("alert_burden"),
        "performance": performance,
    }  # fmt: skip
