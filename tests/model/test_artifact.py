from __future__ import annotations

import json

import pytest

from wardwatch.model.artifact import (
    SHIPPED,
    ArtifactError,
    load_card,
    load_model,
    load_shipped_model,
    save_model,
)


@pytest.fixture
def saved(trained, tmp_path):
    save_model(trained.risk_model_, tmp_path / "m", {"name": "tiny"}, "# tiny\n")
    return tmp_path / "m"


def test_round_trip_gives_identical_predictions(trained, saved, sample_features):
    loaded = load_model(saved)
    rows = sample_features.iloc[:400]
    assert loaded.predict(rows).equals(trained.risk_model_.predict(rows))
    assert loaded.threshold == trained.risk_model_.threshold
    assert loaded.feature_names == trained.risk_model_.feature_names
    assert load_card(saved) == {"name": "tiny"}


def test_models_are_text_not_pickle(saved):
    assert (saved / "member_0.txt").read_text().startswith("tree")
    assert not list(saved.glob("*.pkl")) and not list(saved.glob("*.pickle"))


def test_a_corrupted_file_refuses_to_load(saved):
    path = saved / "member_1.txt"
    text = path.read_text()
    path.write_text(text.replace("leaf_value=", "leaf_value=1", 1))
    with pytest.raises(ArtifactError, match=r"member_1\.txt: checksum mismatch"):
        load_model(saved)


def test_an_edited_threshold_refuses_to_load(saved):
    spec = json.loads((saved / "model.json").read_text())
    spec["threshold"] = 0.0
    (saved / "model.json").write_text(json.dumps(spec))
    with pytest.raises(ArtifactError, match=r"model\.json"):
        load_model(saved)


def test_missing_manifest_or_file_refuses_to_load(saved):
    (saved / "ood.json").unlink()
    with pytest.raises(ArtifactError, match=r"ood\.json"):
        load_model(saved)
    (saved / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest"):
        load_model(saved)


def test_the_shipped_model_loads_with_its_card():
    model = load_shipped_model()
    card = load_card(SHIPPED)
    assert 0 < model.threshold < 1 and len(model.boosters) >= 1
    assert card["operating_threshold"]["value"] == model.threshold
    assert card["lineage"]["data"]["wide_frame_sha256"]
    size = sum(p.stat().st_size for p in SHIPPED.iterdir())
    assert size < 8_000_000
