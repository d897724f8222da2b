"""A site configuration: the alert thresholds a hospital set for its own units, from its own data.

A model's operating threshold was chosen on another hospital's patients; the alert burden it
gives depends on the local case mix and measurement habits. `wardwatch calibrate-site` sets a
threshold per care unit from the site's own data (`site.calibrate`) and writes the result as
a small JSON document, this module's `SiteConfig`:

```json
{"format": "wardwatch-site-config", "format_version": 1,
 "model_version": "sepsis-…",          # the thresholds are on this model's risk scale only
 "thresholds": {"MICU": 0.041, "SICU": 0.029, "ICU": 0.035},
 "method": "budget", "target": {"alerts_per_100_patient_days": 20.0},
 "prior_shift": null | {"training_prevalence": …, "site_prevalence": {"MICU": …}},
 "data_hash": "sha256 of the input files", "created": "2026-11-23T…",
 "achieved": {"MICU": {"threshold": …, "alerts_per_100_patient_days": …, …}},
 "notes": ["…"]}
```

Unit codes are those of the live encounters and of `alerts.burden`: MICU (Unit1 = 1), SICU
(Unit2 = 1), and ICU for a stay with neither. `site_policy_book` turns a configuration into
the `PolicyBook` the alert policy reads; `SiteConfig.alerts` is the same decision as a plain
threshold, for `wardwatch predict-psv --site-config`.

With a prior shift, the site's probabilities are first moved from the training prevalence
to the site's estimated one (`shift_prior`), and the thresholds are on that adjusted scale.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.alerts.policy import PolicyBook, UnitPolicy, default_kind
from wardwatch.model.lineage import file_sha256

FORMAT = "wardwatch-site-config"
FORMAT_VERSION = 1
OTHER_ICU = "ICU"  # the unit code of a stay whose file records neither Unit1 nor Unit2


class SiteConfigError(ValueError):
    """A site configuration that cannot be used: unreadable, malformed, or for another model."""


def _probability(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SiteConfigError(f"{what} must be a number, not {value!r}")
    if not 0 < float(value) < 1:
        raise SiteConfigError(f"{what} must be a probability in (0, 1), not {value}")
    return float(value)


def shift_prior(
    risk: npt.ArrayLike, training_prevalence: float, site_prevalence: float
) -> npt.NDArray[np.float64]:
    """Probabilities moved from one prevalence to another (Bayes' rule on the class priors).

    The odds are scaled by the ratio of the prior odds: a model calibrated where 2 % of hours
    are positive, read at a site where 1 % are, halves (about) every risk.
    """
    p = np.clip(np.asarray(risk, dtype=np.float64), 1e-12, 1 - 1e-12)
    up = site_prevalence / training_prevalence
    down = (1 - site_prevalence) / (1 - training_prevalence)
    return up * p / (up * p + down * (1 - p))


@dataclass(frozen=True)
class PriorShift:
    """The training prevalence and the site's estimated prevalence per unit (hourly labels)."""

    training_prevalence: float
    site_prevalence: Mapping[str, float]

    def __post_init__(self) -> None:
        _probability(self.training_prevalence, "training_prevalence")
        for unit, value in self.site_prevalence.items():
            _probability(value, f"site_prevalence of {unit}")

    def adjust(self, risk: npt.ArrayLike, units: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Each row's risk moved to its unit's prevalence (units not listed stay as they are)."""
        out = np.asarray(risk, dtype=np.float64).copy()
        codes = np.asarray(units, dtype=object)
        for unit, prevalence in self.site_prevalence.items():
            rows = codes == unit
            out[rows] = shift_prior(out[rows], self.training_prevalence, prevalence)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "training_prevalence": self.training_prevalence,
            "site_prevalence": dict(self.site_prevalence),
        }


@dataclass(frozen=True)
class SiteConfig:
    """Per-unit thresholds of one model at one site, and how and on what data they were set."""

    model_version: str
    thresholds: Mapping[str, float]
    method: str
    data_hash: str
    created: str
    target: Mapping[str, float] = field(default_factory=dict)
    prior_shift: PriorShift | None = None
    achieved: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.thresholds:
            raise SiteConfigError("a site configuration needs at least one unit's threshold")
        for unit, value in self.thresholds.items():
            if not isinstance(unit, str) or not unit.strip():
                raise SiteConfigError(f"unit codes must be non-empty text, not {unit!r}")
            _probability(value, f"threshold of {unit}")

    # ------------------------------------------------------------ applying it

    def threshold_for(self, unit: str | None, default: float) -> float:
        """The unit's threshold as `site_policy_book` gives it: its own, else its kind's
        (MICU falls back to ICU, no unit to ward), else `default` (the model's)."""
        code = (unit or "").strip().upper()
        found = self.thresholds.get(code, self.thresholds.get(default_kind(code)))
        return float(default if found is None else found)

    def risk(self, risk: npt.ArrayLike, units: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The risks the thresholds apply to (prior-shifted when the site chose that)."""
        if self.prior_shift is None:
            return np.asarray(risk, dtype=np.float64)
        return self.prior_shift.adjust(risk, units)

    def alerts(
        self, risk: npt.ArrayLike, units: npt.ArrayLike, default: float
    ) -> npt.NDArray[np.bool_]:
        """Per row: the (adjusted) risk at or above its unit's threshold."""
        codes = np.asarray(units, dtype=object)
        limits = np.array([self.threshold_for(u, default) for u in codes], dtype=np.float64)
        return self.risk(risk, codes) >= limits

    def check_model(self, version: str) -> None:
        """Refuse a model other than the one the thresholds were set for."""
        if version != self.model_version:
            raise SiteConfigError(
                f"this site configuration was set for model {self.model_version}, not "
                f"{version}: its thresholds are on that model's risk scale; run "
                "`wardwatch calibrate-site` again with this model"
            )

    # ------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_version": self.model_version,
            "thresholds": dict(self.thresholds),
            "method": self.method,
            "target": dict(self.target),
            "prior_shift": None if self.prior_shift is None else self.prior_shift.to_dict(),
            "data_hash": self.data_hash,
            "created": self.created,
            "achieved": dict(self.achieved),
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> SiteConfig:
        if document.get("format") != FORMAT or document.get("format_version") != FORMAT_VERSION:
            raise SiteConfigError(f"not a {FORMAT} v{FORMAT_VERSION} document")
        missing = [k for k in ("model_version", "thresholds", "method", "data_hash", "created")
                   if k not in document]  # fmt: skip
        if missing:
            raise SiteConfigError(f"the site configuration lacks {missing}")
        if not isinstance(document["thresholds"], Mapping):
            raise SiteConfigError("thresholds must map unit codes to risks")
        shift = document.get("prior_shift")
        return cls(
            model_version=str(document["model_version"]),
            thresholds={str(k).upper(): v for k, v in document["thresholds"].items()},
            method=str(document["method"]),
            data_hash=str(document["data_hash"]),
            created=str(document["created"]),
            target=dict(document.get("target") or {}),
            prior_shift=None if shift is None else _prior_shift(shift),
            achieved=dict(document.get("achieved") or {}),
            notes=tuple(document.get("notes") or ()),
        )

    @classmethod
    def from_json(cls, text: str) -> SiteConfig:
        try:
            document = json.loads(text)
        except ValueError as error:
            raise SiteConfigError(f"not JSON ({error})") from error
        if not isinstance(document, Mapping):
            raise SiteConfigError("a site configuration is a JSON object")
        return cls.from_dict(document)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: Path) -> SiteConfig:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise SiteConfigError(f"{path}: cannot read it ({error.strerror})") from error
        try:
            return cls.from_json(text)
        except SiteConfigError as error:
            raise SiteConfigError(f"{path}: {error}") from error


def _prior_shift(document: object) -> PriorShift:
    if not isinstance(document, Mapping) or not isinstance(
        document.get("site_prevalence"), Mapping
    ):
        raise SiteConfigError("prior_shift needs training_prevalence and site_prevalence")
    return PriorShift(
        training_prevalence=document.get("training_prevalence"),  # type: ignore[arg-type]
        site_prevalence={str(k): v for k, v in document["site_prevalence"].items()},
    )


def site_policy_book(config: SiteConfig, base: PolicyBook | None = None) -> PolicyBook:
    """`base` (default: the default book) with the site's threshold for each of its units.

    A unit code that names a kind of care unit in `base` (ICU, ED, ward) sets that kind's
    threshold; any other code (MICU, SICU) gets a policy of its own, a copy of its kind's
    policy with the site's threshold, so one ICU's threshold does not move another's.
    """
    base = base or PolicyBook()
    policies = dict(base.policies)
    units = dict(base.units)
    for unit, threshold in config.thresholds.items():
        if unit in policies:
            policies[unit] = replace(policies[unit], threshold=threshold)
        else:
            own: UnitPolicy = replace(base.for_unit(unit), kind=unit, threshold=threshold)
            policies[unit] = own
            units[unit] = unit
    return PolicyBook(policies, units)


def stay_units(wide: pd.DataFrame) -> npt.NDArray[np.object_]:
    """Per row, its stay's unit code from the stay's first row: MICU, SICU, or ICU."""
    ids = wide["patient_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, int)
    first = {c: wide[c].to_numpy(np.float64)[starts] for c in ("Unit1", "Unit2") if c in wide}
    units = np.full(len(starts), OTHER_ICU, dtype=object)
    units[first.get("Unit2", np.zeros(len(starts))) == 1] = "SICU"
    units[first.get("Unit1", np.zeros(len(starts))) == 1] = "MICU"
    lengths = np.diff(np.r_[starts, len(ids)])
    return np.repeat(units, lengths)


def data_hash(path: Path) -> str:
    """sha256 of the input: of the file itself, or over a directory's .psv files (names and
    contents, sorted by name), so the same files give the same hash wherever they lie."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for member in sorted(path.rglob("*.psv")):
        name = member.relative_to(path).as_posix()
        digest.update(name.encode() + b"\0" + file_sha256(member).encode() + b"\n")
    return digest.hexdigest()


def finite(value: float | None) -> float | None:
    """A JSON-able float (NaN and infinities become None)."""
    return None if value is None or not math.isfinite(value) else float(value)
