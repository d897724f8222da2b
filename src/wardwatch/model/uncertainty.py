"""Uncertainty from a small bagged ensemble: each member sees a bootstrap sample of patients.

A member's training set draws the training patients with replacement (a patient drawn twice
counts twice: its rows get weight 2), so members differ the way models trained on another
sample of the same hospital would. The spread of their calibrated risks for one input — the
standard deviation over members — is reported beside every prediction: large where the
training data were thin (rare physiology, few similar patients), small where they were dense.
It is epistemic uncertainty about the model, not the patient's outcome noise; it is not an
interval with coverage guarantees.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def bootstrap_patient_weights(
    patient_codes: npt.NDArray[np.int64], n_patients: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Row weights for one bootstrap sample: how often each row's patient was drawn."""
    drawn = rng.integers(0, n_patients, size=n_patients)
    multiplicity = np.bincount(drawn, minlength=n_patients).astype(np.float64)
    return multiplicity[patient_codes]


def negative_subsample(
    labels: npt.NDArray[np.int64], rate: float, rng: np.random.Generator
) -> npt.NDArray[np.bool_]:
    """Keep every positive hour and a `rate` share of negative hours, drawn at random."""
    return (labels == 1) | (rng.random(len(labels)) < rate)


def ensemble_spread(member_risks: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Standard deviation over members (axis 0) of their calibrated risks."""
    if member_risks.shape[0] < 2:
        return np.zeros(member_risks.shape[1])
    return member_risks.std(axis=0, ddof=1)
