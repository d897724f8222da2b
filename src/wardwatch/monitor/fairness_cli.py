"""`wardwatch fairness DATA --out DIR`: the subgroup audit of a model on labelled patients.

Registered by `cli.py` (`_register_governance`). The model stack is imported inside the
command, so `wardwatch --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import pandas as pd

    from wardwatch.alerts.policy import PolicyBook
    from wardwatch.model.risk import RiskModel
    from wardwatch.site.calibrate import SiteData

SPLITS = ("train", "calibration", "test")


def register(root: typer.Typer) -> None:
    root.command("fairness")(fairness_command)


def fairness_command(
    data: Annotated[
        Path, typer.Argument(help="labelled PhysioNet .psv files: a directory or .tar.gz")
    ],
    out: Annotated[Path, typer.Option(help="directory for fairness.json and fairness.html")],
    model: Annotated[Path | None, typer.Option(help="model directory (default: shipped)")] = None,
    attribute: Annotated[
        list[str] | None,
        typer.Option(help="another column to audit by (repeat), e.g. a recorded ethnicity"),
    ] = None,
    threshold_only: Annotated[
        bool,
        typer.Option(help="alerts = risk at or above the threshold, not the alert policy"),
    ] = False,
    policy_config: Annotated[
        Path | None,
        typer.Option(help="TOML file whose [alerts] table sets the policy (default: settings)"),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="only patients of this split of the model's hash rule (test = held out)"),
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples of patients")] = 1000,
    limit: Annotated[int | None, typer.Option(help="only the first N patients")] = None,
) -> None:
    """Audit the model and its alerts per sex, age band, ICU unit (and any `--attribute`).

    Per group: sensitivity, specificity, PPV and alert rate at the patient level (a patient
    is alerted if any hour alerted, septic if ever labelled), AUROC of patients' peak risk and
    of hourly risk, hourly calibration, alerts per 100 patient-days; small cells are marked.
    Between groups: equalized-odds differences with bootstrap intervals (patients
    resampled). And a counterfactual: the same data with sex swapped, scored again. By
    default the alerts are those the alert policy would have fired (gate and suppression).
    """
    from rich.markup import escape

    from wardwatch.cli import console, fail

    if split is not None and split not in SPLITS:
        raise fail(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    try:
        result = _audit(data, model, attribute or [], threshold_only, policy_config, split,
                        bootstrap, limit)  # fmt: skip
        json_path, html_path = _write(result, out)
    except (ValueError, OSError) as error:
        raise fail(
            escape(str(error)), "give DATA as labelled .psv files and a writable --out"
        ) from None
    _print(console, result)
    console.print(f"figures: {json_path}\ntable: {html_path}")


def _audit(
    data: Path,
    model_dir: Path | None,
    attributes: list[str],
    threshold_only: bool,
    policy_config: Path | None,
    split: str | None,
    n_boot: int,
    limit: int | None,
) -> dict[str, Any]:
    from wardwatch.alerts.policy import PolicyBook, load_policy_book
    from wardwatch.model.artifact import SHIPPED, load_model
    from wardwatch.monitor.fairness import audit, counterfactual
    from wardwatch.site.calibrate import load_site_data

    if not Path(data).exists():
        raise FileNotFoundError(f"{data}: no such file or directory")
    model = load_model(model_dir or SHIPPED)
    site = load_site_data(data, model, limit) if split is None else _split(data, model, split)
    if threshold_only:
        alert, source = site.risk >= model.threshold, "risk at or above the model's threshold"
    else:
        book = PolicyBook.load(policy_config) if policy_config else load_policy_book()
        alert, source = _policy_alerts(site, book, model.threshold), _POLICY_SOURCE
    result = audit(site.wide, site.risk, alert, attributes=attributes, alert_source=source,
                   n_boot=n_boot)  # fmt: skip
    result["counterfactual"] = counterfactual(model, site.wide, risk=site.risk)
    result["model_version"] = model.version
    result["patients_selected"] = f"split {split}" if split else "all patients in DATA"
    return result


_POLICY_SOURCE = (
    "fired by the alert policy (threshold, organ-dysfunction gate, re-alert suppression), "
    "replayed with a simulated clinician who evaluates each alert the hour it fires"
)


def _split(data: Path, model: RiskModel, split: str) -> SiteData:
    from wardwatch.ingest.psv import read_cohort
    from wardwatch.model.split import SPLIT_SALT, assign_split
    from wardwatch.site.calibrate import SiteData
    from wardwatch.site.config import data_hash

    wide = read_cohort(data, as_stored=True)
    salt = model.metadata.get("trainer", {}).get("split_salt", SPLIT_SALT)
    chosen: pd.DataFrame = wide[assign_split(wide["patient_id"], salt) == split]
    if chosen.empty:
        raise ValueError(f"no patient of DATA falls in the {split} split")
    return SiteData.score(chosen, model, data_hash(data))


def _policy_alerts(site: SiteData, book: PolicyBook, threshold: float) -> Any:
    from wardwatch.alerts.burden import simulate

    simulated = simulate(site.wide, site.outputs, book, threshold, signs=site.signs)
    return simulated["fired"].to_numpy()


def _write(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    from wardwatch.monitor.fairness import render_html

    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "fairness.json", out / "fairness.html"
    json_path.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    html_path.write_text(render_html(result) + "\n")
    return json_path, html_path


def _cell(value: Any, form: str) -> str:
    return "–" if value is None else form.format(value)


def _print(console: Any, result: dict[str, Any]) -> None:
    from rich.table import Table

    for name, grouping in result["groupings"].items():
        table = Table("group", "patients", "septic", "sens. (pt)", "spec. (pt)", "PPV (pt)",
                      "AUROC (h)", "alerts/100 pt-days", title=f"by {name}")  # fmt: skip
        for group, c in grouping["groups"].items():
            table.add_row(
                group + (" *" if c["small_cell"] else ""), str(c["patients"]),
                str(c["septic_patients"]), _cell(c["patient_sensitivity"], "{:.1%}"),
                _cell(c["patient_specificity"], "{:.1%}"), _cell(c["patient_ppv"], "{:.1%}"),
                _cell(c["hourly_auroc"], "{:.3f}"),
                _cell(c["alerts_per_100_patient_days"], "{:.1f}"),
            )  # fmt: skip
        console.print(table)
        odds = grouping["equalized_odds"].get("equalized_odds_difference")
        if odds:
            low, high = odds["ci95"]
            console.print(f"  equalized-odds difference (patients) {_cell(odds['value'], '{:.3f}')}"
                          f" (95 % CI {_cell(low, '{:.3f}')}–{_cell(high, '{:.3f}')})")  # fmt: skip
    cf = result["counterfactual"]
    verdict = "[red]beyond tolerance[/]" if cf["flagged"] else "[green]within tolerance[/]"
    console.print(
        f"counterfactual (sex swapped): mean |Δrisk| "
        f"{_cell(cf['hourly_mean_abs_risk_change'], '{:.4f}')}, patients' alert status changed "
        f"{_cell(cf['patients_alert_status_changed'], '{:.1%}')}: {verdict}"
    )
    console.print("* small cell: fewer than 10 patients or 5 septic patients")
