"""A model on disk: a directory of plain files, every one listed with its sha256.

```
manifest.json      {"format": ..., "files": {name: sha256}} — checked on every load
model.json         feature names, threshold, member files, trainer parameters, split rule
member_0.txt …     LightGBM boosters as text (no pickle: nothing executes on load)
calibrator.json    Platt coefficients or isotonic thresholds/values
ood.json           the OOD reference (quantile grids, measured frequencies, threshold)
card.json/card.md  the model card (intended use, population, figures, lineage)
```

`load_model` refuses (with `ArtifactError`, a `ValueError`) an artifact whose manifest is
missing or unreadable, names a file that is missing, or whose file's content does not match
its checksum — a corrupted or hand-edited model never scores a patient.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lightgbm as lgb

from wardwatch.model.calibrate import calibrator_from_dict
from wardwatch.model.ood import OODDetector
from wardwatch.model.risk import RiskModel

SHIPPED = Path(__file__).resolve().parent / "shipped"  # the model trained on set A
FORMAT = "wardwatch-risk-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED = ("model.json", "calibrator.json", "ood.json")


class ArtifactError(ValueError):
    """A model artifact that cannot be trusted: missing, incomplete, or not what was saved."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def model_files(model: RiskModel) -> dict[str, bytes]:
    """Every file of the artifact but the card and the manifest, as bytes."""
    members = [f"member_{i}.txt" for i in range(len(model.boosters))]
    files = {
        name: b.model_to_string().encode() for name, b in zip(members, model.boosters, strict=True)
    }
    files["calibrator.json"] = _json(model.calibrator.to_dict())
    files["ood.json"] = _json(model.ood.to_dict())
    files["model.json"] = _json(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "feature_names": list(model.feature_names),
            "threshold": model.threshold,
            "members": members,
            "metadata": {k: v for k, v in model.metadata.items() if k != "version"},
        }
    )
    return files


def save_model(
    model: RiskModel,
    directory: Path,
    card: dict[str, Any] | None = None,
    card_md: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the artifact to `directory`; returns the manifest path.

    `card` (with its Markdown) and `extra` JSON documents (name -> data, e.g. figures) are
    written beside the model and listed in the manifest like every other file.
    """
    files = model_files(model)
    if card is not None:
        files["card.json"] = _json(card)
        files["card.md"] = card_md.encode()
    files.update({name: _json(data) for name, data in (extra or {}).items()})
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_bytes(content)
    checksums = {name: _sha256(content) for name, content in sorted(files.items())}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "files": checksums}
    (directory / MANIFEST).write_bytes(_json(manifest))
    return directory / MANIFEST


def _read_manifest(directory: Path) -> dict[str, str]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{directory}: no readable {MANIFEST} ({error})") from error
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: not a {FORMAT} v{FORMAT_VERSION} manifest")
    missing = [name for name in REQUIRED if name not in manifest.get("files", {})]
    if missing:
        raise ArtifactError(f"{path}: does not list {missing}")
    return dict(manifest["files"])


def verified_files(directory: Path) -> dict[str, bytes]:
    """The artifact's files, each checked against the manifest's sha256."""
    directory = Path(directory)
    contents: dict[str, bytes] = {}
    for name, expected in _read_manifest(directory).items():
        try:
            content = (directory / name).read_bytes()
        except OSError as error:
            raise ArtifactError(
                f"{directory}: {name} is listed but unreadable ({error})"
            ) from error
        if _sha256(content) != expected:
            raise ArtifactError(
                f"{directory / name}: checksum mismatch (sha256 {_sha256(content)[:12]}…, "
                f"manifest says {expected[:12]}…); the artifact is corrupted or was edited — "
                "refusing to load it"
            )
        contents[name] = content
    return contents


def load_model(directory: Path) -> RiskModel:
    """The `RiskModel` saved in `directory`, after every checksum has been verified."""
    files = verified_files(directory)
    spec = json.loads(files["model.json"])
    unlisted = [m for m in spec["members"] if m not in files]
    if unlisted:
        raise ArtifactError(f"{directory}: members {unlisted} are not in the manifest")
    boosters = [lgb.Booster(model_str=files[m].decode()) for m in spec["members"]]
    # The version is content-addressed: the same files are the same version wherever they
    # are copied, and any change to any file is a new version.
    metadata = {**spec["metadata"], "version": model_version(files)}
    return RiskModel(
        boosters,
        calibrator_from_dict(json.loads(files["calibrator.json"])),
        OODDetector.from_dict(json.loads(files["ood.json"])),
        spec["threshold"],
        spec["feature_names"],
        metadata,
    )


def model_version(files: dict[str, bytes]) -> str:
    """`sepsis-` and the first 12 hex digits of the sha256 over the artifact's files."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + _sha256(files[name]).encode())
    return f"sepsis-{digest.hexdigest()[:12]}"


def load_card(directory: Path) -> dict[str, Any]:
    """The verified model card of an artifact."""
    files = verified_files(directory)
    if "card.json" not in files:
        raise ArtifactError(f"{directory}: the artifact has no model card")
    return dict(json.loads(files["card.json"]))


def load_shipped_model() -> RiskModel:
    """The model shipped with the package (trained on PhysioNet 2019 set A; see its card)."""
    return load_model(SHIPPED)
