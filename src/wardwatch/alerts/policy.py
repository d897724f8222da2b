"""The alert policy: given one fresh score, should a clinician be interrupted, and with what?

A threshold on the risk is not a policy. An ICU where every hour above 3.4 % pages someone
stops reading the pages; TREWS earned its clinicians' attention by alerting only when the
risk is high *and* there is something to verify at the bedside, by never nagging about a
patient a clinician has already judged, and by saying so when the model cannot be trusted.
`decide` is that policy, written once: the scoring service calls it for every new score, and
`alerts.burden` replays it over a labelled cohort to measure what clinicians would see.

`decide(policy, situation, sepsis, review)` looks at one score (`Situation`) and at the
encounter's latest sepsis alert and latest needs-human-review flag (`AlertMemory`, or None),
and returns a `Decision`: an `Action` and the sentences a clinician reads. In order:

1. **A sepsis alert is open** → NONE: the patient is already being looked at.
2. **A sepsis alert is paused** → RESUME when the pause has ended (`paused_until <= as_of`),
   or, for a pause "until new data", when a qualifying sign or any lab newer than the pause
   arrives; otherwise NONE. The clinician asked to be reminded, so the reminder comes whatever
   the model now says.
3. **The sepsis alert was confirmed or dismissed less than `realert_after_hours` ago** (and
   `suppress_realert` is on) → NONE: a clinician has judged this patient; their judgement
   covers the window, including hours whose input the model cannot vouch for.
4. **The input cannot be trusted** → REVIEW, never FIRE and never a confident silence, at any
   risk: out of distribution (`review_ood`), vital signs older than `max_vitals_age_hours`, an
   ensemble spread above `max_uncertainty`, or no usable risk at all. Not raised again while a
   review flag is open or paused (a paused flag comes back as RESUME_REVIEW, like rule 2), nor
   within `review_after_hours` of a handled one, unless the risk has since risen materially
   (`realert_rise` x the risk then, and above the threshold). One exception: while a stay has
   no vital sign yet and is younger than `max_vitals_age_hours`, doubts give NONE with the
   reason "awaiting the first vital signs" — the score rests on almost nothing, and a flag
   would only say that the patient has just arrived (PhysioNet stays open with an empty hour,
   and about a quarter of those empty hours are out of distribution).
5. **Risk below the unit's threshold** → NONE.
6. **After a confirmation or dismissal** (suppression on, window over) → FIRE only if the risk
   reached `realert_rise` x the risk when the alert was closed (the threshold when unknown).
7. **No organ-dysfunction sign** (`require_organ_dysfunction`) → NONE. This is TREWS's design:
   quiet until there is something a clinician can verify (`alerts.signs`).
8. Otherwise → FIRE, with the risk, its uncertainty and every sign as reasons.

Rule 4 at low risk is deliberate: an out-of-distribution input with a risk of 0.4 % is not
evidence that the patient is well, so a quiet screen would be a confident silence. It costs
review flags: the cohort replay (`wardwatch evaluate`, `scripts/alert_burden.py`) counts them
per 100 patient-days beside the alerts. A unit that accepts the silence below some risk sets
`review_min_risk`.

Defaults (`UnitPolicy`), and why:

- `threshold`: None, the model's own operating threshold (chosen for utility on calibration
  patients); set one per unit only from local shadow-mode data.
- `realert_after_hours` 24: one nursing day; a dismissed patient is not re-alerted within it.
- `realert_rise` 1.5: after the window, re-alert only at 1.5 x the risk at closing (8 % -> 12 %).
  Relative, because calibrated risks span two orders of magnitude: +5 points is noise at 40 %
  and a tripling at 2.5 %. Every re-alert is also above the threshold (rule 5).
- `max_uncertainty` 0.15 (ensemble standard deviation, in risk units): on the shipped sample
  (300 test-split patients of set A, 13,188 hours) the median hour's spread is 0.006, the 99th
  percentile 0.135 and the 99.5th 0.151. A spread of 0.15 is four times the operating threshold
  (0.034): the members no longer agree on which side of it the patient is.
- `max_vitals_age_hours` 6 in the ICU and the ED (vital signs are charted at least hourly to
  4-hourly there), 12 on a ward (4- to 8-hourly observations). `vitals_age_hours` is the age of
  the freshest vital sign, None when the stay has none yet; then the stay's own age (`hour`)
  is compared with the limit instead.
- `review_after_hours` 24: one human look per patient per day when the input stays unusual.

Configured per care unit in the settings file (`WARDWATCH_CONFIG`, default `wardwatch.toml`),
in an `[alerts]` table; keys directly under `[alerts]` apply to every unit::

    [alerts]
    realert_after_hours = 24

    [alerts.ICU]
    threshold = 0.05              # "model" (the default) = the model's own threshold
    max_vitals_age_hours = 4

    [alerts.ward]
    require_organ_dysfunction = true
    max_uncertainty = false       # false switches an optional check off

    [alerts.units]                # local unit codes -> ICU, ED or ward
    "4 WEST" = "ward"
    "BURN" = "ICU"

Unit codes not listed map by name: MICU, SICU, CCU, CSRU and anything ending in ICU -> ICU;
ED, ER, EMERGENCY -> ED; anything else (and no unit) -> ward.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

CARE_UNITS = ("ICU", "ED", "ward")
ICU_CODES = frozenset({"ICU", "MICU", "SICU", "CCU", "CSRU"})
ED_CODES = frozenset({"ED", "ER", "EMERGENCY"})
AlertState = Literal["open", "paused", "confirmed", "dismissed"]
STATES = ("open", "paused", "confirmed", "dismissed")
CLOSED = ("confirmed", "dismissed")


class Action(StrEnum):
    NONE = "none"  # nothing new to show
    FIRE = "fire"  # open a new sepsis alert
    REVIEW = "review"  # open a new needs-human-review flag
    RESUME = "resume"  # bring the paused sepsis alert back
    RESUME_REVIEW = "resume_review"  # bring the paused review flag back


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reasons: tuple[str, ...]


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class UnitPolicy:
    """When one kind of care unit alerts; the module docstring explains every default."""

    kind: str = "ICU"
    threshold: float | None = None
    require_organ_dysfunction: bool = True
    suppress_realert: bool = True
    realert_after_hours: float = 24.0
    realert_rise: float = 1.5
    review_ood: bool = True
    max_uncertainty: float | None = 0.15
    max_vitals_age_hours: float | None = 6.0
    review_after_hours: float = 24.0
    review_min_risk: float = 0.0

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise ValueError(f"{self.kind} threshold must be a risk in (0, 1)")
        if self.realert_rise < 1:
            raise ValueError(f"{self.kind} realert_rise must be at least 1 (a rise)")
        if min(self.realert_after_hours, self.review_after_hours, self.review_min_risk) < 0:
            raise ValueError(f"{self.kind}: hours and review_min_risk cannot be negative")
        for limit in (self.max_uncertainty, self.max_vitals_age_hours):
            if limit is not None and limit <= 0:
                raise ValueError(f"{self.kind}: limits must be positive (or off)")


DEFAULT_POLICIES: Mapping[str, UnitPolicy] = {
    "ICU": UnitPolicy(kind="ICU"),
    "ED": UnitPolicy(kind="ED"),
    "ward": UnitPolicy(kind="ward", max_vitals_age_hours=12.0),
}
_SETTINGS = {f.name: f for f in fields(UnitPolicy) if f.name != "kind"}


def default_kind(unit: str | None) -> str:
    """The care-unit kind a unit code names by convention (see the module docstring)."""
    code = (unit or "").strip().upper()
    if code in ICU_CODES or code.endswith("ICU"):
        return "ICU"
    return "ED" if code in ED_CODES else "ward"


@dataclass(frozen=True)
class PolicyBook:
    """The policy of each kind of care unit, and the site's unit codes mapped to kinds."""

    policies: Mapping[str, UnitPolicy] = field(default_factory=lambda: dict(DEFAULT_POLICIES))
    units: Mapping[str, str] = field(default_factory=dict)

    def kind_of(self, unit: str | None) -> str:
        mapped = {k.strip().upper(): v for k, v in self.units.items()}
        return mapped.get((unit or "").strip().upper()) or default_kind(unit)

    def for_unit(self, unit: str | None) -> UnitPolicy:
        return self.policies[self.kind_of(unit)]

    def with_all(self, **changes: Any) -> PolicyBook:
        """The same book with `changes` applied to every unit's policy (for comparisons)."""
        policies = {kind: replace(p, **changes) for kind, p in self.policies.items()}
        return PolicyBook(policies, dict(self.units))

    @classmethod
    def from_table(cls, table: Mapping[str, Any], source: str = "") -> PolicyBook:
        """A book from the `[alerts]` table of a TOML file; unknown keys are a ValueError."""
        where = f" in {source}" if source else ""
        _refuse_unknown(f"[alerts]{where}", table, {*CARE_UNITS, "units", *_SETTINGS})
        shared = {k: v for k, v in table.items() if k in _SETTINGS}
        policies = {
            kind: _policy(kind, shared | _section(table, kind, where)) for kind in CARE_UNITS
        }
        return cls(policies, _units(table.get("units", {}), where))

    @classmethod
    def load(cls, path: Path | None) -> PolicyBook:
        """The book in `path`'s `[alerts]` table (defaults when the table is absent);
        None gives the defaults."""
        if path is None:
            return cls()
        with Path(path).open("rb") as handle:
            document = tomllib.load(handle)
        return cls.from_table(document.get("alerts", {}), str(path))


def load_policy_book(config_file: Path | None = None) -> PolicyBook:
    """The book from the settings file, found as `settings.load_settings` finds it."""
    path = config_file or Path(os.environ.get("WARDWATCH_CONFIG", "wardwatch.toml"))
    return PolicyBook.load(path if path.is_file() else None)


def _refuse_unknown(where: str, table: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"unknown keys in {where}: {unknown}; known: {sorted(known)}")


def _section(table: Mapping[str, Any], kind: str, where: str) -> dict[str, Any]:
    section = table.get(kind, {})
    if not isinstance(section, Mapping):
        raise ValueError(f"[alerts]{where}: {kind} must be a table ([alerts.{kind}])")
    _refuse_unknown(f"[alerts.{kind}]{where}", section, set(_SETTINGS))
    return dict(section)


def _units(units: object, where: str) -> dict[str, str]:
    if not isinstance(units, Mapping):
        raise ValueError(f"[alerts]{where}: units must be a table ([alerts.units])")
    wrong = {code: kind for code, kind in units.items() if kind not in CARE_UNITS}
    if wrong:
        raise ValueError(f"[alerts.units]{where}: {wrong} name no care unit of {CARE_UNITS}")
    return {str(code): str(kind) for code, kind in units.items()}


def _policy(kind: str, values: Mapping[str, Any]) -> UnitPolicy:
    coerced = {name: _setting(kind, name, raw) for name, raw in values.items()}
    return replace(DEFAULT_POLICIES[kind], **coerced)


def _setting(kind: str, name: str, raw: object) -> object:
    """A TOML value checked against the field's type: bools are bools, numbers numbers."""
    annotation = str(_SETTINGS[name].type)
    optional = "None" in annotation
    if optional and (raw is False or (name == "threshold" and raw == "model")):
        return None
    if annotation == "bool" and isinstance(raw, bool):
        return raw
    if "float" in annotation and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    expected = "true or false" if annotation == "bool" else "a number"
    raise ValueError(f"[alerts.{kind}] {name}: expected {expected}, got {raw!r}")


# ---------------------------------------------------------------- what decide reads


@dataclass(frozen=True, slots=True)
class Situation:
    """One score of one encounter, with what the policy needs to judge it.

    `hour` is the hours since admission to the unit (ICULOS); `threshold` the model's own;
    `vitals_age_hours` the age of the freshest vital sign (None: none yet this stay); `signs`
    the sentences of `alerts.signs.describe_signs` (empty: no verifiable sign);
    `newest_sign_at` / `newest_lab_at` when the newest qualifying sign and the newest lab were
    measured.
    """

    hour: float
    as_of: datetime
    risk: float
    uncertainty: float
    ood: bool
    threshold: float
    vitals_age_hours: float | None = None
    signs: tuple[str, ...] = ()
    newest_sign_at: datetime | None = None
    newest_lab_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")


@dataclass(frozen=True, slots=True)
class AlertMemory:
    """The encounter's latest alert (or review flag) as the policy needs to see it."""

    state: AlertState
    opened_at: datetime
    closed_at: datetime | None = None
    closed_risk: float | None = None
    paused_at: datetime | None = None
    paused_until: datetime | None = None
    pause_until_new_data: bool = False

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"alert state {self.state!r} is not one of {STATES}")
        if self.state in CLOSED and self.closed_at is None:
            raise ValueError(f"a {self.state} alert needs closed_at")
        if self.state == "paused" and self.paused_at is None:
            raise ValueError("a paused alert needs paused_at")


# ---------------------------------------------------------------- the rules


def decide(
    policy: UnitPolicy,
    situation: Situation,
    sepsis: AlertMemory | None = None,
    review: AlertMemory | None = None,
) -> Decision:
    """What to do with this score; the rules are in the module docstring, in this order."""
    s = situation
    if sepsis is not None and sepsis.state == "open":
        return Decision(Action.NONE, ("A sepsis alert is already open for this patient.",))
    if sepsis is not None and sepsis.state == "paused":
        return _paused(sepsis, s, Action.RESUME, "sepsis alert")
    if (hold := _clinician_hold(policy, s, sepsis)) is not None:
        return Decision(Action.NONE, hold)
    if doubts := _doubts(policy, s):
        if _awaiting_vitals(policy, s):
            return Decision(Action.NONE, (*doubts, _awaiting_sentence(s)))
        return _review(policy, s, review, doubts)
    return _alert(policy, s, sepsis)


def _threshold(policy: UnitPolicy, s: Situation) -> float:
    return s.threshold if policy.threshold is None else policy.threshold


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M %Z}".strip()


def _risk_sentence(policy: UnitPolicy, s: Situation) -> str:
    threshold = _threshold(policy, s)
    side = "above" if s.risk >= threshold else "below"
    return f"Risk {s.risk:.1%} is {side} the {policy.kind} threshold {threshold:.1%}."


def _risk_now(s: Situation) -> str:
    return f"Risk now {s.risk:.1%}."


def _uncertainty_sentence(s: Situation) -> str:
    return f"Uncertainty: the model's ensemble spread is ±{s.uncertainty * 100:.1f} points."


def _paused(memory: AlertMemory, s: Situation, action: Action, what: str) -> Decision:
    """RESUME(_REVIEW) when the pause ended or new data came in; NONE while it holds."""
    if memory.paused_until is not None and memory.paused_until <= s.as_of:
        why = f"The {what} was paused until {_when(memory.paused_until)}; the pause has ended."
        return Decision(action, (why, _risk_now(s)))
    if memory.pause_until_new_data and (new := _new_data(memory, s)):
        return Decision(action, (f"The {what} was paused until new data: {new}", *s.signs))
    until = _when(memory.paused_until) if memory.paused_until else "new data arrive"
    return Decision(Action.NONE, (f"The {what} is paused until {until}.",))


def _new_data(memory: AlertMemory, s: Situation) -> str:
    paused_at = memory.paused_at
    assert paused_at is not None  # checked by AlertMemory
    if s.newest_sign_at is not None and s.newest_sign_at > paused_at:
        return f"a sign of organ dysfunction measured {_when(s.newest_sign_at)}."
    if s.newest_lab_at is not None and s.newest_lab_at > paused_at:
        return f"a lab result from {_when(s.newest_lab_at)}."
    return ""


def _since(memory: AlertMemory, s: Situation) -> timedelta:
    assert memory.closed_at is not None  # checked by AlertMemory
    return s.as_of - memory.closed_at


def _clinician_hold(
    policy: UnitPolicy, s: Situation, sepsis: AlertMemory | None
) -> tuple[str, ...] | None:
    """Rule 3: the reasons for silence while a clinician's judgement covers the patient."""
    if sepsis is None or sepsis.state not in CLOSED or not policy.suppress_realert:
        return None
    window = timedelta(hours=policy.realert_after_hours)
    if _since(sepsis, s) >= window:
        return None
    assert sepsis.closed_at is not None
    return (
        f"A clinician {sepsis.state} the sepsis alert at {_when(sepsis.closed_at)}; no new "
        f"alert before {_when(sepsis.closed_at + window)}.",
    )


def _doubts(policy: UnitPolicy, s: Situation) -> list[str]:
    """Rule 4: why this score cannot be trusted (empty: it can)."""
    if not (math.isfinite(s.risk) and math.isfinite(s.uncertainty)):
        return ["No usable risk score: the model returned no number for this hour."]
    doubts = []
    if policy.review_ood and s.ood:
        doubts.append(
            "Input unlike the training population (out of distribution): the score may be wrong."
        )
    if (stale := _stale(policy, s)) is not None:
        doubts.append(stale)
    if policy.max_uncertainty is not None and s.uncertainty > policy.max_uncertainty:
        doubts.append(
            f"Too uncertain to call: risk {s.risk:.1%} ± {s.uncertainty * 100:.1f} "
            f"points (limit ± {policy.max_uncertainty * 100:.0f})."
        )
    return doubts


def _stale(policy: UnitPolicy, s: Situation) -> str | None:
    limit = policy.max_vitals_age_hours
    if limit is None:
        return None
    if s.vitals_age_hours is None or not math.isfinite(s.vitals_age_hours):
        if s.hour <= limit:
            return None  # too early to call stale: see _awaiting_vitals
        return (
            f"No vital signs recorded in the {s.hour:.0f} h of this stay (limit "
            f"{limit:.0f} h): the score rests on no vital signs."
        )
    if s.vitals_age_hours > limit:
        return (
            f"No vital signs for {s.vitals_age_hours:.0f} h (limit {limit:.0f} h): "
            "the score rests on stale data."
        )
    return None


def _awaiting_vitals(policy: UnitPolicy, s: Situation) -> bool:
    """No vital sign yet, and the stay younger than the staleness limit: the score rests on
    almost nothing (PhysioNet stays often open with an empty hour), so doubts about it are
    expected and a review flag would only say "the patient has just arrived"."""
    limit = policy.max_vitals_age_hours
    no_vitals = s.vitals_age_hours is None or not math.isfinite(s.vitals_age_hours)
    return limit is not None and no_vitals and s.hour <= limit


def _awaiting_sentence(s: Situation) -> str:
    return (
        f"Awaiting the first vital signs ({s.hour:.0f} h into the stay): the score rests on "
        "almost no data and is not acted on either way."
    )


def _review(
    policy: UnitPolicy, s: Situation, review: AlertMemory | None, doubts: list[str]
) -> Decision:
    """Rule 4: a needs-human-review flag, unless one is open, paused or recently handled."""
    if math.isfinite(s.risk) and s.risk < policy.review_min_risk:
        floor = f"Below this unit's review floor {policy.review_min_risk:.1%}; not flagged."
        return Decision(Action.NONE, (*doubts, floor))
    reasons = (*doubts, *_risk_lines(policy, s))
    if review is None:
        return Decision(Action.REVIEW, reasons)
    if review.state == "open":
        return Decision(Action.NONE, ("A needs-human-review flag is already open.", *doubts))
    if review.state == "paused":
        return _paused(review, s, Action.RESUME_REVIEW, "review flag")
    return _review_again(policy, s, review, reasons)


def _risk_lines(policy: UnitPolicy, s: Situation) -> tuple[str, ...]:
    if not math.isfinite(s.risk):
        return ()
    return (_risk_sentence(policy, s), *s.signs)


def _review_again(
    policy: UnitPolicy, s: Situation, review: AlertMemory, reasons: tuple[str, ...]
) -> Decision:
    assert review.closed_at is not None
    window = timedelta(hours=policy.review_after_hours)
    if _since(review, s) >= window:
        return Decision(Action.REVIEW, reasons)
    if _risen(policy, s, review) and s.risk >= _threshold(policy, s):
        then = _reference(policy, s, review)
        rose = f"Risk rose to {s.risk:.1%} from {then:.1%} since the last review."
        return Decision(Action.REVIEW, (*reasons, rose))
    return Decision(
        Action.NONE,
        (
            f"Reviewed at {_when(review.closed_at)}; not flagged again before "
            f"{_when(review.closed_at + window)} unless the risk rises materially.",
            *reasons,
        ),
    )


def _reference(policy: UnitPolicy, s: Situation, memory: AlertMemory) -> float:
    """The risk a rise is measured from: at closing, or the threshold when unknown."""
    return _threshold(policy, s) if memory.closed_risk is None else memory.closed_risk


def _risen(policy: UnitPolicy, s: Situation, memory: AlertMemory) -> bool:
    return s.risk >= policy.realert_rise * _reference(policy, s, memory)


def _alert(policy: UnitPolicy, s: Situation, sepsis: AlertMemory | None) -> Decision:
    """Rules 5-8 on a trustworthy score."""
    risk = _risk_sentence(policy, s)
    if s.risk < _threshold(policy, s):
        return Decision(Action.NONE, (risk,))
    again: tuple[str, ...] = ()
    if sepsis is not None and sepsis.state in CLOSED and policy.suppress_realert:
        if not _risen(policy, s, sepsis):
            return Decision(Action.NONE, (risk, _not_risen(policy, s, sepsis)))
        again = (f"Risk has risen to {s.risk:.1%} since the alert was {sepsis.state}.",)
    if policy.require_organ_dysfunction and not s.signs:
        quiet = (
            "No sign of organ dysfunction to verify yet; the alert waits for one "
            "(lactate, blood pressure, creatinine, platelets, bilirubin, oxygenation)."
        )
        return Decision(Action.NONE, (risk, quiet))
    return Decision(Action.FIRE, (risk, _uncertainty_sentence(s), *s.signs, *again))


def _not_risen(policy: UnitPolicy, s: Situation, sepsis: AlertMemory) -> str:
    reference = _reference(policy, s, sepsis)
    return (
        f"The alert was {sepsis.state}; a new one needs the risk to reach "
        f"{policy.realert_rise:g} × {reference:.1%} = {policy.realert_rise * reference:.1%}."
    )
