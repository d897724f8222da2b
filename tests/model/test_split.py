from __future__ import annotations

import numpy as np

from wardwatch.model.split import assign_split, bucket, early_stopping_mask
from wardwatch.model.threshold import choose_threshold
from wardwatch.model.uncertainty import bootstrap_patient_weights, negative_subsample


def test_split_is_a_stable_hash_rule():
    ids = [f"p{i:06d}" for i in range(1, 4001)]
    split = assign_split(ids)
    share = {s: float(np.mean(split == s)) for s in ("train", "calibration", "test")}
    assert abs(share["train"] - 0.70) < 0.03 and abs(share["test"] - 0.15) < 0.03
    assert list(assign_split(ids[::-1])) == list(split[::-1])  # order does not matter
    assert bucket("p000001") == bucket("p000001") and 0 <= bucket("p000001") < 100
    assert 0.1 < early_stopping_mask(ids).mean() < 0.2


def test_threshold_takes_any_scorer():
    risk = np.linspace(0, 1, 101)
    labels = (np.arange(101) >= 71).astype(int)
    ids = np.array(["a"] * 101, dtype=object)

    def accuracy(_ids, y, alerts):
        return float(np.mean(y == alerts))

    choice = choose_threshold(risk, labels, ids, scorer=accuracy, candidates=risk)
    assert choice.threshold == risk[71] and choice.score == 1.0


def test_bootstrap_and_subsampling():
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(50), 3)
    weights = bootstrap_patient_weights(codes, 50, rng)
    assert weights.reshape(50, 3).std(axis=1).max() == 0 and weights[::3].sum() == 50
    labels = np.r_[np.ones(10, int), np.zeros(990, int)]
    keep = negative_subsample(labels, 0.25, rng)
    assert keep[:10].all() and 0.15 < keep[10:].mean() < 0.35


def test_threshold_margin_takes_the_highest_within_tolerance():
    candidates = np.array([0.1, 0.2, 0.3, 0.4])
    table = {0.1: 0.40, 0.2: 0.50, 0.3: 0.48, 0.4: 0.30}
    risk = np.array([0.1, 0.2, 0.3, 0.4])

    def scorer(_ids, _y, alerts):  # the score of a threshold, read back from the alerts
        return table[float(risk[alerts].min())]

    ids, y = np.array(["a"] * 4, dtype=object), np.zeros(4, int)
    exact = choose_threshold(risk, y, ids, scorer=scorer, candidates=candidates)
    margin = choose_threshold(risk, y, ids, scorer=scorer, candidates=candidates, tolerance=0.03)
    assert (exact.threshold, exact.best_threshold) == (0.2, 0.2)
    assert (margin.threshold, margin.score, margin.best_score) == (0.3, 0.48, 0.50)
