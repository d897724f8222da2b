"""The governance dashboard: what the committee reads before it promotes, rolls back or signs
off — the models in service, shadows against the active model, drift notices, the latest
fairness audit, incidents, break-the-glass accesses waiting for review and the attempts to
break the glass that were refused.

No patient data on this page: figures are aggregates, and the break-the-glass queue and its
refusals (who opened, or tried to open, which encounter, and why) are shown only to roles
that review it; the others see how many.

Routes and the permission each declares (see `access`):

    GET  /governance                                  governance.read
    POST /governance/notices/{id}/acknowledge         monitor.acknowledge
    POST /governance/break-glass/{id}/review          break_glass.review

Fairness needs outcomes, which the live store rarely has when the page is read, so the page
does not compute it: it shows the newest audit written by `wardwatch fairness DATA --out DIR`
under `<home>/reports/`, with its date and model, or says how to write one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from sqlalchemy import Connection, func, select

from wardwatch.alerts.workflow import Actor
from wardwatch.model import registry
from wardwatch.model.compare import compare_models
from wardwatch.monitor import notices
from wardwatch.security import break_glass, roles
from wardwatch.store.schema import scores
from wardwatch.terminology import wording
from wardwatch.web.access import FormError, PageRoute, Require
from wardwatch.web.auth import client_address, wall_clock
from wardwatch.web.deps import Services, connection, services
from wardwatch.web.rendering import render, templates

router = APIRouter(route_class=PageRoute, default_response_class=HTMLResponse)

reads_governance = Require("governance.read")
acknowledges_notices = Require("monitor.acknowledge")
reviews_break_glass = Require("break_glass.review")

# base.html shows the Governance link by permission, not by role name.
templates.env.globals.setdefault("has_permission", roles.has_permission)

HISTORY_SHOWN = 20  # registry events in the "recent changes" table
REFUSALS_WINDOW = timedelta(days=30)  # refused break-the-glass attempts: a month's look back
REFUSALS_SHOWN = 50
RUNS_SHOWN = 10
DONE: Mapping[str, str] = {
    "acknowledged": "Notice acknowledged. It stays in the monitor's record with your note.",
    "reviewed": "Break-the-glass access reviewed. The review is in the audit trail.",
}


# ---------------------------------------------------------------- the page


@router.get("/governance")
def governance(
    request: Request,
    actor: Annotated[Actor, Depends(reads_governance)],
    conn: Annotated[Connection, Depends(connection)],
    svc: Annotated[Services, Depends(services)],
) -> HTMLResponse:
    """Models in service, shadow comparisons, drift, fairness, incidents, break-the-glass."""
    events = registry.history(conn, limit=500)
    reviewer = roles.has_permission(actor.role, "break_glass.review")
    pending = break_glass.pending_break_glass_reviews(conn)
    reports = Path(svc.pipeline.settings.home) / "reports"
    now = wall_clock()
    context = {
        "now": now,
        "notice": DONE.get(request.query_params.get("done", ""), ""),
        "in_service": in_service(conn),
        "fixed_version": svc.model.version,
        "models": registry_table(conn),
        "recent": events[:HISTORY_SHOWN],
        "comparisons": comparisons(conn),
        "open_notices": [_with_chart(n) for n in notices.open_notices(conn)],
        "runs": notices.runs(conn, limit=RUNS_SHOWN),
        "fairness": latest_fairness(reports),
        "reports_dir": reports,
        "incidents": incidents(events),
        "reviewer": reviewer,
        "pending": pending if reviewer else [],
        "pending_count": len(pending),
        **refusals(conn, now, reviewer),
        "may_acknowledge": roles.has_permission(actor.role, "monitor.acknowledge"),
    }
    return render(request, "governance.html", actor, context)


def refusals(conn: Connection, now: datetime, reviewer: bool) -> dict[str, Any]:
    """The last 30 days' refused break-the-glass attempts: how many for everyone who reads the
    page; who tried which stay, and why, for reviewers only (as the review queue)."""
    since = now - REFUSALS_WINDOW
    by_person = break_glass.refusals_by_person(conn, since)
    shown = break_glass.refused_attempts(conn, since, REFUSALS_SHOWN) if reviewer else []
    return {"refused": shown, "refused_count": sum(n for _, n in by_person),
            "refused_by_person": by_person if reviewer else []}  # fmt: skip


def in_service(conn: Connection) -> list[dict[str, Any]]:
    """Every slot (scope, active or shadow, since when) with the model's label and threshold."""
    entries = {m.version: m for m in registry.list_models(conn)}
    return [
        {"scope": scope, "role": role, "version": version, "since": since,
         "label": entries[version].label if version in entries else "",
         "threshold": entries[version].threshold if version in entries else None}
        for scope, role, version, since in registry.slots(conn)
    ]  # fmt: skip


def registry_table(conn: Connection) -> list[dict[str, Any]]:
    """Every registered version, newest first, with where it serves now."""
    serving: dict[str, list[str]] = {}
    for scope, role, version, _ in registry.slots(conn):
        serving.setdefault(version, []).append(f"{role} in {scope}")
    models = sorted(registry.list_models(conn), key=lambda m: m.registered_at, reverse=True)
    return [{"entry": m, "serving": serving.get(m.version, [])} for m in models]


def comparisons(conn: Connection) -> list[dict[str, Any]]:
    """Each shadow against its scope's active model, on the hours both scored."""
    found = []
    for scope, role, version, since in registry.slots(conn):
        active = registry.active_version(conn, scope) or registry.active_version(conn)
        if role != registry.SHADOW or active is None:
            continue
        result = compare_models(conn, active, version, since=_first_score(conn, version))
        found.append({"scope": scope, "active": active, "shadow": version, "since": since,
                      "result": result, "charts": _comparison_charts(result, len(found)),
                      "figures": labelled_figures(result.get("labelled"))})  # fmt: skip
    return found


def _first_score(conn: Connection, version: str) -> datetime | None:
    """When `version`'s scores start, on the clock of the data (`scores.as_of`): nothing
    earlier can pair, and the slot's `since` is the wall clock, which a replayed ward's data
    does not keep. Bounding the query keeps years of active scores out of memory."""
    query = select(func.min(scores.c.as_of)).where(scores.c.model_version == version)
    return conn.execute(query).scalar()


# The labelled figures of a comparison, as the evaluation names and formats them.
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("utility", "PhysioNet utility (normalized)", "{:.3f}"),
    ("auroc", "AUROC (hours)", "{:.3f}"),
    ("sensitivity", "Sensitivity (patients)", "{:.1%}"),
    ("ppv", "PPV (patients)", "{:.1%}"),
    ("specificity", "Specificity (patients)", "{:.1%}"),
    ("alerts_per_100_patient_days", "Alerts per 100 patient-days", "{:.1f}"),
    ("median_lead_hours", "Median lead time (h)", "{:.1f}"),
    ("ece", "Expected calibration error", "{:.3f}"),
)


def labelled_figures(labelled: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """(figure, active, shadow) rows of a comparison's labelled part; "–" where undefined."""
    if not labelled:
        return []
    return [(label, _cell(labelled["first"].get(key), form),
             _cell(labelled["second"].get(key), form)) for key, label, form in FIGURES]  # fmt: skip


def _cell(value: Any, form: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return form.format(value)


def incidents(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rollbacks and promotions that overrode a failed gate, newest first (as `events`)."""
    return [e for e in events if e["action"] == "rollback" or (e["detail"] or {}).get("override")]


# ---------------------------------------------------------------- fairness


@dataclass(frozen=True)
class FairnessAudit:
    """The newest stored fairness audit, or why it could not be read."""

    path: Path
    written_at: datetime
    model_version: str = ""
    patients: str = ""
    html: Markup | None = None
    problem: str = ""


def latest_fairness(reports: Path) -> FairnessAudit | None:
    """The newest `fairness.json` anywhere under `reports` (None if there is none)."""
    found = [p for p in reports.rglob("fairness.json") if p.is_file()]
    if not found:
        return None
    path = max(found, key=lambda p: p.stat().st_mtime)
    written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        html = _fairness_html(result)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return FairnessAudit(path, written, problem=f"{type(error).__name__}: {error}")
    return FairnessAudit(path, written, str(result.get("model_version", "")),
                         str(result.get("patients_selected", "")), html)  # fmt: skip


def _fairness_html(result: dict[str, Any]) -> Markup:
    # Imported here: the audit pulls in fairlearn and scikit-learn, which a server that has
    # no stored audit (most page loads of a new install) need not load.
    from wardwatch.monitor.fairness import render_html

    return Markup(render_html(result))  # render_html escapes every value it writes


# ---------------------------------------------------------------- acting


@router.post("/governance/notices/{notice_id}/acknowledge")
def acknowledge_notice(
    notice_id: int,
    actor: Annotated[Actor, Depends(acknowledges_notices)],
    conn: Annotated[Connection, Depends(connection)],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> RedirectResponse:
    """Mark a drift notice reviewed, by name, with what was decided."""
    if not note.strip():
        raise FormError("Say what was decided (e.g. 'feed fixed', 'expected: new unit').")
    try:
        notices.acknowledge(conn, notice_id, actor.user_id, note.strip(), at=wall_clock())
    except (LookupError, ValueError) as error:  # unknown, or already acknowledged
        raise FormError(str(error)) from None
    return RedirectResponse("/governance?done=acknowledged#drift", status_code=303)


@router.post("/governance/break-glass/{grant_id}/review")
def review_break_glass(
    request: Request,
    grant_id: int,
    actor: Annotated[Actor, Depends(reviews_break_glass)],
    conn: Annotated[Connection, Depends(connection)],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> RedirectResponse:
    """Review one break-the-glass access (not one's own: NotPermitted, shown as a page)."""
    try:
        break_glass.review(conn, grant_id, actor, note, wall_clock(),
                           source=client_address(request))  # fmt: skip
    except (LookupError, ValueError) as error:  # unknown grant, or no note
        raise FormError(str(error)) from None
    return RedirectResponse("/governance?done=reviewed#break-glass", status_code=303)


# ---------------------------------------------------------------- charts

BAR_WIDTH, LABEL_WIDTH, ROW_HEIGHT, VALUE_WIDTH = 260, 150, 26, 70


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    kind: str  # a CSS class: first | second | agree | figure | limit


def bar_chart(chart_id: str, title: str, description: str, bars: Sequence[Bar],
              top: float, form: str = "percent") -> Markup:  # fmt: skip
    """Horizontal bars on one scale from 0 to `top`, each labelled with its value: a small
    inline SVG with a title and a sentence for screen readers (as `charts.risk_chart`)."""
    width, height = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH, ROW_HEIGHT * len(bars) + 6
    parts = [
        f'<svg class="bar-chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>',
    ]
    for row, bar in enumerate(bars):
        parts += _bar(row, bar, top, form)
    return Markup("".join(parts) + "</svg>")


def _bar(row: int, bar: Bar, top: float, form: str) -> list[str]:
    y = 3 + row * ROW_HEIGHT
    length = BAR_WIDTH * min(max(bar.value / top, 0.0), 1.0) if top > 0 else 0.0
    value = _value(bar.value, form)
    return [
        f'<text class="bar-label" x="{LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">'
        f"{escape(bar.label)}</text>",
        f'<rect class="bar-track" x="{LABEL_WIDTH}" y="{y + 2}" width="{BAR_WIDTH}" height="16"/>',
        f'<rect class="bar bar-{bar.kind}" x="{LABEL_WIDTH}" y="{y + 2}" '
        f'width="{length:.1f}" height="16"/>',
        f'<text class="bar-value" x="{LABEL_WIDTH + BAR_WIDTH + 6}" y="{y + 15}">{value}</text>',
    ]


def _value(value: float, form: str) -> str:
    return escape(wording.percent(value) if form == "percent" else f"{value:.3g}")


def _comparison_charts(result: Mapping[str, Any], index: int) -> list[Markup]:
    """Alert rates side by side (on a scale that shows the difference), and agreement."""
    if "agreement" not in result:
        return []
    first, second = result["alert_rate_first"], result["alert_rate_second"]
    rates = bar_chart(
        f"rates-{index}", "Hours alerting",
        f"Active model alerts in {wording.percent(first)} of hours, shadow in "
        f"{wording.percent(second)}, on {result['hours']} hours both scored.",
        [Bar("active", first, "first"), Bar("shadow", second, "second")],
        _ceiling(max(first, second)),
    )  # fmt: skip
    agreement = bar_chart(
        f"agree-{index}", "Agreement on alerting",
        f"The two models agree on whether to alert in {wording.percent(result['agreement'])} "
        "of hours.", [Bar("agree", result["agreement"], "agree")], 1.0,
    )  # fmt: skip
    return [rates, agreement]


def _with_chart(notice: dict[str, Any]) -> dict[str, Any]:
    """A notice with a bar chart of its figure against its threshold."""
    figure, limit = float(notice["figure"]), float(notice["threshold"])
    chart = bar_chart(
        f"notice-chart-{notice['id']}", f"{notice['subject']}: figure against threshold",
        f"Figure {figure:.3g} against the threshold {limit:.3g}.",
        [Bar("figure", figure, "figure"), Bar("threshold", limit, "limit")],
        _ceiling(max(abs(figure), abs(limit))), form="number",
    )  # fmt: skip
    return notice | {"chart": chart}


def _ceiling(value: float) -> float:
    """A round number just above `value` (1, 2, 2.5 or 5 x 10^k), so bars never touch the end."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value * 1.05))
    return next(s * power for s in (1, 2, 2.5, 5, 10) if s * power >= value * 1.05)
