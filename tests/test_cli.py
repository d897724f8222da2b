"""The command line as an operator meets it: manuals, summaries, and errors that say what to do."""

from __future__ import annotations

from pathlib import Path

PSV_DIR = Path(__file__).resolve().parent / "data" / "psv"




def test_help_reads_like_a_manual(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ("ingest", "quarantine", "mllp", "demo", "db"):
        assert command in result.output


def test_ingest_prints_what_happened_to_everything(run, tmp_path):
    result = run("ingest", str(PSV_DIR))
    assert result.exit_code == 0, result.output
    assert "accepted (stored)" in result.output
    assert "2,662" in result.output  # every non-missing value of the three files
    assert "3 stays scored" in result.output  # and a ward round scored the three stays
    again = run("ingest", str(PSV_DIR))
    assert "duplicates (already stored)" in again.output
    assert (tmp_path / "wardwatch.db").exists()


def test_a_wrong_path_says_what_was_wrong_and_what_to_do(run, tmp_path):
    result = run("ingest", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "no such file" in result.output
    assert "what to do" in result.output


def test_quarantine_list_shows_the_reason(run, tmp_path):
    text = (PSV_DIR / "p000001.psv").read_text().splitlines()
    header = text[0].split("|")
    row = text[3].split("|")
    row[header.index("HR")] = "900"
    text[3] = "|".join(row)
    (tmp_path / "p900002.psv").write_text("\n".join(text) + "\n")
    assert run("ingest", str(tmp_path / "p900002.psv")).exit_code == 0
    result = run("quarantine", "list")
    assert result.exit_code == 0
    assert "implausible 1" in result.output
    assert "Heart rate 900.0" in result.output


def test_db_init_is_safe_to_repeat(run):
    assert run("db", "init").exit_code == 0
    assert run("db", "init").exit_code == 0


def test_predict_psv_writes_the_challenge_format_for_every_file(run, tmp_path):
    result = run("predict-psv", str(PSV_DIR), str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    for source in PSV_DIR.glob("*.psv"):
        lines = (tmp_path / "out" / source.name).read_text().splitlines()
        assert lines[0] == "PredictedProbability|PredictedLabel"
        assert len(lines) == len(source.read_text().splitlines())
        for line in lines[1:]:
            probability, label = line.split("|")
            assert 0.0 <= float(probability) <= 1.0 and label in {"0", "1"}


def test_evaluate_puts_the_model_beside_the_rules(run, tmp_path):
    result = run("evaluate", "--data", str(PSV_DIR), "--out", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    for name in ("wardwatch model", "qsofa", "sirs", "news2", "sofa"):
        assert name in result.output
    assert (tmp_path / "report" / "evaluation.html").exists()


def test_evaluate_refuses_unlabelled_paths_with_a_reason(run, tmp_path):
    result = run("evaluate", "--data", str(tmp_path / "missing"))
    assert result.exit_code == 2
    assert "what to do" in result.output
