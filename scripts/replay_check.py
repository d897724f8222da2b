"""Replay PhysioNet patients through the live pipeline and compare with predict-psv, score by score.

    .venv/bin/python scripts/replay_check.py [SOURCE] [--patients 1000] [--stagger 0.5]

SOURCE defaults to set A in ../shared (directory or .tar.gz); skips with a message when it is
absent. Prints how many patient-hours were compared, the largest difference between the live
score (stored by a ward round) and the offline score (the same model over the whole file),
and the replay's speed. Issue 4 asks for >= 1,000 patients to agree exactly.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select

from wardwatch.features import build_features
from wardwatch.ingest.pipeline import Pipeline
from wardwatch.model.artifact import load_shipped_model
from wardwatch.quality import blank_implausible
from wardwatch.replay import Replay, load_replay_cohort, plan_replay
from wardwatch.settings import Settings
from wardwatch.store import init_db, open_engine
from wardwatch.store.schema import scores

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet2019"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, nargs="?", default=SHARED / "training_setA.tar.gz")
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--stagger", type=float, default=0.5)
    args = parser.parse_args()
    if not args.source.exists():
        print(f"skipped: {args.source} is not here (set A lives in ../shared/data)")
        sys.exit(0)
    cohort = load_replay_cohort(args.source, args.patients)
    model = load_shipped_model()
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        engine = open_engine(settings.resolved_database_url)
        init_db(engine)
        plan = plan_replay(cohort, stagger_hours=args.stagger)
        started = time.perf_counter()
        summary = Replay(Pipeline.from_settings(engine, settings), model, plan).run()
        seconds = time.perf_counter() - started
        with engine.connect() as conn:
            query = select(scores.c.encounter_id, scores.c.hour, scores.c.risk)
            live = pd.DataFrame(conn.execute(query.order_by(scores.c.id)).all(),
                                columns=["encounter_id", "hour", "risk"])  # fmt: skip
    live = live.groupby(["encounter_id", "hour"])["risk"].last()
    offline = model.predict(build_features(blank_implausible(cohort)))["risk"].to_numpy()
    keys = pd.MultiIndex.from_arrays(
        [cohort["patient_id"] + "-icu", cohort["ICULOS"].astype("int64")]
    )
    offline = pd.Series(offline, index=keys)
    both = live.index.intersection(offline.index)
    diff = np.abs(live.loc[both].to_numpy() - offline.loc[both].to_numpy())
    print(f"patients: {cohort['patient_id'].nunique()}, patient-hours offline {len(offline)}, "
          f"live {len(live)}, compared {len(both)}")  # fmt: skip
    print(f"hours only offline: {len(offline.index.difference(live.index))}, "
          f"only live: {len(live.index.difference(offline.index))}")  # fmt: skip
    print(f"max |live - offline| = {diff.max():.3g}; identical: {int((diff == 0).sum())}")
    print(f"replay: {summary.ticks} ticks in {seconds:.0f} s ({summary.ticks / seconds:.1f} "
          f"hours/s), {summary.ingest.accepted} measurements, {summary.scores} scores, "
          f"{summary.alerts} alerts, {summary.reviews} review flags, "
          f"{summary.ingest.quarantined_total} quarantined")  # fmt: skip


if __name__ == "__main__":
    main()
