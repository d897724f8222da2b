"""The local-validation report as files: `site_validation.json` (every number) and
`site_validation.html` (one self-contained page, verdict first, figures as inline SVG).

With outcomes, the full evaluation report (`evaluation.html` / `.json`, the same as
`wardwatch evaluate` writes) is written beside it and linked; its headline, subgroup tables
and utility-vs-threshold curve are repeated here. The page reuses the evaluation report's
HTML and SVG helpers, so both read alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wardwatch.evaluate.report import (
    CSS,
    GROUP_TITLES,
    HEADLINE,
    _e,
    _fmt,
    _metric_table,
    _style,
    _subgroup_table,
    _svg,
    _table,
    _utility,
    policy_table,
    write_report,
)

HTML_NAME = "site_validation.html"
JSON_NAME = "site_validation.json"
EXTRA_CSS = """
.verdict{font-size:1.4em;padding:0.5em 0.8em;border-radius:6px;display:inline-block}
.go{background:#e3f4e1}.go-with-changes{background:#fff3cd}.no-go{background:#f8d7da}
tr.flag td{background:#fff8e6}tr.bad td{background:#fbe3e4}
"""
COLOURS = {"go": "go", "go with changes": "go-with-changes", "no-go": "no-go"}


def write_site_report(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write the report (and, with outcomes, the evaluation beside it); the HTML and JSON."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if results.get("performance"):
        write_report(results["performance"], out_dir)
    json_path, html_path = out_dir / JSON_NAME, out_dir / HTML_NAME
    json_path.write_text(json.dumps(results, indent=1, allow_nan=False), encoding="utf-8")
    html_path.write_text(render_site_html(results), encoding="utf-8")
    return html_path, json_path


def _verdict(results: dict[str, Any]) -> str:
    v = results["verdict"]
    items = "".join(
        f"<li><b>{_e(r['decision'])}</b>: {_e(r['finding'])}<br><i>What to do:</i> "
        f"{_e(r['action'])}</li>"
        for r in v["reasons"]
    )
    none = "<p>Nothing found that argues against switching the model on here.</p>"
    return (f'<p class="verdict {COLOURS[v["decision"]]}">Verdict: <b>{_e(v["decision"])}</b>'
            f"</p>{f'<ol>{items}</ol>' if items else none}")  # fmt: skip


def _cohort(results: dict[str, Any]) -> str:
    c, ref = results["cohort"], results["reference"]
    units = ", ".join(f"{_e(u)} {n:,}" for u, n in c["units"].items())
    outcomes = ("with outcomes (SepsisLabel): performance is measured" if c["labelled"]
                else "without outcomes: performance cannot be measured yet")  # fmt: skip
    return (
        f"<p>{c['patients']:,} stays ({units}), {c['hours']:,} patient-hours "
        f"({c['patient_days']:,.0f} patient-days), {outcomes}. Compared with the model's "
        f"training reference: {_e(ref.get('source'))}, {ref['patients']:,} patients "
        f"(model {_e(results['model_version'])}; reference built for model "
        f"{_e(ref.get('model_version'))}).</p>"
    )


def _inputs(results: dict[str, Any]) -> str:
    drift, quarantined = results["drift"], results["quarantined"]
    flagged = {(f["kind"], f["subject"]) for f in drift["findings"]}
    rows = []
    for v in drift["variables"]:
        name = v["variable"]
        bad = v["suspected_unit"] or (quarantined.get(name) or 0) >= 0.2
        drifted = {("input_values", name), ("input_measured", name)} & flagged
        cells = [
            _e(name), _fmt(v["reference_measured_share"], "{:.1%}"),
            _fmt(v["measured_share"], "{:.1%}"), _fmt(v["measured_ratio"], "{:.2f}×"),
            _fmt(v["reference_median"], "{:.4g}"), _fmt(v["median"], "{:.4g}"),
            _fmt(v["median_offset"], "{:+.3g}"), _fmt(v["psi"], "{:.2f}"), _fmt(v["ks"], "{:.2f}"),
            _fmt(quarantined.get(name), "{:.1%}"),
            _e(v["suspected_unit"] or ("" if v["judged"] else "too few values to judge")),
        ]  # fmt: skip
        rows.append(("bad" if bad else "flag" if drifted else "", cells))
    head = ["Variable", "Measured (training)", "Measured (site)", "Ratio", "Median (training)",
            "Median (site)", "Offset", "PSI", "KS", "Implausible", "Suspected unit"]  # fmt: skip
    return _table(head, rows) + (
        f'<p class="note">Measured: share of patient-hours with a value. PSI over the training '
        f"deciles (above {drift['thresholds']['value_psi']} is a major shift); KS: "
        f"{_e(drift['ks_method'])}. Implausible: values the quality gate would quarantine. "
        "Red rows: a wrong unit; yellow rows: drift beyond the monitor's limits.</p>"
    )


def _scores(results: dict[str, Any]) -> str:
    units = results["scores"]["units"]
    rows = [
        ("", [_e(u), f"{s['patients']:,}", _fmt(s["median"], "{:.3f}"), _fmt(s["p90"], "{:.3f}"),
              _fmt(s["p99"], "{:.3f}"), _fmt(s["threshold"], "{:.3g}"),
              _fmt(s["share_at_or_above_threshold"], "{:.1%}"), _fmt(s["ood_share"], "{:.1%}")])
        for u, s in units.items()
    ]  # fmt: skip
    head = ["Unit", "Patients", "Median risk", "90th pct", "99th pct", "Threshold",
            "Hours ≥ threshold", "Out of distribution"]  # fmt: skip
    ref = results["drift"]["ood"]
    note = (f'<p class="note">Training patients: {ref["reference"]:.1%} of hours out of '
            "distribution (1 % by construction).</p>") if ref else ""  # fmt: skip
    return _table(head, rows) + note + _svg(_histogram(results), size=(6.4, 3.6))


def _histogram(results: dict[str, Any]) -> Any:
    data = results["scores"]

    def draw(ax: Any) -> None:
        bins = data["bins"]
        for unit, s in data["units"].items():
            total = sum(s["histogram"]) or 1
            ax.stairs([n / total for n in s["histogram"]], bins, label=unit)
        ax.set_xscale("symlog", linthresh=0.002)
        ax.set(xlabel="risk (log scale)", ylabel="share of hours", title="Risk per unit")
        ax.legend(fontsize="small")

    return draw


def _burden(results: dict[str, Any]) -> str:
    reference = (results.get("reference_burden") or {}).get("all") or {}
    rows = [
        ("", [_e(u), f"{b['patients']:,}", _fmt(b["patient_days"], "{:,.0f}"),
              _fmt(b["threshold"], "{:.3g}"), _fmt(b["alerts_per_100_patient_days"], "{:.1f}"),
              _fmt(b["review_flags_per_100_patient_days"], "{:.1f}"),
              _fmt(b["patients_alerted"], "{:.0%}")])
        for u, b in results["burden"].items()
    ]  # fmt: skip
    if reference:
        rows.append(("baseline", ["training patients", f"{reference['patients']:,}",
                     _fmt(reference["patient_days"], "{:,.0f}"), "",
                     _fmt(reference["alerts_per_100_patient_days"], "{:.1f}"),
                     _fmt(reference["review_flags_per_100_patient_days"], "{:.1f}"),
                     _fmt(reference["patients_alerted"], "{:.0%}")]))  # fmt: skip
    head = ["Unit", "Patients", "Patient-days", "Threshold", "Alerts / 100 pt-days",
            "Review flags / 100 pt-days", "Patients alerted"]  # fmt: skip
    return _table(head, rows) + (
        '<p class="note">The alert policy replayed hour by hour with each unit\'s threshold; a '
        "simulated clinician answers each alert the hour it fires (confirmed when the hour is "
        "labelled septic, otherwise, and always without outcomes, dismissed).</p>"
    )


def _performance(results: dict[str, Any]) -> str:
    perf = results.get("performance")
    if not perf:
        return ("<h2>Performance</h2><p>No outcomes were given, so sensitivity, PPV, utility and "
                "calibration at this site are unknown.</p>")  # fmt: skip
    groups = "".join(
        f"<h3>{_e(GROUP_TITLES.get(g, g))}</h3>{_subgroup_table(cells, perf['small_cell'])}"
        for g, cells in perf["subgroups"].items()
    )
    curve = _svg(_utility(perf, _style(perf)))
    policy = policy_table(perf["alert_policy"]) if perf.get("alert_policy") else ""
    return f"""<h2>Performance at this site</h2>
<p class="note">The full evaluation, with definitions: <a href="evaluation.html">evaluation.html
</a>.</p>
{_metric_table(perf, HEADLINE)}
<h3>Alert policy</h3>{policy}
<h3>Utility against the threshold, at this site</h3>
<div class="figures">{curve}</div>
<h2>Per unit and subgroup</h2>{groups}"""


def render_site_html(results: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(results["title"])}</title>
<style>{CSS}{EXTRA_CSS}</style></head><body>
<h1>{_e(results["title"])}</h1>
{_cohort(results)}
<h2>Verdict</h2>
{_verdict(results)}
<h2>Inputs: what this site sends, against the training patients</h2>
{_inputs(results)}
<h2>The model's view: risk and out-of-distribution share per unit</h2>
{_scores(results)}
<h2>Projected alert burden</h2>
{_burden(results)}
{_performance(results)}
<h2>Method</h2>
<p class="note">Inputs are read as the site sends them; the model scores them as the store would
hold them (values outside the plausible range quarantined). The training reference is the
profile of the patients the model was trained on (PhysioNet/Computing in Cardiology Challenge
2019 set A; Reyna et al., Crit Care Med 2020;48(2):210-217).</p>
</body></html>
"""
