"""Patient-level splits by a hash rule: deterministic, independent of cohort order and size.

A patient's split depends only on its id, so the same patient lands in the same split in every
run, on every machine, and when more patients are added later (no re-shuffling). The rule is
written into every artifact (`SPLIT_RULE`), so any patient's membership can be re-derived.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

SPLIT_SALT = "wardwatch-split-v1"
EARLY_STOPPING_SALT = "wardwatch-early-stopping-v1"
TRAIN, CALIBRATION, TEST = "train", "calibration", "test"
# Percent buckets: [0, 70) train, [70, 85) calibration, [85, 100) test.
SPLIT_BOUNDS = ((TRAIN, 70), (CALIBRATION, 85), (TEST, 100))
EARLY_STOPPING_PERCENT = 15  # of training patients, held out of fitting for early stopping
SPLIT_RULE = (
    f"bucket = int(sha256('{SPLIT_SALT}:' + patient_id)[:8], 16) % 100; "
    "train if bucket < 70, calibration if bucket < 85, else test. Within train, patients with "
    f"int(sha256('{EARLY_STOPPING_SALT}:' + patient_id)[:8], 16) % 100 < "
    f"{EARLY_STOPPING_PERCENT} are the early-stopping validation set."
)


def bucket(patient_id: str, salt: str = SPLIT_SALT) -> int:
    """The patient's percent bucket, 0..99, under `salt`."""
    digest = hashlib.sha256(f"{salt}:{patient_id}".encode()).hexdigest()
    return int(digest[:8], 16) % 100


def buckets(patient_ids: Iterable[str], salt: str = SPLIT_SALT) -> npt.NDArray[np.int64]:
    """`bucket` for many ids (hashing each distinct id once)."""
    ids = np.asarray(list(patient_ids), dtype=object)
    unique, inverse = np.unique(ids, return_inverse=True)
    return np.array([bucket(str(p), salt) for p in unique], dtype=np.int64)[inverse]


def assign_split(patient_ids: Iterable[str], salt: str = SPLIT_SALT) -> npt.NDArray[np.object_]:
    """'train', 'calibration' or 'test' for each id (rows of one patient agree)."""
    b = buckets(patient_ids, salt)
    names = [name for name, _ in SPLIT_BOUNDS]
    return np.asarray(names, dtype=object)[
        np.searchsorted([u for _, u in SPLIT_BOUNDS], b, "right")
    ]


def early_stopping_mask(patient_ids: Iterable[str]) -> npt.NDArray[np.bool_]:
    """True for the rows of patients held out of fitting to decide when boosting stops."""
    return buckets(patient_ids, EARLY_STOPPING_SALT) < EARLY_STOPPING_PERCENT
