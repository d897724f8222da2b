"""Noisy counts: the epsilon is stated, the noise has the scale it claims, nothing is negative."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wardwatch.security.dp_counts import (
    MECHANISM,
    SEEDED,
    margin_of_error,
    noisy_counts,
    statement,
)

N = 20_000  # cells per statistical test: the variance estimate is then within ~2 % (1 sd)


def _discrete_laplace_variance(scale: float) -> float:
    q = math.exp(-1.0 / scale)
    return 2 * q / (1 - q) ** 2


def _noise(result, true: int) -> np.ndarray:
    return np.array([c.noisy for c in result.values()]) - true


def test_the_epsilon_and_mechanism_are_stated_on_every_count():
    result = noisy_counts({"MICU": 120, "SICU": 80, "ED": 3}, epsilon=0.5)
    for count in result.values():
        assert count.epsilon == 0.5
        assert count.scale == pytest.approx(2.0)  # contributions / epsilon
        assert count.mechanism == MECHANISM
        assert count.contributions == 1
    assert "ε = 0.5" in statement(result)
    assert "OpenDP" in statement(result)


def test_a_patient_in_several_rows_needs_more_noise_for_the_same_epsilon():
    result = noisy_counts({"a": 10, "b": 10}, epsilon=1.0, contributions=3)
    assert [c.scale for c in result.values()] == pytest.approx([3.0, 3.0])
    assert {c.epsilon for c in result.values()} == {1.0}
    assert "at most 3 rows" in statement(result)


def test_seeded_noise_has_the_stated_scale():
    result = noisy_counts({str(i): 1000 for i in range(N)}, epsilon=0.5, seed=20190101)
    noise = _noise(result, 1000)
    expected = _discrete_laplace_variance(2.0)
    assert noise.var() == pytest.approx(expected, rel=0.06)
    assert abs(noise.mean()) < 4 * math.sqrt(expected / N)
    margin = next(iter(result.values())).margin95
    assert 0.95 <= np.mean(np.abs(noise) <= margin) <= 0.975  # the smallest such margin
    assert np.mean(np.abs(noise) <= margin - 1) < 0.95
    assert {c.mechanism for c in result.values()} == {SEEDED}


def test_the_same_seed_gives_the_same_counts_and_another_does_not():
    counts = {str(i): 50 for i in range(100)}
    first = noisy_counts(counts, epsilon=0.2, seed=7)
    assert noisy_counts(counts, epsilon=0.2, seed=7) == first
    assert noisy_counts(counts, epsilon=0.2, seed=8) != first


def test_opendp_noise_has_the_stated_scale():
    """Unseeded (OpenDP cannot be seeded): the bounds are ~6 standard errors wide, so a false
    failure is rarer than one run in a billion."""
    result = noisy_counts({str(i): 1000 for i in range(N)}, epsilon=0.5)
    noise = _noise(result, 1000)
    expected = _discrete_laplace_variance(2.0)
    assert noise.var() == pytest.approx(expected, rel=0.12)
    assert abs(noise.mean()) < 6 * math.sqrt(expected / N)
    assert np.count_nonzero(noise) > N / 2  # noise was really added


def test_published_counts_are_never_negative():
    result = noisy_counts({str(i): 0 for i in range(2000)}, epsilon=0.1, seed=1)
    assert min(c.count for c in result.values()) == 0
    assert min(c.noisy for c in result.values()) < 0  # clamping had work to do
    assert all(c.count == max(c.noisy, 0) for c in result.values())


def test_opendp_counts_are_never_negative():
    result = noisy_counts({str(i): 0 for i in range(200)}, epsilon=0.1)
    assert all(c.count >= 0 for c in result.values())


def test_margin_of_error_is_the_95_percent_quantile():
    # P(|X| > k) = 2 q^(k+1) / (1 + q) for discrete Laplace with q = exp(-1/scale)
    for scale in (0.5, 2.0, 10.0):
        q = math.exp(-1 / scale)
        k = margin_of_error(scale)
        assert 2 * q ** (k + 1) / (1 + q) <= 0.05
        assert k == 0 or 2 * q**k / (1 + q) > 0.05


def test_nothing_to_count_gives_nothing():
    assert noisy_counts({}, epsilon=1.0) == {}
    assert statement({}) == "No counts were published."


@pytest.mark.parametrize("epsilon", [0, -1.0, math.nan, math.inf, "1"])
def test_epsilon_must_be_positive_and_finite(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        noisy_counts({"a": 1}, epsilon=epsilon)


@pytest.mark.parametrize("value", [-1, 2.5, True, "3"])
def test_counts_must_be_whole_and_non_negative(value):
    with pytest.raises(ValueError, match="count 'a'"):
        noisy_counts({"a": value}, epsilon=1.0)


def test_contributions_must_be_positive():
    with pytest.raises(ValueError, match="contributions"):
        noisy_counts({"a": 1}, epsilon=1.0, contributions=0)
