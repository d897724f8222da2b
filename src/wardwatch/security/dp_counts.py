"""Counts for public reports, with differential-privacy noise and the epsilon stated.

A public report ("312 patients were alerted on, 41 of them septic") can be combined with
other releases to learn about one person, most easily in small groups. Adding noise drawn for
a privacy budget epsilon bounds what any one patient's presence can change, whatever else an
attacker knows. The mechanism is the discrete Laplace (two-sided geometric) mechanism from
OpenDP, applied to the whole table at once: its L1 sensitivity is `contributions`, the most
counts one patient can change (1 when the rows partition the patients, e.g. by unit), and the
scale is the smallest OpenDP proves private for (`contributions`, epsilon). The epsilon that
OpenDP accounts is the one stated on every count, never just the one requested.

Post-processing (which costs no privacy): negative noisy counts are published as 0. The
unclamped value is kept in `NoisyCount.noisy` for anyone summing counts, since clamping
biases sums upwards.

`seed` exists for tests and reproducible examples only: OpenDP draws from a cryptographic
generator that cannot be seeded (by design), so a seeded call draws the same distribution
with numpy instead, and says so in `mechanism`. Publish only unseeded results.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import opendp.prelude as dp

# make_laplace is an OpenDP "contrib" component (community-contributed, not yet through
# OpenDP's vetting process); that is the only feature enabled: not "floating-point", not
# "honest-but-curious", which would weaken the guarantees.
dp.enable_features("contrib")

MECHANISM = "discrete Laplace, OpenDP make_laplace over integers"
SEEDED = "discrete Laplace, numpy with a fixed seed: for tests only, never publish"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class NoisyCount:
    """One published count: the value to print, and how it was made noisy."""

    count: int  # noisy and clamped at 0: what a report shows
    noisy: int  # before clamping (unbiased; may be negative)
    epsilon: float  # the privacy loss of the whole table this count belongs to
    scale: float  # the discrete Laplace scale b: noise has P(k) ∝ exp(-|k| / b)
    mechanism: str
    contributions: int  # the most counts of the table one patient can change
    margin95: int  # |noise| ≤ margin95 with probability ≥ 95 %

    def __str__(self) -> str:
        return f"{self.count} (±{self.margin95}, ε = {self.epsilon:g})"


def noisy_counts(
    counts: Mapping[str, int],
    epsilon: float,
    seed: int | None = None,
    *,
    contributions: int = 1,
) -> dict[str, NoisyCount]:
    """Each count with discrete Laplace noise; the table as a whole is epsilon-DP."""
    _check(counts, epsilon, contributions)
    if not counts:
        return {}
    scale, measurement = _measurement(epsilon, contributions)
    spent = float(measurement.map(contributions))
    values = [int(v) for v in counts.values()]
    if seed is None:
        noisy, mechanism = [int(v) for v in measurement(values)], MECHANISM
    else:
        noisy, mechanism = _seeded(values, scale, seed), SEEDED
    margin = margin_of_error(scale)
    return {
        name: NoisyCount(max(value, 0), value, spent, scale, mechanism, contributions, margin)
        for name, value in zip(counts, noisy, strict=True)
    }


def statement(result: Mapping[str, NoisyCount]) -> str:
    """The sentence a report prints under its noisy table."""
    if not result:
        return "No counts were published."
    first = next(iter(result.values()))
    rows = "row" if first.contributions == 1 else "rows"
    return (
        f"Counts carry differential-privacy noise: {first.mechanism}, scale {first.scale:g}. "
        f"The table as a whole has ε = {first.epsilon:g}, each patient counted in at most "
        f"{first.contributions} {rows}. A count is within ±{first.margin95} of the true count "
        f"{CONFIDENCE:.0%} of the time; noisy counts below zero are shown as 0."
    )


def margin_of_error(scale: float, confidence: float = CONFIDENCE) -> int:
    """The smallest k with P(|noise| > k) ≤ 1 - confidence for discrete Laplace(scale).

    P(|X| > k) = 2 q^(k+1) / (1 + q), with q = exp(-1 / scale).
    """
    q = math.exp(-1.0 / scale)
    k = math.log((1 - confidence) * (1 + q) / 2) / math.log(q) - 1
    return max(0, math.ceil(k - 1e-9))


def _measurement(epsilon: float, contributions: int) -> tuple[float, dp.Measurement]:
    """The smallest scale OpenDP proves epsilon-DP for, and the measurement with it."""
    space = dp.vector_domain(dp.atom_domain(T=dp.i64)), dp.l1_distance(T=dp.i64)

    def make(scale: float) -> dp.Measurement:
        return dp.m.make_laplace(*space, scale=scale)

    scale = float(dp.binary_search_param(make, d_in=contributions, d_out=epsilon))
    return scale, make(scale)


def _seeded(values: list[int], scale: float, seed: int) -> list[int]:
    """Discrete Laplace as the difference of two geometric draws (same law as OpenDP's)."""
    rng = np.random.default_rng(seed)
    p = 1.0 - math.exp(-1.0 / scale)
    noise = rng.geometric(p, len(values)) - rng.geometric(p, len(values))
    return [v + int(n) for v, n in zip(values, noise, strict=True)]


def _check(counts: Mapping[str, int], epsilon: float, contributions: int) -> None:
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive finite number, not {epsilon!r}")
    if not isinstance(contributions, Integral) or contributions < 1:
        raise ValueError(f"contributions must be a positive whole number, not {contributions!r}")
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
            raise ValueError(f"count {name!r} must be a non-negative whole number, not {value!r}")
