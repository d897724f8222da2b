from __future__ import annotations

import re
import tarfile

import numpy as np
import pytest

from wardwatch.features import latest_features
from wardwatch.ingest.psv import read_cohort
from wardwatch.model.predict import HEADER, predict_psv

LINE = re.compile(r"^(0|1)\.\d{6}\|[01]$")


@pytest.fixture(scope="module")
def psv_dir(tmp_path_factory, sample_path):
    directory = tmp_path_factory.mktemp("in")
    with tarfile.open(sample_path) as archive:
        members = sorted(archive.getmembers(), key=lambda m: m.name)[:6]
        archive.extractall(directory, members=members, filter="data")
    (directory / "p999999.psv").write_text(
        (directory / members[0].name).read_text().split("\n")[0] + "\n"
    )
    return directory


@pytest.fixture(scope="module")
def scored(trained, psv_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    seen = []
    written = predict_psv(
        psv_dir, out, trained.risk_model_, progress=lambda d, t: seen.append((d, t))
    )
    return out, written, seen


def test_one_output_file_per_input_file_with_exact_format(psv_dir, scored):
    out, written, seen = scored
    names = sorted(p.name for p in psv_dir.glob("*.psv"))
    assert written == len(names) and sorted(p.name for p in out.glob("*.psv")) == names
    assert seen[-1] == (6, 7)
    for name in names:
        lines = (out / name).read_text().split("\n")
        rows = (psv_dir / name).read_text().rstrip("\n").split("\n")[1:]
        assert lines[0] == HEADER and lines[-1] == ""
        assert len(lines) - 2 == len(rows)
        assert all(LINE.match(line) for line in lines[1:-1])


def test_a_file_without_rows_gets_the_header_only(scored):
    out, *_ = scored
    assert (out / "p999999.psv").read_text() == HEADER + "\n"


def test_file_scores_equal_truly_incremental_scoring(trained, psv_dir, scored):
    out, *_ = scored
    model = trained.risk_model_
    shortest = sorted(psv_dir.glob("p0*.psv"), key=lambda p: p.stat().st_size)[1:3]
    for path in shortest:
        rows = read_cohort(path)
        written = np.loadtxt(out / path.name, delimiter="|", skiprows=1, ndmin=2)
        for t in range(len(rows)):
            risk = model.predict(latest_features(rows.iloc[: t + 1]))["risk"].iloc[0]
            assert f"{risk:.6f}" == f"{written[t, 0]:.6f}"
            assert int(risk >= model.threshold) == written[t, 1]


def test_files_written_by_worker_processes_are_the_same(trained, psv_dir, scored, tmp_path):
    out, written, _ = scored
    seen = []
    # Two patients a chunk: four chunks for the seven files, so two workers share them.
    again = predict_psv(
        psv_dir, tmp_path, trained.risk_model_, progress=lambda d, t: seen.append((d, t)),
        patients_per_chunk=2, workers=2,
    )  # fmt: skip
    assert again == written and seen == [(2, 7), (4, 7), (6, 7)]
    for path in sorted(out.glob("*.psv")):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()
