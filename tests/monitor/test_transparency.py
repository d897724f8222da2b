"""The transparency report on a real store: the active model and its history, incidents,
drift status; figures recomputed on labelled files with small cells suppressed; no patient
or user id anywhere in the page or its JSON; differential-privacy noise on local counts."""

from __future__ import annotations

import copy
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from wardwatch.demo import sample_dir
from wardwatch.evaluate.subgroups import unit_groups
from wardwatch.ingest.psv import LABEL, read_cohort
from wardwatch.model import registry
from wardwatch.model.artifact import SHIPPED, load_card, load_shipped_model, save_model
from wardwatch.monitor.drift import DriftReport, DriftThresholds, Finding
from wardwatch.monitor.notices import record_run
from wardwatch.monitor.transparency import gather, render_html, suppress_small_cells
from wardwatch.store import init_db, open_engine

SAMPLE = sample_dir() / "physionet_sample" / "setA_sample.tar.gz"
GOV = {"by": "gov.grace", "role": "auditor"}
SICU_PATIENTS = 4


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return read_cohort(SAMPLE).sort_values(["patient_id", "hour"], kind="stable")


@pytest.fixture(scope="module")
def small_cohort(sample: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 stays outside the SICU (both classes) and 4 in it: the SICU cell is small."""
    wide = sample.reset_index(drop=True)
    first = pd.DataFrame({"unit": unit_groups(wide), "id": wide["patient_id"],
                          "septic": wide[LABEL]}).groupby("id").agg(
                              unit=("unit", "first"), septic=("septic", "max"))  # fmt: skip
    others = first[first["unit"] != "SICU"]
    chosen = [
        *first[first["unit"] == "SICU"].index[:SICU_PATIENTS],
        *others[others["septic"] == 1].index[:15],
        *others[others["septic"] == 0].index[:25],
    ]
    target = tmp_path_factory.mktemp("small_cohort")
    with tarfile.open(SAMPLE) as archive:
        for member in archive.getmembers():
            if Path(member.name).stem in chosen:
                (target / Path(member.name).name).write_bytes(archive.extractfile(member).read())
    return target


def exact_counts(data: Path) -> dict[str, int]:
    wide = read_cohort(data)
    septic = wide.groupby("patient_id")[LABEL].max()
    return {"patients": len(septic), "septic_patients": int(septic.sum())}


def report_files(out: Path) -> tuple[str, dict]:
    html = (out / "transparency.html").read_text(encoding="utf-8")
    return html, json.loads((out / "transparency.json").read_text(encoding="utf-8"))


def variant(tmp_path: Path, threshold: float) -> Path:
    """A real second model: the shipped one at another operating threshold."""
    model = copy.copy(load_shipped_model())
    model.threshold = threshold
    save_model(model, tmp_path / "variant", card=load_card(SHIPPED), card_md="x")
    return tmp_path / "variant"


@pytest.fixture
def store(tmp_path: Path) -> Engine:
    """A fresh SQLite store with the shipped model active (as `wardwatch report` makes it)."""
    engine = open_engine(f"sqlite:///{tmp_path / 'wardwatch.db'}")
    init_db(engine)
    with engine.begin() as conn:
        registry.ensure_shipped_active(conn)
    return engine


# ---------------------------------------------------------------- the store


def test_a_fresh_store_names_the_shipped_model_and_no_monitoring_run(run, tmp_path):
    result = run("report", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    html, report = report_files(tmp_path / "out")
    shipped = load_shipped_model().version
    assert report["model"]["version"] == shipped
    assert f"version <code>{shipped}</code>" in html
    assert "No monitoring run yet" in html and report["drift"]["last_run"] is None
    assert report["incidents"] == [] and "None recorded" in html
    assert [(e["action"], e["by"]) for e in report["history"]] == [
        ("promote", "wardwatch itself (automatic)")
    ]
    assert report["local"] is None and report["card"]["subgroups"]["sex"]["male"]["patients"]
    assert "<script" not in html and 'src="http' not in html and 'href="http' not in html
    assert "@media print" in html


def test_rollback_is_an_incident_and_the_history_holds_every_change(engine, tmp_path):
    with engine.begin() as conn:
        shipped = registry.ensure_shipped_active(conn)
        entry = registry.register(conn, tmp_path / "models", variant(tmp_path, 0.05), **GOV)
        failed = {"passed": False, "gates": [{"name": "utility", "passed": False},
                                             {"name": "auroc", "passed": True}]}  # fmt: skip
        detail = {"gates": failed, "override": "urgent, agreed with gov.grace"}
        registry.promote(conn, entry.version, reason="better calibrated locally", detail=detail,
                         **GOV)  # fmt: skip
        registry.rollback(conn, reason="alert rate doubled overnight", **GOV)
    with engine.connect() as conn:
        report = gather(conn)
    assert report["model"]["version"] == shipped
    assert report["model"]["made_active_how"] == "rollback"
    rollback, override = report["incidents"]
    assert (rollback["kind"], rollback["version"], rollback["previous"]) == (
        "rollback", shipped, entry.version)  # fmt: skip
    assert rollback["reason"] == "alert rate doubled overnight"
    assert rollback["by"] == "governance committee member"
    assert override["kind"] == "gate override" and override["gates"]["failed"] == ["utility"]
    assert [e["action"] for e in report["history"]] == ["rollback", "promote", "promote"]
    html = render_html(report)
    assert "alert rate doubled overnight" in html and "failed: utility" in html
    assert "gov.grace" not in html and "gov.grace" not in json.dumps(report)
    assert "urgent, agreed with [a staff member]" in html


def test_a_unit_without_its_own_model_reports_the_hospitals(store):
    with store.connect() as conn:
        report = gather(conn, scope="unit:MICU")
    assert report["model"]["serving_scope"] == "hospital"
    assert "has no model of its own" in render_html(report)


def test_open_drift_notices_are_listed_by_kind_after_a_monitoring_run(store):
    finding = Finding("input_values", "Lactate", 0.41, 0.25, "Lactate values shifted: PSI 0.41",
                      "check the lab's units")  # fmt: skip
    drift = DriftReport(hours=240, patients=12, variables=[], prediction=None, alert_rate=None,
                        ood=None, calibration=None, findings=[finding],
                        thresholds=DriftThresholds())  # fmt: skip
    with store.begin() as conn:
        record_run(conn, drift, source="store", started_at=datetime(2026, 3, 1, tzinfo=UTC))
    with store.connect() as conn:
        report = gather(conn)
    assert report["drift"]["last_run"]["source"] == "the live data"
    assert report["drift"]["open_total"] == 1
    html = render_html(report)
    assert "No monitoring run yet" not in html
    assert "the values of an input changed" in html and "Lactate values shifted" in html


# ---------------------------------------------------------------- local data


def test_local_data_recomputes_figures_and_suppresses_the_small_cell(run, small_cohort, tmp_path):
    result = run("report", "--data", str(small_cohort), "--out", str(tmp_path), "--no-noise")
    assert result.exit_code == 0, result.output
    html, report = report_files(tmp_path)
    local = report["local"]
    assert {k: local["counts"][k] for k in ("patients", "septic_patients")} == exact_counts(
        small_cohort
    )
    assert 0.5 < local["headline"]["auroc"] < 1 and local["reliability"]
    assert local["policy"]["alerts_per_100_patient_days"] > 0
    assert local["subgroups"]["unit"]["SICU"] == {
        "suppressed": "small cell", "patients": "<10", "septic_patients": "<5",
    }  # fmt: skip
    assert "auroc" not in local["subgroups"]["unit"]["SICU"]
    assert "&lt;10" in html and "Internal use only" in html
    ids = set(read_cohort(small_cohort)["patient_id"])
    text = html + json.dumps(report)
    assert not [i for i in ids if i in text]


def test_the_shipped_sample_leaves_no_patient_id_on_the_page(run, sample, tmp_path):
    result = run("report", "--data", str(SAMPLE), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    html, report = report_files(tmp_path)
    assert report["local"]["source"] == "setA_sample.tar.gz"
    text = html + json.dumps(report)
    assert not [i for i in set(sample["patient_id"]) if i in text]


def test_epsilon_is_stated_and_the_noise_is_bounded(run, small_cohort, tmp_path):
    result = run("report", "--data", str(small_cohort), "--out", str(tmp_path), "--epsilon", "2")
    assert result.exit_code == 0, result.output
    html, report = report_files(tmp_path)
    noise = report["privacy"]["noise"]
    assert noise["epsilon"] == pytest.approx(2.0, rel=0.01) and "ε = 2" in html
    for key, exact in exact_counts(small_cohort).items():
        assert abs(report["local"]["counts"][key] - exact) <= 15 * noise["scale"]  # p < 1e-6


def test_seeded_noise_changes_counts_and_no_noise_keeps_them(store, small_cohort):
    with store.connect() as conn:
        exact = gather(conn, data=small_cohort, epsilon=None)
        noisy = gather(conn, data=small_cohort, epsilon=1.0, seed=7)
    assert exact["privacy"]["noise"] is None
    counts = exact_counts(small_cohort)
    assert {k: exact["local"]["counts"][k] for k in counts} == counts
    assert noisy["local"]["counts"] != exact["local"]["counts"]
    assert noisy["privacy"]["noise"]["contributions"] == 3 + 2 * 3


def test_epsilon_and_no_noise_together_are_refused(run, tmp_path):
    result = run("report", "--out", str(tmp_path), "--epsilon", "1", "--no-noise")
    assert result.exit_code == 2 and "contradict" in result.output


def test_missing_data_is_refused_with_what_to_do(run, tmp_path):
    result = run("report", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "no such file" in result.output


# ---------------------------------------------------------------- small cells


def cells(*rows: tuple[str, int, int]) -> dict[str, dict]:
    return {name: {"patients": n, "septic_patients": s, "auroc": 0.8} for name, n, s in rows}


def test_a_single_small_cell_hides_the_next_smallest_too():
    shown = suppress_small_cells(cells(("a", 100, 20), ("b", 50, 10), ("c", 4, 1)))
    assert shown["a"] == {"patients": 100, "septic_patients": 20, "auroc": 0.8}
    assert shown["b"] == {"suppressed": "complementary", "patients": None, "septic_patients": None}
    assert shown["c"] == {"suppressed": "small cell", "patients": "<10", "septic_patients": "<5"}


def test_small_cells_that_are_not_small_together_hide_nothing_else():
    shown = suppress_small_cells(cells(("a", 100, 20), ("b", 8, 3), ("c", 30, 4)))
    assert shown["a"]["patients"] == 100
    assert shown["b"]["patients"] == "<10" and shown["c"]["septic_patients"] == "<5"
    assert shown["c"]["patients"] is None  # 30 patients, but few septic: hidden, not "<10"


def test_cells_of_a_large_grouping_are_shown_unchanged():
    given = cells(("female", 1313, 101), ("male", 1780, 162))
    assert suppress_small_cells(given) == given
