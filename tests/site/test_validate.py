"""`wardwatch validate-site`: a site's data against the training patients, with a verdict a
governance committee can act on; wrong units and offsets are named, with the offset."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from wardwatch.ingest.psv import COLUMNS, LABEL, read_cohort

SAMPLE = resources.files("wardwatch") / "data" / "physionet_sample" / "setA_sample.tar.gz"


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return read_cohort(SAMPLE)


def write_site(wide: pd.DataFrame, directory: Path, labelled: bool = True) -> Path:
    """One PhysioNet file per patient, as a site would export them."""
    directory.mkdir(parents=True, exist_ok=True)
    columns = [*COLUMNS, LABEL] if labelled else list(COLUMNS)
    for pid, rows in wide.groupby("patient_id", sort=False):
        rows.loc[:, columns].to_csv(directory / f"{pid}.psv", sep="|", index=False, na_rep="NaN")
    return directory


def validate(run, data: Path, out: Path) -> dict:
    result = run("validate-site", str(data), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "verdict:" in result.output
    return json.loads((out / "site_validation.json").read_text())


def variable(report: dict, name: str) -> dict:
    return next(v for v in report["drift"]["variables"] if v["variable"] == name)


def test_temperatures_in_fahrenheit_labelled_celsius_are_a_no_go(run, sample, tmp_path):
    site = sample.assign(Temp=sample["Temp"] * 9 / 5 + 32)
    report = validate(run, write_site(site, tmp_path / "site", labelled=False), tmp_path / "out")
    temp = variable(report, "Temp")
    assert temp["suspected_unit"].startswith("°F sent as °C")
    assert temp["median_offset"] == pytest.approx(report["drift"]["variables"][2]["median"]
                                                  - temp["reference_median"])  # fmt: skip
    assert report["quarantined"]["Temp"] > 0.9  # the gate would refuse nearly all of them
    assert report["verdict"]["decision"] == "no-go"
    first = report["verdict"]["reasons"][0]
    assert first["decision"] == "no-go" and "Temp" in first["finding"]
    assert "°F sent as °C" in first["finding"]
    html = (tmp_path / "out" / "site_validation.html").read_text()
    assert "°F sent as °C" in html and "no-go" in html


def test_spo2_three_points_low_is_flagged_with_its_offset(run, sample, tmp_path):
    site = sample.assign(O2Sat=sample["O2Sat"] - 3)
    report = validate(run, write_site(site, tmp_path / "site"), tmp_path / "out")
    spo2 = variable(report, "O2Sat")
    assert spo2["median_offset"] == pytest.approx(-3.0) and spo2["suspected_unit"] is None
    reasons = [r for r in report["verdict"]["reasons"] if "O2Sat" in r["finding"]]
    assert reasons and "3 % lower" in reasons[0]["finding"]
    assert reasons[0]["decision"] == "go with changes"  # an offset to fix, not a wrong unit
    assert report["verdict"]["decision"] == "go with changes"
    flagged = {r["finding"].split(" (")[0] for r in report["verdict"]["reasons"]}
    assert not any("Temperature" in f for f in flagged)


def test_with_outcomes_the_report_holds_the_evaluation_per_unit(run, sample, tmp_path):
    report = validate(run, write_site(sample, tmp_path / "site"), tmp_path / "out")
    perf = report["performance"]
    assert perf is not None and report["cohort"]["labelled"]
    assert set(perf["subgroups"]["unit"]) >= {"MICU", "SICU"}
    assert {"qsofa", "news2"} <= {row["name"] for row in perf["headline"]}
    curve = perf["figures"]["utility_vs_threshold"]["wardwatch model"]
    assert len(curve["thresholds"]) == len(curve["utility"]) > 10
    assert perf["alert_policy"]["variants"]
    assert (tmp_path / "out" / "evaluation.html").exists()
    html = (tmp_path / "out" / "site_validation.html").read_text()
    assert "Utility against the threshold" in html and "evaluation.html" in html
    # Unshifted inputs: no input is named in the verdict.
    assert not any(r["finding"].startswith(("Temperature", "Oxygen saturation"))
                   for r in report["verdict"]["reasons"])  # fmt: skip


def test_without_outcomes_it_projects_the_burden_and_asks_for_shadow_mode(run, sample, tmp_path):
    report = validate(run, write_site(sample, tmp_path / "site", labelled=False), tmp_path / "o")
    assert report["performance"] is None and not report["cohort"]["labelled"]
    burden = report["burden"]
    assert {"all", "MICU", "SICU"} <= set(burden)
    assert burden["all"]["alerts_per_100_patient_days"] > 0
    assert 0 < burden["all"]["patients_alerted"] <= 1
    assert report["scores"]["units"]["all"]["ood_share"] is not None
    assert any("shadow mode" in r["action"] for r in report["verdict"]["reasons"])
    assert report["verdict"]["decision"] != "go"


def test_validate_what_is_already_in_the_store(run, sample, tmp_path):
    site = write_site(sample[sample["patient_id"].isin(sample["patient_id"].unique()[:40])],
                      tmp_path / "site")  # fmt: skip
    assert run("ingest", str(site)).exit_code == 0
    result = run("validate-site", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "site_validation.json").read_text())
    assert report["source"] == "the store" and report["cohort"]["patients"] == 40


def test_bad_input_says_what_was_wrong_and_what_to_do(run, tmp_path):
    missing = run("validate-site", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "no such file" in missing.output
    assert "what to do" in missing.output
    empty = run("validate-site", "--out", str(tmp_path / "out"))
    assert empty.exit_code == 2 and "ingest" in empty.output
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "p1.psv").write_text("not|a|physionet\nfile|at|all\n")
    junk = run("validate-site", str(tmp_path / "junk"))
    assert junk.exit_code == 2 and "not PhysioNet 2019 patient files" in junk.output


def test_monitor_on_demand_and_its_notices(run, tmp_path):
    result = run("monitor", "--data", str(SAMPLE))
    assert result.exit_code == 0, result.output
    assert "monitor run 1" in result.output
    listed = run("monitor", "notices")
    assert listed.exit_code == 0 and "open operations notices" in listed.output
    done = run("monitor", "acknowledge", "1", "--by", "gov.grace", "--note", "sample enriched")
    assert done.exit_code == 0 and "acknowledged by gov.grace" in done.output
    again = run("monitor", "acknowledge", "1", "--by", "gov.grace")
    assert again.exit_code == 2 and "already acknowledged" in again.output
    nothing = run("monitor")
    assert nothing.exit_code == 0 and "nothing new" in nothing.output
