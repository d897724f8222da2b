"""The sepsis risk model: train, calibrate, uncertainty, out-of-distribution, artifact, card.

Public API (import from the submodules; this package imports nothing heavy on its own):

- `train.SepsisModelTrainer(...).fit(features, labels, patient_ids)` -> `.risk_model_`
- `risk.RiskModel.predict(features) -> DataFrame[risk, uncertainty, ood_score, ood]`,
  `RiskModel.threshold`
- `artifact.save_model(model, directory, card, card_md, extra)`, `artifact.load_model(directory)`
  (verifies every checksum; `ArtifactError` otherwise), `artifact.load_shipped_model()`
- `predict.predict_psv(in_dir, out_dir, model=None, progress=None)`
- `validate.validation_figures(model, wide, features)`, `card.build_card`, `card.render_markdown`

Modules: `split` (hash-rule patient splits), `calibrate` (Platt / isotonic, JSON), `uncertainty`
(bootstrap ensemble spread), `ood` (quantile-tail + missingness surprise), `threshold`
(operating point by a scorer, PhysioNet utility by default), `lineage` (data/code/library
hashes and versions). The shipped artifact trained on PhysioNet 2019 set A is in `shipped/`.
"""
