"""`wardwatch calibrate-site`: per-unit alert thresholds from a site's own data.

Registered by `cli.py` (`_register_governance`). The model stack is imported inside the
command, so `wardwatch --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from wardwatch.site.calibrate import Target
    from wardwatch.site.config import SiteConfig

DEFAULT_OUT = Path("site-config.json")


def register(root: typer.Typer) -> None:
    root.command("calibrate-site")(calibrate_site_command)


def calibrate_site_command(
    data: Annotated[
        Path, typer.Argument(help="the site's PhysioNet .psv files: a directory or .tar.gz")
    ],
    budget: Annotated[
        float | None, typer.Option(help="at most N sepsis alerts per 100 patient-days")
    ] = None,
    share: Annotated[
        float | None, typer.Option(help="alert this share of patients at least once (0-1)")
    ] = None,
    target_sensitivity: Annotated[
        float | None,
        typer.Option(help="needs labels: the highest threshold reaching this sensitivity"),
    ] = None,
    max_utility: Annotated[
        bool, typer.Option(help="needs labels: the threshold of the best PhysioNet utility")
    ] = False,
    budget_from_model: Annotated[
        bool,
        typer.Option(
            help="no labels and no budget of your own yet: each unit's budget is the model's "
            "alert rate on its own held-out patients (model card) times the unit's mean risk "
            "over the model's (ratio held within 1/4-4); see above"
        ),
    ] = False,
    prior_shift: Annotated[
        bool, typer.Option(help="first move the risks to the site's estimated prevalence (EM)")
    ] = False,
    training_prevalence: Annotated[
        float | None,
        typer.Option(help="the model's share of positive hours (default: from its artifact)"),
    ] = None,
    model: Annotated[Path | None, typer.Option(help="model directory (default: shipped)")] = None,
    out: Annotated[Path, typer.Option(help="where the site configuration is written")] = (
        DEFAULT_OUT
    ),
    policy_config: Annotated[
        Path | None,
        typer.Option(help="TOML file whose [alerts] table sets the policy (default: settings)"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="only the first N patients")] = None,
) -> None:
    """Set each care unit's alert threshold from this site's own patients.

    Without labels, aim at an alert budget: `--budget N` (at most N alerts per 100
    patient-days) or `--share S` (a share of patients alerted). The threshold of each unit
    (MICU = Unit1, SICU = Unit2, ICU = neither) is searched by replaying the real alert policy
    over the unit's stays (threshold, organ-dysfunction gate, re-alert suppression) until the
    achieved rate is within 10 % of the budget. `--prior-shift` first moves the risks to the
    site's prevalence, estimated without labels (Saerens-Latinne-Decaestecker EM). With labels
    (SepsisLabel), `--target-sensitivity S` or `--max-utility` instead.

    `--budget-from-model` is for a site with neither labels nor an alert budget of its own
    yet. It carries over the alert rate the model had on its own held-out patients (its
    artifact's figures.json, as on the model card: alert episodes per 100 patient-days at
    the model's threshold), scaled per unit by how much riskier the unit looks to the model:
    budget = that rate x (the unit's mean risk / the model's mean risk on its own patients),
    the ratio held within 1/4-4 (a unit beyond that is noted: it needs a budget of its own).
    Each unit's threshold is then searched for that many alert episodes (risk from below to
    at or above the threshold, the model card's count; the policy's gate and re-alert
    suppression usually fire fewer: both counts are shown). The notes record the rate,
    both mean risks and each ratio. Evidence so far is one experiment on the two ICUs of
    PhysioNet 2019 set A (scripts/site_transfer.py --foreign-only): a model trained on one
    ICU only, deployed on every patient of the other (MICU -> SICU / SICU -> MICU, 5,470 /
    5,344 patients), reached a utility of 0.232 / 0.271 this way, against 0.231 / 0.272 at
    the model's own threshold (the thresholds nearly coincide; differences +0.001 / -0.001,
    95 % bootstrap intervals within +-0.013) and 0.294 / 0.318 with the target unit's own
    labels. Over two more seeds of the model it was never measurably worse than the model's
    threshold, and better in two of the six runs, MICU -> SICU, where the model's threshold
    raised 83-87 alert episodes per 100 patient-days on the new unit (0.044 -> 0.172, 0.142
    -> 0.227); it stayed below the unit's own labels in all six (by 0.05-0.14). So it helped
    only where the model's threshold overshot on the new unit: replace it with a budget of
    the site's own once the clinicians have set one, and with a labelled target once there
    are labels.

    Writes a site configuration (JSON: thresholds, method, target, data hash, model version,
    achieved figures) for `wardwatch predict-psv --site-config FILE`.
    """
    from rich.markup import escape

    from wardwatch.cli import console, fail

    try:
        target = _target(budget, share, target_sensitivity, max_utility, budget_from_model)
        config = _calibrate(data, target, budget_from_model, prior_shift, training_prevalence,
                            model, policy_config, limit)  # fmt: skip
        config.save(out)
    except (ValueError, OSError) as error:
        raise fail(escape(str(error)), _hint(error)) from None
    _print(console, config)
    console.print(f"site configuration: {out}")


def _target(
    budget: float | None,
    share: float | None,
    sensitivity: float | None,
    utility: bool,
    from_model: bool,
) -> Target | None:
    from wardwatch.site.calibrate import CalibrationError, Target

    chosen: list[Target] = []
    if budget is not None:
        chosen.append(Target("alerts_per_100_patient_days", budget))
    if share is not None:
        chosen.append(Target("patients_alerted", share))
    if sensitivity is not None:
        chosen.append(Target("sensitivity", sensitivity))
    if utility:
        chosen.append(Target("utility"))
    if len(chosen) + from_model > 1:
        raise CalibrationError("give one of --budget, --share, --target-sensitivity, "
                               "--max-utility, --budget-from-model")  # fmt: skip
    return chosen[0] if chosen else None


def _calibrate(
    data: Path,
    target: Target | None,
    from_model: bool,
    prior_shift: bool,
    prevalence: float | None,
    model_dir: Path | None,
    policy_config: Path | None,
    limit: int | None,
) -> SiteConfig:
    from wardwatch.alerts.policy import PolicyBook, load_policy_book
    from wardwatch.model.artifact import SHIPPED, load_model
    from wardwatch.site.calibrate import (
        CalibrationError,
        calibrate_site,
        load_site_data,
        model_reference,
        training_prevalence,
    )

    if not Path(data).exists():
        raise FileNotFoundError(f"{data}: no such file or directory")
    if target is None and not from_model and not prior_shift:
        raise CalibrationError("give a target (budget, share, sensitivity, utility) or prior shift")
    book = PolicyBook.load(policy_config) if policy_config else load_policy_book()
    model = load_model(model_dir or SHIPPED)
    shift_from = None
    if prior_shift:
        shift_from = prevalence or training_prevalence(model_dir or SHIPPED)
    # Read before scoring the site, so an artifact without the figures fails in a second.
    reference = model_reference(model_dir or SHIPPED) if from_model else None
    site = load_site_data(data, model, limit)
    return calibrate_site(site, model.version, model.threshold, target=target,
                          prior_shift_from=shift_from, book=book,
                          reference=reference)  # fmt: skip


def _hint(error: Exception) -> str:
    if isinstance(error, OSError):
        return "check the paths (DATA, --model, --out, --policy-config)"
    return (
        "give DATA as .psv files (labelled for --target-sensitivity/--max-utility) and one "
        "of --budget N, --share S, --target-sensitivity S, --max-utility, "
        "--budget-from-model, and/or --prior-shift"
    )


def _cell(value: Any, form: str) -> str:
    return "–" if value is None else form.format(value)


def _print(console: Any, config: SiteConfig) -> None:
    from rich.table import Table

    table = Table("unit", "threshold", "patients", "alerts/100 pt-days",
                  "episodes/100 pt-days", "patients alerted", "sensitivity", "utility",
                  title=f"site thresholds ({config.method})")  # fmt: skip
    for unit, figures in config.achieved.items():
        table.add_row(
            unit, _cell(config.thresholds.get(unit), "{:.4f}"), str(figures["patients"]),
            _cell(figures["alerts_per_100_patient_days"], "{:.1f}"),
            _cell(figures.get("alert_episodes_per_100_patient_days"), "{:.1f}"),
            _cell(figures["patients_alerted"], "{:.1%}"),
            _cell(figures.get("sensitivity"), "{:.1%}"),
            _cell(figures.get("utility_hourly_threshold"), "{:.3f}"),
        )  # fmt: skip
    console.print(table)
    if config.prior_shift is not None:
        shift = config.prior_shift
        estimated = ", ".join(f"{u} {p:.2%}" for u, p in shift.site_prevalence.items())
        console.print(f"prior shift: training {shift.training_prevalence:.2%} → {estimated}")
    for note in config.notes:
        console.print(f"[yellow]note:[/] {note}")
