"""The transparency report as one self-contained HTML page (inline CSS and SVG, no script,
nothing fetched), and the JSON it is made from.

It formats what `transparency.gather` collected and decides nothing about what may be shown:
everything in the report dict is already fit to publish. Printing the page from a browser
gives the PDF (`@media print` keeps sections and tables whole).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from wardwatch.evaluate.report import _e, _fmt, _svg, _table

HTML_NAME = "transparency.html"
JSON_NAME = "transparency.json"

CSS = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;
color:#1a1a1a;line-height:1.5}
h1{margin-bottom:0.2em}h2{margin-top:2em;border-bottom:2px solid #ddd;padding-bottom:0.2em}
table{border-collapse:collapse;margin:0.6em 0 1.4em}
th,td{border:1px solid #bbb;padding:0.3em 0.6em;text-align:right;vertical-align:top}
th:first-child,td:first-child,.text th,.text td{text-align:left}
thead th{background:#eee}
tr.suppressed td{color:#555;background:#f6f6f6;font-style:italic}
.summary{border:2px solid #2a5d8f;padding:0.6em 1em;background:#f3f7fb}
.warning{border:2px solid #a33;padding:0.6em 1em;background:#fff3f3}
.note{color:#444;font-size:0.93em}
dl{display:grid;grid-template-columns:max-content 1fr;gap:0.25em 1.2em}
dt{font-weight:600}dd{margin:0}
code{font-size:0.9em;word-break:break-all}
figure{margin:0.6em 0}figure img{max-width:100%}
footer{margin-top:3em;color:#555;font-size:0.9em;border-top:1px solid #ddd}
@media print{body{max-width:none;margin:0;font-size:10.5pt}nav{display:none}
h2{break-after:avoid}table,figure,.summary{break-inside:avoid}a{color:inherit}}
"""

HEADLINE = (
    ("auroc", "AUROC (hourly)", "{:.3f}"),
    ("auprc", "AUPRC (hourly)", "{:.3f}"),
    ("utility", "Normalized utility (PhysioNet 2019)", "{:.3f}"),
    ("sensitivity", "Sensitivity: septic patients alerted by 3 h after onset", "{:.0%}"),
    ("sensitivity_before_onset", "Septic patients alerted before onset", "{:.0%}"),
    ("ppv", "PPV: alerted patients who were septic", "{:.0%}"),
    ("specificity", "Specificity: patients never septic, never alerted", "{:.0%}"),
    ("median_lead_hours", "Median warning before onset (hours)", "{:.0f}"),
    ("alerts_per_100_patient_days", "Alerts per 100 patient-days (risk ≥ threshold)", "{:.1f}"),
)
CALIBRATION = (("brier", "Brier score (lower is better)", "{:.4f}"),
               ("ece", "Expected calibration error", "{:.4f}"))  # fmt: skip
SUBGROUP = (
    ("auroc", "AUROC", "{:.3f}"),
    ("utility", "Utility", "{:.3f}"),
    ("sensitivity", "Sensitivity", "{:.0%}"),
    ("ppv", "PPV", "{:.0%}"),
    ("alerts_per_100_patient_days", "Alerts / 100 pt-days", "{:.1f}"),
)
POLICY = (
    ("alerts_per_100_patient_days", "Sepsis alerts per 100 patient-days", "{:.1f}"),
    ("review_flags_per_100_patient_days", "Needs-review flags per 100 patient-days", "{:.1f}"),
    ("patients_alerted_share", "Share of patients alerted at least once", "{:.0%}"),
    ("sensitivity", "Septic patients alerted by 3 h after onset", "{:.0%}"),
    ("ppv_per_alert", "Alerts on a septic patient (in time)", "{:.0%}"),
    ("median_lead_hours", "Median warning before onset (hours)", "{:.0f}"),
)
SPLIT_ORDER = {"fit": 0, "early_stopping": 1, "calibration": 2}
GROUP_TITLES = {"sex": "Sex", "age": "Age band (years)", "unit": "ICU unit"}
SUPPRESSED = {"small cell": "small cell", "complementary": "hidden: protects a small cell"}
ACTIONS = {"promote": "promoted", "rollback": "rolled back to", "retire": "retired"}


def write_report(report: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write `transparency.html` and `transparency.json` into `out_dir`; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out_dir / HTML_NAME, out_dir / JSON_NAME
    json_path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return html_path, json_path


# ---------------------------------------------------------------- small pieces


def _count(value: Any) -> str:
    """A published count: a number, a suppression marker ("<10"), or hidden."""
    if value is None:
        return "suppressed"
    return f"{value:,}" if isinstance(value, int) else _e(value)


def _short(version: str | None) -> str:
    return "—" if not version else f"<code>{_e(version)}</code>"


def _when(iso: str | None) -> str:
    return "—" if not iso else _e(iso.replace("T", " ").replace("+00:00", " UTC"))


def _dl(items: Iterable[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _text_table(head: list[str], rows: list[tuple[str, list[str]]]) -> str:
    """A table of words, not figures: left-aligned throughout."""
    return f'<div class="text">{_table(head, rows)}</div>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>\n{body}\n</section>'


# ---------------------------------------------------------------- sections


def _summary(report: Mapping[str, Any]) -> str:
    m = report["model"]
    how = "rolled back to" if m["made_active_how"] == "rollback" else "made active"
    by = f" ({how} by: {_e(m['made_active_by'])})" if m["made_active_by"] else ""
    return (f'<p class="summary">In service: <strong>{_e(m["name"])}</strong>, version '
            f"{_short(m['version'])}, for {_e(m['serving_scope'])} since "
            f"{_when(m['active_since'])}{by}.</p>")  # fmt: skip


def _model(report: Mapping[str, Any]) -> str:
    m = report["model"]
    scope = _e(m["serving_scope"])
    if m["scope"] != m["serving_scope"]:
        scope = f"{_e(m['scope'])} has no model of its own: the hospital's serves it"
    lineage = m["lineage"]
    items = [
        ("Model", _e(m["name"])), ("Version", _short(m["version"])), ("Serves", scope),
        ("Active since", _when(m["active_since"])),
        ("Made active by", _e(m["made_active_by"] or "—")),
        ("Reason given", _e(m["reason"] or "—")),
        ("Alert threshold (risk)", _fmt(m["threshold"], "{:.4f}")),
        ("Registered", _when(m["registered_at"])),
        ("Also scoring in shadow (never shown to clinicians)",
         ", ".join(_short(v) for v in m["shadows"]) or "none"),
        ("Code (git commit)", _short(lineage["code_commit"])),
        ("Training data (sha256 of the archive)", _short(lineage["data_sha256"])),
    ]  # fmt: skip
    return _section("model", "The model in service", _dl(items))


def _intended_use(report: Mapping[str, Any]) -> str:
    u = report["intended_use"]
    limits = "".join(f"<li>{_e(item)}</li>" for item in u["limitations"])
    body = (f"<p>{_e(u['intended_use'] or 'The model card states no intended use.')}</p>"
            f"<h3>What it predicts</h3><p>{_e(u['label'] or '—')}</p>"
            f"<h3>Known limitations</h3><ul>{limits or '<li>none stated</li>'}</ul>"
            "<h3>How the alert threshold was chosen</h3>"
            f"<p>{_e(u['threshold_how_chosen'] or '—')}</p>")  # fmt: skip
    return _section("use", "What it is for, and what it is not for", body)


def _populations(report: Mapping[str, Any]) -> str:
    pop = report["populations"]
    train = pop["training"]
    parts = sorted(train["split"].items(), key=lambda item: SPLIT_ORDER.get(item[0], 9))
    rows = [("", [_e(name.replace("_", " ")), _count(p["patients"]), _count(p["septic_patients"]),
                  _count(p["hours"])]) for name, p in parts]  # fmt: skip
    if (test := pop["validation"]) is not None:
        counts = [_count(test.get(k)) for k in ("patients", "septic_patients", "hours")]
        rows.append(("", ["test (validation, never trained on)", *counts]))
    table = _table(["Part", "Patients", "Septic patients", "Patient-hours"], rows)
    rule = f'<p class="note">Patients are split by a fixed rule on their id: <code>' \
           f"{_e(pop['split_rule'] or '—')}</code></p>"  # fmt: skip
    body = f"<p>{_e(train['description'] or '—')}</p>{table}{rule}"
    return _section("populations", "Who it was trained and validated on", body)


def _local_intro(local: Mapping[str, Any] | None) -> str:
    if local is None:
        return ('<p class="note">Figures from the model card: held-out test patients of the '
                "training hospital system. No local data was given to recompute them "
                "(<code>wardwatch report --data</code>).</p>")  # fmt: skip
    c = local["counts"]
    return (f'<p class="note">Recomputed on <code>{_e(local["source"])}</code>: '
            f"{_count(c['patients'])} patients, {_count(c['septic_patients'])} of them septic. "
            "These must be patients the model never saw in training; rates depend on how "
            "many of them were septic (a sample enriched with septic patients shows higher "
            "PPV and alert rates than a ward).</p>")  # fmt: skip


def _side_by_side(rows_spec: tuple[tuple[str, str, str], ...], card: Mapping[str, Any],
                  local: Mapping[str, Any] | None) -> str:  # fmt: skip
    head = ["Measure", "Model card (test split)"] + (["Recomputed locally"] if local else [])
    rows = [("", [_e(label), _fmt(card.get(key), form)]
             + ([_fmt(local.get(key), form)] if local else []))
            for key, label, form in rows_spec]  # fmt: skip
    return _table(head, rows)


def _performance(report: Mapping[str, Any]) -> str:
    local = report["local"]
    table = _side_by_side(HEADLINE, report["card"]["headline"], local and local["headline"])
    return _section("performance", "How well it performs", _local_intro(local) + table)


def _subgroup_rows(cells: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    rows = []
    for level, cell in cells.items():
        counts = [_count(cell["patients"]), _count(cell["septic_patients"])]
        if "suppressed" in cell:
            why = SUPPRESSED[cell["suppressed"]]
            rows.append(("suppressed", [_e(level), *counts, why] + [""] * (len(SUBGROUP) - 1)))
        else:
            rows.append(("", [_e(level), *counts, *(_fmt(cell[k], f) for k, _, f in SUBGROUP)]))
    return rows


def _subgroup_tables(subgroups: Mapping[str, Any]) -> str:
    head = ["Group", "Patients", "Septic", *(label for _, label, _ in SUBGROUP)]
    return "".join(f"<h4>{_e(GROUP_TITLES.get(g, g))}</h4>{_table(head, _subgroup_rows(cells))}"
                   for g, cells in subgroups.items())  # fmt: skip


def _noise_note(noise: Mapping[str, Any] | None) -> str:
    if noise is None:
        return '<p class="note">Exact counts (internal use only).</p>'
    return (
        f'<p class="note">Counts carry differential-privacy noise: within '
        f"±{noise['margin95']} of the true count 95 % of the time (see Privacy).</p>"
    )


def _subgroups(report: Mapping[str, Any]) -> str:
    p = report["privacy"]
    note = (f'<p class="note">The same measures within groups of patients, to see whether '
            f"any group is served worse. Groups with fewer than {p['small_patients']} patients "
            f"or {p['small_septic']} septic patients are suppressed: their counts show only "
            f"&lt;{p['small_patients']} or &lt;{p['small_septic']}, and no measure is given "
            "(one patient would move it). When the hidden groups could be recovered from the "
            "total, the next smallest group is hidden too.</p>")  # fmt: skip
    parts = [
        note,
        "<h3>Model card (held-out test split)</h3>",
        _subgroup_tables(report["card"]["subgroups"]) or "<p>The card has no subgroups.</p>",
    ]
    if report["local"]:
        parts += [
            "<h3>Recomputed locally</h3>",
            _noise_note(p["noise"]),
            _subgroup_tables(report["local"]["subgroups"]),
        ]
    return _section("subgroups", "Performance by group", "".join(parts))


def _reliability_figure(series: Mapping[str, list[Mapping[str, float]]]) -> str:
    def draw(ax: Any) -> None:
        top = 0.0
        for (name, bins), marker in zip(series.items(), "os", strict=False):
            x, y = [b["mean_risk"] for b in bins], [b["observed"] for b in bins]
            ax.plot(x, y, marker=marker, label=name)
            top = max(top, *x, *y)
        top = min(1.0, top * 1.05) or 1.0
        ax.plot([0, top], [0, top], color="0.6", linewidth=0.8, linestyle="--",
                label="perfect calibration")  # fmt: skip
        ax.set(xlabel="mean predicted risk (tenths of the hours, by risk)",
               ylabel="observed share of hours labelled sepsis", title="Reliability")  # fmt: skip
        ax.legend(fontsize="small")

    alt = ("Reliability diagram: mean predicted risk against the observed share of hours "
           "labelled sepsis; points on the diagonal mean the risk is calibrated.")  # fmt: skip
    image = _svg(draw).replace('alt=""', 'alt="' + _e(alt) + '"', 1)
    return f"<figure>{image}</figure>"


def _calibration(report: Mapping[str, Any]) -> str:
    card, local = report["card"], report["local"]
    series = {"model card (test split)": card["reliability"]}
    if local and local["reliability"]:
        series["recomputed locally"] = local["reliability"]
    series = {k: v for k, v in series.items() if v}
    figure = _reliability_figure(series) if series else "<p>No reliability data.</p>"
    method = _e(card["calibration_method"] or "—")
    text = (f"<p>A calibrated risk means what it says: of hours given a 5 % risk, about 5 % "
            f"are labelled sepsis. The model's raw scores are mapped to probabilities "
            f"(method: {method}) on patients it was not trained on.</p>")  # fmt: skip
    table = _side_by_side(CALIBRATION, card["headline"], local and local["headline"])
    return _section("calibration", "Calibration", text + figure + table)


def _policy_settings(settings: Mapping[str, Mapping[str, Any]]) -> str:
    def on(value: Any) -> str:
        return "on" if value else "off"

    def row(kind: str, p: Mapping[str, Any]) -> list[str]:
        threshold = _fmt(p["threshold"], "{:.4f}") if p["threshold"] else "the model's"
        return [_e(kind), threshold, on(p["require_organ_dysfunction"]),
                on(p["suppress_realert"]), _fmt(p["realert_after_hours"], "{:g} h")]  # fmt: skip

    rows = [("", row(kind, p)) for kind, p in settings.items()]
    head = ["Care unit", "Threshold", "Needs a sign of organ dysfunction",
            "Quiet after a clinician's decision", "for"]  # fmt: skip
    return _text_table(head, rows)


def _burden(report: Mapping[str, Any]) -> str:
    card, local = report["card"]["headline"], report["local"]
    text = ("<p>How often clinicians are interrupted. The model card counts every time the "
            "risk crosses the threshold: "
            f"<strong>{_fmt(card.get('alerts_per_100_patient_days'), '{:.1f}')}</strong> "
            "alerts per 100 patient-days on its test patients.</p>")  # fmt: skip
    if not local:
        note = ('<p class="note">The alert policy at the bedside (a sign of organ dysfunction '
                "required, quiet after a clinician's decision) alerts less often; give "
                "<code>--data</code> to replay it.</p>")  # fmt: skip
        return _section("burden", "Alert burden", text + note)
    rows = [("", [_e(label), _fmt(local["policy"].get(key), form)]) for key, label, form in POLICY]
    replay = (f"<p>The current alert policy, replayed hour by hour over the "
              f"{_count(local['counts']['patients'])} local patients, with a simulated "
              "clinician who answers every alert the hour it fires "
              f"({_count(local['counts']['patients_alerted'])} patients alerted):</p>")  # fmt: skip
    body = text + replay + _table(["Measure", "Value"], rows)
    return _section("burden", "Alert burden", body + _policy_settings(local["policy_settings"]))


def _drift(report: Mapping[str, Any]) -> str:
    d = report["drift"]
    if d["last_run"] is None:
        run = "<p><strong>No monitoring run yet.</strong> Drift is checked by " \
              "<code>wardwatch monitor</code>.</p>"  # fmt: skip
    else:
        last = d["last_run"]
        run = (f"<p>Last monitoring run: {_when(last['finished_at'])}, on {_e(last['source'])}; "
               f"it raised {last['notices_raised']} new notice(s).</p>")  # fmt: skip
    if not d["open_total"]:
        return _section("drift", "Drift monitoring", run + "<p>No open drift notice.</p>")
    rows = [("", [_e(group["what"]), str(group["count"]),
                  "<br>".join(f"{_e(n['subject'])}: {_e(n['message'])}" for n in group["notices"])])
            for group in d["open"]]  # fmt: skip
    table = _text_table(["What changed", "Open notices", "Details"], rows)
    summary = f"<p>{d['open_total']} drift notice(s) await review by the governance team.</p>"
    return _section("drift", "Drift monitoring", run + summary + table)


def _gates(row: Mapping[str, Any]) -> str:
    gates = row["gates"]
    if not gates["checked"]:
        return "not checked"
    return "passed" if gates["passed"] else "failed: " + ", ".join(gates["failed"])


def _event_cells(row: Mapping[str, Any]) -> list[str]:
    what = f"{ACTIONS.get(row['action'], row['action'])} {_short(row['version'])}"
    if row["previous"]:
        what += f" (replacing {_short(row['previous'])})"
    reason = _e(row["reason"] or "—")
    if row["override"]:
        reason += f"<br><strong>Gate override:</strong> {_e(row['override'])}"
    return [_when(row["at"]), what, _e(row["scope"] or "all"), _e(row["by"]), _e(_gates(row)),
            reason]  # fmt: skip


def _events_table(rows: Iterable[Mapping[str, Any]]) -> str:
    head = ["When", "What", "Where", "By (role)", "Promotion gates", "Reason given"]
    return _text_table(head, [("", _event_cells(r)) for r in rows])


def _incidents(report: Mapping[str, Any]) -> str:
    rows = report["incidents"]
    text = ("<p>Rollbacks (a model taken out of service for the one before it) and promotions "
            "that went ahead although a promotion gate failed, newest first.</p>")  # fmt: skip
    body = _events_table(rows) if rows else "<p>None recorded.</p>"
    return _section("incidents", "Incidents and rollbacks", text + body)


def _history(report: Mapping[str, Any]) -> str:
    rows = report["history"]
    body = _events_table(rows) if rows else "<p>No promotion yet.</p>"
    return _section("history", "Model history", "<p>Every promotion, rollback and retirement, "
                    "newest first.</p>" + body)  # fmt: skip


def _privacy(report: Mapping[str, Any]) -> str:
    p, local = report["privacy"], report["local"]
    parts = [
        "<p>This report holds aggregates only: no patient is named, and staff appear by "
        "role, not by name. Subgroups too small to publish are suppressed (above).</p>"
    ]
    if local is not None and p["noise"] is None:
        parts.insert(0, '<p class="warning"><strong>Internal use only:</strong> the local '
                     "counts are exact (made with <code>--no-noise</code>); do not publish "
                     "this page.</p>")  # fmt: skip
    elif local is not None:
        parts.append(f"<p>Differential privacy, <strong>ε = {p['noise']['epsilon']:g}</strong> "
                     f"for all local counts together. {_e(p['noise']['statement'])} Shares "
                     "of patients are computed from the noisy counts. Performance measures "
                     "(AUROC, utility, calibration, rates per patient-day) are exact and not "
                     "covered by this guarantee.</p>")  # fmt: skip
    parts.append(
        "<p>Figures quoted from the model card are the card's own, published with the model.</p>"
    )
    return _section("privacy", "Privacy of this report", "".join(parts))


NAV = (("model", "The model"), ("use", "Intended use"), ("populations", "Populations"),
       ("performance", "Performance"), ("subgroups", "By group"), ("calibration", "Calibration"),
       ("burden", "Alert burden"), ("drift", "Drift"), ("incidents", "Incidents"),
       ("history", "History"), ("privacy", "Privacy"))  # fmt: skip


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    nav = " · ".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in NAV)
    sections = (_model, _intended_use, _populations, _performance, _subgroups, _calibration,
                _burden, _drift, _incidents, _history, _privacy)  # fmt: skip
    body = "\n".join(section(report) for section in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(report["title"])}</title>
<style>{CSS}</style></head><body>
<header><h1>{_e(report["title"])}</h1>
<p class="note">Generated {_when(report["generated_at"])}. The model informs; the clinician
decides.</p>
{_summary(report)}
<nav aria-label="sections">{nav}</nav></header>
<main>
{body}
</main>
<footer><p>Made by <code>wardwatch report</code>; the numbers behind this page are in
<code>transparency.json</code> beside it. To keep a PDF, print this page from a browser
(“Save as PDF”). Data behind the model card: PhysioNet/Computing in Cardiology Challenge 2019
(Reyna et al., Crit Care Med 2020;48(2):210-217; doi 10.13026/v64v-d857).</p></footer>
</body></html>
"""
