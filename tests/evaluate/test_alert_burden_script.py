from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from tests.strategies import wide_frame

from wardwatch.ingest.psv import COLUMNS, LABEL
from wardwatch.model.split import TEST, assign_split

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "alert_burden.py"


def load_script():
    spec = importlib.util.spec_from_file_location("alert_burden", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_set_a_the_script_says_so_and_succeeds(tmp_path, monkeypatch, capsys):
    script = load_script()
    monkeypatch.setattr(script, "UNPACKED", tmp_path / "absent")
    monkeypatch.setattr(script, "ARCHIVE", tmp_path / "absent.tar.gz")
    assert script.main([]) == 0
    assert "skipped: set A not found" in capsys.readouterr().out


def test_the_script_keeps_only_test_split_patients_and_prints_the_variants(tmp_path, capsys):
    ids = [f"p{i:06d}" for i in range(40)]
    split = assign_split(ids)
    chosen = [p for p, s in zip(ids, split, strict=True) if s == TEST][:2]
    chosen += [p for p, s in zip(ids, split, strict=True) if s != TEST][:2]
    rng = np.random.default_rng(5)
    stays = {
        pid: [{"HR": float(rng.normal(90, 10)), "SBP": 85.0, "Lactate": 3.0,
               LABEL: float(i == 0 and h >= 8)} for h in range(14)]
        for i, pid in enumerate(chosen)
    }  # fmt: skip
    data = tmp_path / "psv"
    data.mkdir()
    wide = wide_frame(stays, {p: {"Age": 50.0, "Gender": 1.0} for p in chosen})
    for pid, rows in wide.groupby("patient_id"):
        rows.to_csv(data / f"{pid}.psv", sep="|", index=False, columns=[*COLUMNS, LABEL])
    out = tmp_path / "burden.json"
    assert load_script().main(["--source", str(data), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Set A test split: 2 patients, 1 septic, 28 hours" in printed
    assert "Policy: organ-dysfunction gate + re-alert suppression" in printed
    stored = json.loads(out.read_text())
    assert len(stored["variants"]) == 5 and stored["cohort"]["patients"] == 2
