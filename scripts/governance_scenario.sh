#!/usr/bin/env bash
# The governance scenario end to end, on a scratch store: train a second model, run it in
# shadow on replayed patients, compare, promote it through the gates, roll back, verify.
#
#   scripts/governance_scenario.sh [SET_A_DIR] [HOME]
#
# SET_A_DIR: PhysioNet 2019 training set A (.psv files; default /tmp/setA/training_setA).
# Takes about 5 minutes on 2 cores (training ~1.5 min, the 300-patient replay ~2.5 min).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SETA="${1:-/tmp/setA/training_setA}"
export WARDWATCH_HOME="${2:-$(mktemp -d -t wardwatch-governance-XXXX)}" COLUMNS=160
W="$ROOT/.venv/bin/wardwatch"
SAMPLE="$ROOT/src/wardwatch/data/physionet_sample/setA_sample.tar.gz"
[ -d "$SETA" ] || { echo "no set A at $SETA: give its directory as the first argument" >&2; exit 2; }
echo "scratch store: $WARDWATCH_HOME"
"$W" db init
"$ROOT/.venv/bin/python" - <<'PY'
import os
from datetime import UTC, datetime
from pathlib import Path
from wardwatch.security import users
from wardwatch.settings import Settings
from wardwatch.store import init_db, open_engine
engine = open_engine(Settings(home=Path(os.environ["WARDWATCH_HOME"])).resolved_database_url)
init_db(engine)
with engine.begin() as conn:  # scenario accounts: governance and a data scientist
    for user_id, role in (("gov.grace", "auditor"), ("ds.fisher", "data_scientist")):
        users.add_user(conn, user_id, role, "scenario only, never a real password",
                       at=datetime.now(UTC), by="scenario")
PY
"$W" train "$SETA" --out "$WARDWATCH_HOME/candidate" --members 3 --seed 7
"$W" models register "$WARDWATCH_HOME/candidate" --by ds.fisher --label "3-member ensemble, seed 7"
CANDIDATE=$(ls "$WARDWATCH_HOME/models" | head -1)
ACTIVE=$("$W" models list | grep -o "sepsis-[0-9a-f]*" | grep -v "$CANDIDATE" | head -1)
"$W" models shadow "$CANDIDATE" --by ds.fisher --reason "compare on replayed patients first"
"$W" replay "$SAMPLE" --speed max
"$W" models compare "$ACTIVE" "$CANDIDATE" --out "$WARDWATCH_HOME/compare.json"
"$W" models promote "$CANDIDATE" --by gov.grace --data "$SAMPLE" \
  --reason "shadow run agreed; gates passed on the held-out sample"
"$W" models rollback --by gov.grace --reason "rollback drill"
"$W" models history
"$W" audit verify
