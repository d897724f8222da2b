"""A reference profile: what a cohort's inputs and the model's outputs looked like, in numbers.

Drift is a comparison, so both sides are reduced to the same small summary (`Profile`):

- per measured variable, the **share of patient-hours it was measured** in (how often this
  hospital orders or charts it: missingness drift is drift), and the distribution of its values
  as a `Distribution`: counts in **fixed bins whose edges are the reference's deciles**, the
  **CDF at the reference's percentiles**, and the median and quartiles;
- the **risk** the model gave every hour, as a `Distribution` on the same terms, the share of
  hours at or above the alert threshold (the **alert rate**) and the share flagged out of
  distribution;
- with outcomes (SepsisLabel), the **calibration**: mean risk against the observed share of
  labelled hours, overall and in each risk bin.

The reference fixes the bins; a current cohort is profiled `like=` the reference, on the same
edges and grid, so the two can be compared without keeping a single patient's values. A profile
is JSON of a few tens of kilobytes (`save_profile`, `load_profile`; the one built from the
model's training patients ships with the package, `load_shipped_reference`).

Everything is vectorised per column (a partition for the quantiles, a binary search of each
value among at most 100 edges), so all of set A profiles in seconds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from wardwatch.ingest.psv import LABEL, MEASURED

FORMAT = "wardwatch-reference-profile"
FORMAT_VERSION = 1
SHIPPED_NAME = "shipped.json"
BIN_QUANTILES = np.linspace(0.1, 0.9, 9)  # decile edges: the bins PSI is computed on
GRID_QUANTILES = np.linspace(0.01, 0.99, 99)  # percentiles: where the CDF is kept for KS
_DIGITS = 6  # significant digits kept in JSON: far finer than any charted value


class ProfileError(ValueError):
    """A profile that cannot be built, read, or compared; the message says what to fix."""


def _round(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(f"{value:.{_DIGITS}g}")


def _rounded(values: npt.ArrayLike) -> tuple[float, ...]:
    return tuple(float(f"{v:.{_DIGITS}g}") for v in np.asarray(values, dtype=np.float64))


@dataclass(frozen=True)
class Distribution:
    """Values of one quantity on fixed bins and grid points (both from the reference).

    Bins are (-inf, edges[0]], (edges[0], edges[1]], ..., (edges[-1], inf): `shares` has one
    entry more than `edges`. `cdf[i]` is the share of values at or below `grid[i]`. Both are
    empty when no value was seen (`count` 0).
    """

    count: int
    edges: tuple[float, ...]
    shares: tuple[float, ...]
    grid: tuple[float, ...]
    cdf: tuple[float, ...]
    median: float | None = None
    q1: float | None = None
    q3: float | None = None

    @property
    def iqr(self) -> float | None:
        return None if self.q1 is None or self.q3 is None else self.q3 - self.q1

    @classmethod
    def of(cls, values: npt.ArrayLike, like: Distribution | None = None) -> Distribution:
        """The distribution of `values` (NaN ignored), on `like`'s bins, or its own deciles."""
        x = np.asarray(values, dtype=np.float64)
        x = x[~np.isnan(x)]
        if like is not None:
            edges, grid = np.asarray(like.edges), np.asarray(like.grid)
        elif len(x):
            edges = np.unique(np.quantile(x, BIN_QUANTILES))
            grid = np.unique(np.quantile(x, GRID_QUANTILES))
        else:
            edges = grid = np.empty(0)
        if not len(x):
            return cls(0, _rounded(edges), (), _rounded(grid), ())
        q1, median, q3 = np.quantile(x, [0.25, 0.5, 0.75])
        return cls(
            count=len(x),
            edges=_rounded(edges),
            shares=_rounded(_bin_shares(x, edges)),
            grid=_rounded(grid),
            cdf=_rounded(_cdf_at(x, grid)),
            median=_round(median),
            q1=_round(q1),
            q3=_round(q3),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Distribution:
        return cls(
            int(data["count"]),
            *(tuple(float(v) for v in data[k]) for k in ("edges", "shares", "grid", "cdf")),
            *(None if data.get(k) is None else float(data[k]) for k in ("median", "q1", "q3")),
        )


def _bin_shares(x: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]) -> np.ndarray:
    # side="left": a value equal to an edge falls in the bin that edge closes, as the
    # quantile that made the edge counted it (ties matter: many vitals are whole numbers).
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1)
    return counts / len(x)


def _cdf_at(x: npt.NDArray[np.float64], grid: npt.NDArray[np.float64]) -> np.ndarray:
    """Share of `x` at or below each grid point, from one binary search per value."""
    below = np.bincount(np.searchsorted(grid, x, side="left"), minlength=len(grid) + 1)
    return np.cumsum(below)[: len(grid)] / len(x)


@dataclass(frozen=True)
class VariableProfile:
    """How often a variable was measured, and what its values were."""

    measured_share: float  # share of patient-hours with a value
    values: Distribution


@dataclass(frozen=True)
class Calibration:
    """Mean risk against the observed share of labelled hours, overall and per risk bin."""

    hours: int
    labelled_hours: int
    mean_risk: float
    observed: float
    bins: tuple[tuple[int, float | None, float | None], ...]  # (hours, mean risk, observed)

    @property
    def observed_to_expected(self) -> float | None:
        return self.observed / self.mean_risk if self.mean_risk > 0 else None

    @property
    def ece(self) -> float:
        """Expected calibration error over the bins, weighted by hours."""
        gaps = [n * abs(r - o) for n, r, o in self.bins if n and r is not None and o is not None]
        return sum(gaps) / self.hours if self.hours else 0.0


@dataclass(frozen=True)
class Profile:
    """A cohort in numbers; `like=` another profile puts it on that profile's bins."""

    hours: int
    patients: int
    variables: dict[str, VariableProfile]
    risk: Distribution | None = None
    threshold: float | None = None
    alert_rate: float | None = None  # share of scored hours with risk >= threshold
    ood_share: float | None = None  # share of scored hours flagged out of distribution
    calibration: Calibration | None = None
    model_version: str | None = None
    source: str = ""
    data_hash: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. the alert burden it projects

    def with_lineage(self, **changes: Any) -> Profile:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "hours": self.hours,
            "patients": self.patients,
            "model_version": self.model_version,
            "source": self.source,
            "data_hash": self.data_hash,
            "threshold": self.threshold,
            "alert_rate": self.alert_rate,
            "ood_share": self.ood_share,
            "variables": {
                name: {"measured_share": v.measured_share, "values": v.values.to_dict()}
                for name, v in self.variables.items()
            },
            "risk": None if self.risk is None else self.risk.to_dict(),
            "calibration": None if self.calibration is None else asdict(self.calibration),
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        if data.get("format") != FORMAT:
            raise ProfileError(f"not a reference profile (format {data.get('format')!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise ProfileError(
                f"profile format version {data.get('format_version')} is not "
                f"{FORMAT_VERSION}: rebuild it with scripts/build_reference.py"
            )
        variables = {
            name: VariableProfile(float(v["measured_share"]), Distribution.from_dict(v["values"]))
            for name, v in data["variables"].items()
        }
        cal = data.get("calibration")
        calibration = None if cal is None else Calibration(
            cal["hours"], cal["labelled_hours"], cal["mean_risk"], cal["observed"],
            tuple(tuple(b) for b in cal["bins"]),
        )  # fmt: skip
        risk = None if data.get("risk") is None else Distribution.from_dict(data["risk"])
        return cls(
            int(data["hours"]), int(data["patients"]), variables, risk, data.get("threshold"),
            data.get("alert_rate"), data.get("ood_share"), calibration,
            data.get("model_version"), data.get("source", ""), data.get("data_hash"),
            dict(data.get("notes") or {}),
        )  # fmt: skip


# ---------------------------------------------------------------- building


def has_labels(wide: pd.DataFrame) -> bool:
    """Whether the cohort carries outcomes: a SepsisLabel column with at least one 1."""
    return LABEL in wide.columns and bool((wide[LABEL] == 1).any())


def profile_cohort(
    wide: pd.DataFrame,
    outputs: pd.DataFrame | None = None,
    threshold: float | None = None,
    *,
    like: Profile | None = None,
    source: str = "",
    model_version: str | None = None,
) -> Profile:
    """The profile of a wide hourly frame (one row per patient-hour, the PSV columns).

    `outputs` is the model's `risk` (and `ood`) per row of `wide`, in the same order; without
    it the profile has no risk side. `like` puts every distribution on that profile's bins.
    """
    if "patient_id" not in wide.columns:
        raise ProfileError("the frame has no patient_id column: is it a wide hourly frame?")
    lacking = [v for v in MEASURED if v not in wide.columns]
    if lacking:
        raise ProfileError(f"the frame lacks the measured variables {lacking[:5]}")
    if outputs is not None and len(outputs) != len(wide):
        raise ProfileError(f"{len(outputs)} model outputs for {len(wide)} patient-hours")
    variables = {v: _variable(wide[v].to_numpy(np.float64), like, v) for v in MEASURED}
    profile = Profile(len(wide), int(wide["patient_id"].nunique()), variables, source=source,
                      model_version=model_version)  # fmt: skip
    if outputs is None or not len(wide):
        return profile
    labels = wide[LABEL].to_numpy(np.float64) if has_labels(wide) else None
    ood = outputs["ood"].to_numpy(bool) if "ood" in outputs.columns else None
    return with_outputs(profile, outputs["risk"].to_numpy(np.float64), threshold, ood=ood,
                        labels=labels, like=like)  # fmt: skip


def _variable(column: npt.NDArray[np.float64], like: Profile | None, name: str) -> VariableProfile:
    measured = ~np.isnan(column)
    share = float(measured.mean()) if len(column) else 0.0
    reference = like.variables[name].values if like is not None and name in like.variables else None
    return VariableProfile(_round(share) or 0.0, Distribution.of(column[measured], reference))


def with_outputs(
    profile: Profile,
    risk: npt.ArrayLike,
    threshold: float | npt.ArrayLike | None,
    *,
    ood: npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
    like: Profile | None = None,
) -> Profile:
    """`profile` with the model's side: the risk distribution, the alert rate at `threshold`
    (one for all, or one per score), the OOD share and, with `labels`, the calibration.

    The scores need not be one per row of the profiled frame: the store's are one per ward
    round, and a run reads the scores stored since the last one."""
    risk = np.asarray(risk, dtype=np.float64)
    if not len(risk):
        return profile
    found: dict[str, Any] = {"risk": Distribution.of(risk, like.risk if like else None)}
    if threshold is not None:
        limits = np.asarray(threshold, dtype=np.float64)
        found["threshold"] = _round(float(np.median(limits)))
        found["alert_rate"] = _round(float(np.mean(risk >= limits)))
    if ood is not None:
        found["ood_share"] = _round(float(np.mean(np.asarray(ood, dtype=bool))))
    if labels is not None:
        edges = np.asarray((like.risk if like and like.risk else found["risk"]).edges)
        found["calibration"] = calibration_of(risk, np.asarray(labels, np.float64), edges)
    return replace(profile, **found)


def calibration_of(
    risk: npt.NDArray[np.float64], labels: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
) -> Calibration:
    """Mean risk and observed share of labelled hours, overall and in each risk bin."""
    known = ~np.isnan(labels)
    risk, labelled = risk[known], labels[known] == 1
    where = np.searchsorted(edges, risk, side="left")
    bins = []
    for b in range(len(edges) + 1):
        inside = where == b
        n = int(inside.sum())
        bins.append((n, _round(risk[inside].mean()) if n else None,
                     _round(labelled[inside].mean()) if n else None))  # fmt: skip
    return Calibration(
        hours=len(risk),
        labelled_hours=int(labelled.sum()),
        mean_risk=_round(float(risk.mean())) if len(risk) else 0.0,
        observed=_round(float(labelled.mean())) if len(risk) else 0.0,
        bins=tuple(bins),
    )


# ---------------------------------------------------------------- files


def save_profile(profile: Profile, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(profile.to_dict(), separators=(",", ":"), allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def load_profile(path: Path) -> Profile:
    """A profile saved by `save_profile`; a clear `ProfileError` for anything else."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ProfileError(f"{path}: no such reference profile") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProfileError(f"{path}: not a readable reference profile ({error})") from error
    try:
        return Profile.from_dict(data)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, ProfileError):
            raise
        raise ProfileError(f"{path}: an incomplete reference profile ({error!r})") from error


def load_shipped_reference() -> Profile:
    """The profile of the shipped model's training patients (set A, training split)."""
    resource = resources.files("wardwatch.monitor").joinpath("reference_data", SHIPPED_NAME)
    if not resource.is_file():
        raise ProfileError(
            "the shipped reference profile is missing: build it with "
            "`python scripts/build_reference.py` (needs PhysioNet set A)"
        )
    return Profile.from_dict(json.loads(resource.read_text(encoding="utf-8")))
