from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tests.strategies import wide_frame

from wardwatch.ingest.psv import COLUMNS, LABEL

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "evaluate_baselines.py"


def load_script():
    spec = importlib.util.spec_from_file_location("evaluate_baselines", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_writes_the_report_and_prints_the_headline(tmp_path, capsys):
    people = {f"p{i:06d}": {"Age": 40.0 + i, "Gender": i % 2} for i in range(4)}
    stays = {
        pid: [{"HR": 95.0 + 10 * h, "Resp": 18.0 + h, LABEL: float(i == 0 and h >= 3)}
              for h in range(6)]
        for i, pid in enumerate(people)
    }  # fmt: skip
    wide = wide_frame(stays, people)
    data = tmp_path / "psv"
    data.mkdir()
    for pid, rows in wide.groupby("patient_id"):
        rows.to_csv(data / f"{pid}.psv", sep="|", index=False, columns=[*COLUMNS, LABEL])
    out = tmp_path / "report"
    assert load_script().main([str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 patients, 1 septic, 24 hours" in printed
    assert [line.split()[0] for line in printed.splitlines()[2:6]] == [
        "qsofa", "sirs", "news2", "sofa",
    ]  # fmt: skip
    results = json.loads((out / "evaluation.json").read_text())
    assert [row["name"] for row in results["headline"]] == ["qsofa", "sirs", "news2", "sofa"]
    assert (out / "evaluation.html").stat().st_size > 0
