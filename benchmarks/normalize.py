"""Throughput of terminology.normalize, in rows per second, and its latency per HL7 message.

    .venv/bin/python benchmarks/normalize.py [ROWS ...]

First the time per call for one HL7 v2 message (five OBX rows: the live feed normalizes and
commits each message on its own, so at 1,000 messages/s normalize has about 0.3 ms). Then three
frames per size: PhysioNet values as LOINC codes in canonical units (nothing to convert), the
same values as wardwatch.ingest.psv sends them (column names, no unit), and a mixed feed (local
codes, CIEL ids under the LOINC system, mmol/L glucose, degF temperatures, FiO2 in percent, some
text values and bad units). Run by hand or in CI; never as a timed test.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from wardwatch.domain import REPORTED_COLUMNS, Reported, reported_frame
from wardwatch.terminology import normalize, variables

MIXED = [  # system, code, unit, value generator
    ("http://loinc.org", "2345-7", "mmol/L", lambda r, n: r.normal(7, 2, n)),
    ("LN", "8310-5", "[degF]", lambda r, n: r.normal(98.6, 1.5, n)),
    ("LN", "3150-0", "%", lambda r, n: r.choice([21.0, 30.0, 40.0, 60.0], n)),
    (
        "http://loinc.org",
        "5087AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "beats/minute",
        lambda r, n: r.normal(90, 15, n),
    ),
    ("urn:oid:1.2.3.4.5.local", "999", None, lambda r, n: r.gamma(2, 1, n)),
    ("LN", "14682-9", "umol/L", lambda r, n: r.gamma(2, 50, n)),
    ("LN", "8480-6", "mmHg", lambda r, n: r.normal(120, 20, n)),
    ("LN", "2524-7", "furlongs", lambda r, n: r.gamma(2, 1, n)),  # rejected: unit mismatch
    ("L", "12345", "mg/dL", lambda r, n: r.normal(1, 0.1, n)),  # rejected: unmapped
]


def physionet_frame(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    table = variables().dropna(subset=["loinc"])
    pick = rng.integers(0, len(table), rows)
    values = rng.normal(table["normal_low"].fillna(50).to_numpy()[pick], 1.0)
    return _frame(
        rows,
        rng,
        "http://loinc.org",
        table["loinc"].to_numpy()[pick],
        table["unit"].to_numpy()[pick],
        np.round(values, 2),
        "psv",
    )


def psv_frame(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """What wardwatch.ingest.psv sends: column names under "physionet2019", no unit."""
    frame = physionet_frame(rows, rng)
    names = variables().dropna(subset=["loinc"]).set_index("loinc")["physionet"]
    frame["system"] = pd.array(np.full(rows, "physionet2019", dtype=object), dtype="str")
    frame["code"] = frame["code"].map(names).astype("str")
    frame["unit"] = pd.array([None] * rows, dtype="str")
    return frame


def mixed_frame(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    pick = rng.integers(0, len(MIXED), rows)
    values = np.empty(rows)
    for i, (_, _, _, make) in enumerate(MIXED):
        values[pick == i] = np.round(make(rng, int((pick == i).sum())), 2)
    systems = np.array([m[0] for m in MIXED], dtype=object)[pick]
    units = np.array([m[2] for m in MIXED], dtype=object)[pick]
    frame = _frame(
        rows,
        rng,
        systems,
        np.array([m[1] for m in MIXED], dtype=object)[pick],
        units,
        values,
        "hl7v2",
    )
    text = rng.random(rows) < 0.01  # 1 % arrive as text only, some of it not a number
    frame.loc[text, "value_text"] = np.where(rng.random(int(text.sum())) < 0.5, "<0.5", "pending")
    frame.loc[text, "value"] = np.nan
    return frame


def _frame(rows, rng, systems, codes, units, values, source) -> pd.DataFrame:
    start = pd.Timestamp("2024-01-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "patient_id": pd.array(
                np.char.add("p", (rng.integers(0, 20_000, rows)).astype(str)), dtype="str"
            ),
            "encounter_id": pd.array([None] * rows, dtype="str"),
            "system": pd.array(np.broadcast_to(systems, rows), dtype="str"),
            "code": pd.array(codes, dtype="str"),
            "display": pd.array([None] * rows, dtype="str"),
            "value": values.astype("float64"),
            "value_text": pd.array([None] * rows, dtype="str"),
            "comparator": pd.array([None] * rows, dtype="str"),
            "unit": pd.array(units, dtype="str"),
            "effective_at": start
            + pd.to_timedelta(rng.integers(0, 3_600 * 24 * 30, rows), unit="s"),
            "source": pd.array([source] * rows, dtype="str"),
            "source_id": pd.array(np.arange(rows).astype(str), dtype="str"),
            "payload": pd.array([""] * rows, dtype="str"),
        }
    )
    return frame[list(REPORTED_COLUMNS)]


def message_frame() -> pd.DataFrame:
    """One HL7 v2 ORU message as wardwatch.ingest.hl7v2 reports it: five LOINC results."""
    when = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    results = [
        ("8867-4", 72.0, "/min"),
        ("9279-1", 18.0, "/min"),
        ("8310-5", 37.2, "Cel"),
        ("2524-7", 2.1, "mmol/L"),
        ("777-3", 221.0, "10*3/uL"),
    ]
    items = [
        Reported("p1", None, "LN", code, None, value, None, None, unit, when, "hl7v2", f"M1|{i}")
        for i, (code, value, unit) in enumerate(results, start=1)
    ]
    return reported_frame(items)


def measure_message(calls: int = 1_000, rounds: int = 7) -> None:
    """Milliseconds per call for one message (best and median of ``rounds``)."""
    frame = message_frame()
    for _ in range(200):  # warm the caches (plans, pint, tables)
        normalize(frame)
    per_call = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(calls):
            normalize(frame)
        per_call.append((time.perf_counter() - began) / calls * 1e3)
    print(
        f"{'message':>10} {len(frame):>11,} rows {min(per_call):7.3f} ms per call (best), "
        f"{statistics.median(per_call):.3f} ms (median of {rounds} x {calls:,} calls)"
    )


def measure(name: str, frame: pd.DataFrame, repeats: int = 2) -> None:
    """Best of ``repeats`` runs: the machine may be shared, and the first run pays page faults."""
    normalize(frame.head(1000))  # warm the caches (pint registry, tables, conversions)
    seconds = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        result = normalize(frame)
        seconds = min(seconds, time.perf_counter() - began)
    print(
        f"{name:>10} {len(frame):>11,} rows {seconds:7.2f} s {len(frame) / seconds:>12,.0f} rows/s"
        f"  ({len(result.observations):,} accepted, {len(result.rejections):,} rejected)"
    )


def main(sizes: list[int]) -> None:
    measure_message()
    rng = np.random.default_rng(2019)
    for rows in sizes:
        measure("loinc", physionet_frame(rows, rng))
        measure("psv", psv_frame(rows, rng))
        measure("mixed", mixed_frame(rows, rng))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1_000_000, 10_000_000])
