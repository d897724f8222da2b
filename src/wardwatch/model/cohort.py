"""Scoring a whole cohort offline on every core: features and prediction, whole patients a chunk
at a time.

`score_cohort(wide, model)` returns what `model.predict(build_features(wide))` returns — the
same numbers, the same index and row order — for a cohort of any size and any row order, faster:

- **Chunks of whole patients**, at most `CHUNK_ROWS` rows each. Features look back within a
  patient only (`wardwatch.features`), so a patient's rows are never split between chunks, and
  every row's features and prediction are those of the one-shot path, bit for bit. A chunk's
  feature matrix is about 24 MB and the next chunk reuses its memory, where all of set A's
  would be 2.3 GB of fresh pages, which this kind of virtual machine is slow to touch first.
- **Every core**: chunks are scored in forked worker processes, which inherit the cohort and
  the model copy-on-write (a task is one chunk number; only the four prediction columns come
  back), with LightGBM on one thread in each. Small cohorts, `workers=1` and platforms
  without fork score in this process (LightGBM then picks its threads as `RiskModel` does).
- **Freed memory kept**: a worker asks glibc's malloc to keep what it frees, so each chunk
  reuses the pages of the previous one; otherwise the chunk's matrices go back to the system
  and come back as about one fresh page per row, each costing microseconds to fault in here.

`Workers` is the fork pool itself, for other offline loops over chunks of patients
(`wardwatch.model.predict.predict_psv` writes its files in it).
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from wardwatch.features import build_features
from wardwatch.model.risk import PREDICTION_COLUMNS, RiskModel

# Rows per chunk: small enough that each matrix of a chunk (rows x 365 float64, about 24 MB)
# stays under glibc's 32 MB limit for memory it can keep and hand out again, large enough
# that per-chunk overheads (LightGBM calls, pandas slicing) are noise.
CHUNK_ROWS = 8192
_AHEAD = 2  # tasks in flight per worker: keeps every worker busy, bounds the memory queued

_T = TypeVar("_T")
_R = TypeVar("_R")


def score_cohort(
    wide: pd.DataFrame,
    model: RiskModel,
    *,
    workers: int | None = None,
    threads: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """`model.predict(build_features(wide))`, a chunk of whole patients at a time, on every core.

    `workers`: processes to use (default: every core this process may run on); 1 scores here.
    `threads`: LightGBM threads when scoring in this process (default: `RiskModel`'s choice);
    workers always use one. `wide` may come in any row order, as for `build_features`.
    """
    if len(wide) <= chunk_rows or "patient_id" not in wide.columns:
        return _predict(wide, model, threads)  # one chunk: nothing to split (or the error)
    plan = ChunkPlan.of(wide, chunk_rows)
    out = np.empty((len(PREDICTION_COLUMNS), len(wide)))
    count = min(usable_cores() if workers is None else workers, plan.chunks)
    if count < 2 or not Workers.available():
        for i in range(plan.chunks):
            rows = plan.rows(i)
            out[:, rows] = _columns(_predict(wide.iloc[rows], model, threads))
        return _frame(out, wide.index)
    with Workers(count, _inherit_cohort, (wide, model, plan)) as pool:
        for i, values in enumerate(pool.in_order(_score_inherited, range(plan.chunks))):
            out[:, plan.rows(i)] = values
    return _frame(out, wide.index)


def _predict(wide: pd.DataFrame, model: RiskModel, threads: int | None) -> pd.DataFrame:
    features = build_features(wide)
    return model.predict(features) if threads is None else model.predict(features, threads=threads)


def _columns(predictions: pd.DataFrame) -> np.ndarray:
    """The four prediction columns as one (4, rows) float64 array (the flag as 0.0 / 1.0)."""
    return predictions.loc[:, list(PREDICTION_COLUMNS)].to_numpy(dtype=np.float64).T


def _frame(out: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """`RiskModel.predict`'s frame from the assembled columns."""
    frame = dict(zip(PREDICTION_COLUMNS, out, strict=True))
    frame["ood"] = frame["ood"].astype(bool)
    return pd.DataFrame(frame, index=index)


# ---------------------------------------------------------------- chunks of whole patients


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """Which rows of a cohort frame make up each chunk: whole patients, at most `rows` rows.

    `order` lists the row positions patient by patient (None when the frame already holds
    each patient's rows together, the usual case: a chunk is then a plain slice); chunk i is
    `order[bounds[i]:bounds[i + 1]]`. A patient longer than a chunk gets a chunk of its own.
    """

    order: np.ndarray | None
    bounds: np.ndarray

    @classmethod
    def of(cls, wide: pd.DataFrame, rows: int = CHUNK_ROWS) -> ChunkPlan:
        codes = pd.factorize(wide["patient_id"], sort=False)[0]  # numbered as first seen
        grouped = bool((codes[1:] >= codes[:-1]).all())
        order = None if grouped else np.argsort(codes, kind="stable")
        in_order = codes if order is None else codes[order]
        ends = np.r_[np.flatnonzero(in_order[1:] != in_order[:-1]) + 1, len(codes)]
        cuts = [0]
        while cuts[-1] < len(codes):
            # The furthest patient end within `rows` of the last cut, else the next one.
            within = np.searchsorted(ends, cuts[-1] + rows, "right") - 1
            cuts.append(int(ends[max(within, np.searchsorted(ends, cuts[-1], "right"))]))
        return cls(order, np.asarray(cuts))

    @property
    def chunks(self) -> int:
        return len(self.bounds) - 1

    def rows(self, i: int) -> slice | np.ndarray:
        """Positions (for `iloc`) of chunk i's rows."""
        begin, end = int(self.bounds[i]), int(self.bounds[i + 1])
        return slice(begin, end) if self.order is None else self.order[begin:end]


# In a forked worker of `score_cohort`: the cohort, the model and the plan, inherited.
_cohort: tuple[pd.DataFrame, RiskModel, ChunkPlan] | None = None


def _inherit_cohort(wide: pd.DataFrame, model: RiskModel, plan: ChunkPlan) -> None:
    global _cohort  # set once per worker process, by the pool
    _cohort = wide, model, plan


def _score_inherited(i: int) -> np.ndarray:
    """Chunk i's four prediction columns (runs in a forked worker)."""
    if _cohort is None:
        raise RuntimeError("only workers started by score_cohort score inherited chunks")
    wide, model, plan = _cohort
    return _columns(_predict(wide.iloc[plan.rows(i)], model, threads=1))


# ---------------------------------------------------------------- the worker processes


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Workers:
    """Forked worker processes for an offline loop over chunks; use where `available()`.

    fork, not spawn: a worker starts in milliseconds with the imported modules, and inherits
    what `initializer(*initargs)` sets up (a cohort, a model) without any of it being pickled.
    Objects alive at the fork are frozen out of the garbage collector meanwhile: otherwise each
    worker's first collection would touch them all and copy the parent's memory page by page.
    """

    def __init__(
        self, count: int, initializer: Callable[..., None], initargs: tuple[Any, ...]
    ) -> None:
        self.count = count
        self.pool = ProcessPoolExecutor(
            count, multiprocessing.get_context("fork"), _start_worker, (initializer, initargs)
        )

    @staticmethod
    def available() -> bool:
        return os.name == "posix" and "fork" in multiprocessing.get_all_start_methods()

    def __enter__(self) -> Workers:
        gc.freeze()  # before the first task forks the workers
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(cancel_futures=True)
        gc.unfreeze()

    def in_order(self, task: Callable[[_T], _R], items: Iterable[_T]) -> Iterator[_R]:
        """`task(item)` for every item, run in the workers, results in the items' order; at
        most `_AHEAD` tasks per worker in flight, so a lazy `items` is read as work frees up."""
        in_flight: list[Future[_R]] = []
        for item in items:
            in_flight.append(self.pool.submit(task, item))
            if len(in_flight) >= self.count * _AHEAD:
                yield in_flight.pop(0).result()
        for future in in_flight:
            yield future.result()


def _start_worker(initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    _keep_freed_memory()
    initializer(*initargs)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def _keep_freed_memory() -> None:
    """Make glibc's malloc keep freed memory for reuse (a worker process only: it is short-lived
    and its peak is a few chunks). Blocks up to 32 MB come from the heap, never straight from
    the system, and a heap's free top is not handed back; elsewhere this does nothing."""
    process = ctypes.CDLL(None)  # the symbols already loaded, the C library's among them
    if hasattr(process, "mallopt"):
        process.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        process.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
