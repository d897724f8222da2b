"""The transparency report (`wardwatch report`): the active model, in public.

One page a governance committee and the public can read: which model is in service and since
when, what it is for and not for, whom it was trained and validated on, how well it does
overall and per group, how well calibrated, how many alerts it causes, whether monitoring sees
drift, and every promotion, rollback and gate override with the reason given.

`gather` collects everything as one JSON-able dict that is already fit to publish;
`render_html` (in `transparency_report`) only formats it, so the JSON written beside the page
is exactly as public as the page:

- **Aggregates only.** No patient id, no user id: people who promoted or rolled back a model
  are named by their role, and user ids inside their reasons are blanked.
- **Small cells suppressed.** A subgroup with fewer than 10 patients or 5 septic patients
  shows "<10" / "<5" and no figure: one patient moves it, and it may single a patient out.
  When hidden cells could be recovered by subtraction from the published total, the next
  smallest cells of the grouping are hidden too ("complementary" suppression).
- **Counts with differential-privacy noise.** The patient counts computed from local data
  (`--data`) are released once, as one table, through `security.dp_counts`, with the epsilon
  stated on the page. Shares that are ratios of those counts are computed from the noisy
  counts (post-processing: no extra privacy cost). Performance figures (AUROC, utility,
  calibration) are exact; the guarantee covers the counts, not them, which the page says.
  Figures quoted from the model card are the card's own, unchanged: the card is published
  with the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, select

from wardwatch.alerts.burden import burden, simulate
from wardwatch.alerts.policy import PolicyBook, load_policy_book
from wardwatch.evaluate.metrics import evaluate_predictions, headline, patient_alerts
from wardwatch.evaluate.run import POLICY_INPUTS, as_predictions
from wardwatch.evaluate.subgroups import evaluate_subgroups
from wardwatch.evaluate.utility import Stays
from wardwatch.ingest.psv import LABEL, read_cohort
from wardwatch.model import registry
from wardwatch.model.cohort import score_cohort
from wardwatch.model.risk import RiskModel
from wardwatch.monitor.fairness import SMALL_EVENTS, SMALL_PATIENTS
from wardwatch.monitor.notices import STORE, count_open, open_notices, runs
from wardwatch.monitor.transparency_report import render_html, write_report
from wardwatch.security import audit
from wardwatch.security.audit import _at_text
from wardwatch.security.dp_counts import noisy_counts, statement
from wardwatch.security.users import users

__all__ = [
    "DEFAULT_EPSILON",
    "TransparencyError",
    "gather",
    "publish",
    "recompute",
    "render_html",
    "suppress_small_cells",
    "write_report",
]

DEFAULT_EPSILON = 1.0
SMALL_SEPTIC = SMALL_EVENTS
MODEL = "active model"
HISTORY_ACTIONS = ("promote", "rollback", "retire")
HEADLINE_KEYS = (
    "auroc", "auprc", "utility", "sensitivity", "sensitivity_before_onset", "ppv",
    "specificity", "median_lead_hours", "brier", "ece", "alerts_per_100_patient_days",
)  # fmt: skip
SUBGROUP_KEYS = ("auroc", "utility", "sensitivity", "ppv", "alerts_per_100_patient_days")
POLICY_KEYS = (
    "alerts_per_100_patient_days", "review_flags_per_100_patient_days", "sensitivity",
    "sensitivity_before_onset", "ppv_per_alert", "median_lead_hours",
)  # fmt: skip
COHORT_COUNTS = ("patients", "septic_patients", "patients_alerted")
ROLE_NAMES = {
    "auditor": "governance committee member",
    "data_scientist": "data scientist",
    "admin": "administrator",
    "provider": "physician",
    "nurse": "nurse",
    "integration_engineer": "integration engineer",
    "system": "wardwatch itself (automatic)",
}
DRIFT_KINDS = {
    "input_values": "the values of an input changed",
    "input_measured": "how often an input is measured changed",
    "prediction": "the distribution of risk changed",
    "alert_rate": "the alert rate changed",
    "ood": "more inputs unlike the training data",
    "calibration": "risk no longer matches observed outcomes",
}
SCRUBBED = "[a staff member]"


class TransparencyError(ValueError):
    """The report cannot be made; the message says why and what to do."""


def gather(
    conn: Connection,
    *,
    data: Path | None = None,
    scope: str = registry.HOSPITAL,
    epsilon: float | None = DEFAULT_EPSILON,
    seed: int | None = None,
    policy_book: PolicyBook | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The public report of the active model of `scope`, as a JSON-able dict.

    `data`: labelled PhysioNet-format files (patients the model never saw) to recompute the
    figures on. `epsilon`: the privacy budget of the counts from `data` (None: exact counts,
    for internal use only). `seed` is for tests only (see `security.dp_counts`).
    """
    entry, serving = _active(conn, scope)
    events = registry.history(conn)
    roles, scrub = _event_roles(conn, events), _scrubber(conn, events)
    report: dict[str, Any] = {
        "title": "Sepsis early warning: transparency report",
        "generated_at": _iso(now or datetime.now(UTC)),
        "model": _model(conn, entry, scope, serving, events, roles, scrub),
        "intended_use": _intended_use(entry.card),
        "populations": _populations(entry.card),
        "card": _card_figures(entry.card),
        "local": None,
        "drift": _drift(conn),
        "incidents": _incidents(events, roles, scrub),
        "history": [_event_row(e, roles, scrub) for e in events if e["action"] in HISTORY_ACTIONS],
        "privacy": _privacy(None),
    }
    if data is not None:
        book = policy_book or load_policy_book()
        exact = recompute(data, registry.load_entry(entry), book)
        report["local"], noise = publish(exact, epsilon, seed)
        report["privacy"] = _privacy(noise)
    return report


# ---------------------------------------------------------------- the model and its card


def _active(conn: Connection, scope: str) -> tuple[registry.ModelEntry, str]:
    """The model that scores the scope's stays: its own active model, else the hospital's."""
    for candidate in dict.fromkeys((scope, registry.HOSPITAL)):
        if (version := registry.active_version(conn, candidate)) is not None:
            return registry.get_model(conn, version), candidate
    raise TransparencyError(
        f"no active model for {scope!r} or the hospital: run `wardwatch db init` (it makes the "
        "shipped model active) or promote one with `wardwatch models promote`"
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="minutes")


def _model(conn: Connection, entry: registry.ModelEntry, scope: str, serving: str,
           events: list[dict[str, Any]], roles: dict[int, str],
           scrub: Callable[[str], str]) -> dict[str, Any]:  # fmt: skip
    since = next(s for sc, role, v, s in registry.slots(conn)
                 if sc == serving and role == registry.ACTIVE and v == entry.version)  # fmt: skip
    made = next((e for e in events if e["version"] == entry.version and e["scope"] == serving
                 and e["action"] in ("promote", "rollback")), None)  # fmt: skip
    lineage = entry.lineage
    return {
        "version": entry.version,
        "name": entry.card.get("name") or entry.label,
        "label": entry.label,
        "scope": scope,
        "serving_scope": serving,
        "threshold": entry.threshold,
        "registered_at": _iso(entry.registered_at),
        "active_since": _iso(since),
        "made_active_by": roles.get(made["id"]) if made else None,
        "made_active_how": made["action"] if made else None,
        "reason": scrub(made["reason"]) if made else None,
        "shadows": registry.shadow_versions(conn, serving),
        "card_created": entry.card.get("created"),
        "lineage": {
            "code_commit": lineage.get("code", {}).get("git_commit"),
            "data_sha256": lineage.get("data", {}).get("source_archive_sha256"),
            "libraries": lineage.get("libraries", {}),
        },
    }


def _intended_use(card: Mapping[str, Any]) -> dict[str, Any]:
    threshold = card.get("operating_threshold", {})
    return {
        "intended_use": card.get("intended_use"),
        "label": card.get("label"),
        "limitations": list(card.get("limitations", [])),
        "threshold_how_chosen": threshold.get("how_chosen"),
    }


def _test_split(card: Mapping[str, Any]) -> dict[str, Any]:
    return dict(card.get("validation", {}).get("test_split", {}))


def _populations(card: Mapping[str, Any]) -> dict[str, Any]:
    pop = card.get("training_population", {})
    split = {name: {k: part.get(k) for k in ("patients", "septic_patients", "hours")}
             for name, part in pop.get("split", {}).items()}  # fmt: skip
    keys = ("description", "patients", "septic_patients", "hours")
    return {
        "training": {k: pop.get(k) for k in keys} | {"split": split},
        "split_rule": pop.get("split_rule"),
        "validation": _test_split(card).get("counts"),
    }


def _card_figures(card: Mapping[str, Any]) -> dict[str, Any]:
    test = _test_split(card)
    subgroups = {g: {level: _subgroup_cell(c) for level, c in cells.items()}
                 for g, cells in test.get("subgroups", {}).items()}  # fmt: skip
    return {
        "headline": {k: test.get(k) for k in HEADLINE_KEYS},
        "reliability": _bins(test.get("reliability", [])),
        "calibration_method": card.get("calibration", {}).get("method"),
        "subgroups": {g: suppress_small_cells(cells) for g, cells in subgroups.items()},
    }


def _bins(bins: list[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Reliability points without their hour counts: the figure needs no more."""
    return [{"mean_risk": b["mean_risk"], "observed": b["observed"]} for b in bins]


def _subgroup_cell(cell: Mapping[str, Any]) -> dict[str, Any]:
    figures = cell.get("models", {}).get(MODEL, cell)  # evaluate_subgroups nests per model
    return {"patients": int(cell["patients"]), "septic_patients": int(cell["septic_patients"]),
            **{k: figures.get(k) for k in SUBGROUP_KEYS}}  # fmt: skip


# ---------------------------------------------------------------- small cells


def _is_small(cell: Mapping[str, Any]) -> bool:
    return cell["patients"] < SMALL_PATIENTS or cell["septic_patients"] < SMALL_SEPTIC


def _hidden_total(cells: Mapping[str, Mapping[str, Any]], hidden: set[str]) -> dict[str, int]:
    return {k: sum(cells[level][k] for level in hidden) for k in ("patients", "septic_patients")}


def suppress_small_cells(cells: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """One grouping's cells (level -> patients, septic_patients, figures) fit to publish.

    A small cell keeps only "<10" / "<5" where its count is below the limit; while the hidden
    cells together are still small (so the published total minus the shown cells would
    reveal them), the smallest shown cell is hidden as well, counts and figures.
    """
    small = {level for level, cell in cells.items() if _is_small(cell)}
    hidden = set(small)
    while hidden and len(hidden) < len(cells) and _is_small(_hidden_total(cells, hidden)):
        shown = [(cell["patients"], level) for level, cell in cells.items() if level not in hidden]
        hidden.add(min(shown)[1])
    return {level: (_suppressed(cell, level in small) if level in hidden else dict(cell))
            for level, cell in cells.items()}  # fmt: skip


def _suppressed(cell: Mapping[str, Any], small: bool) -> dict[str, Any]:
    if not small:
        return {"suppressed": "complementary", "patients": None, "septic_patients": None}
    return {
        "suppressed": "small cell",
        "patients": f"<{SMALL_PATIENTS}" if cell["patients"] < SMALL_PATIENTS else None,
        "septic_patients": f"<{SMALL_SEPTIC}" if cell["septic_patients"] < SMALL_SEPTIC else None,
    }


# ---------------------------------------------------------------- recomputed on local data


def _cohort(data: Path) -> pd.DataFrame:
    if not Path(data).exists():
        raise TransparencyError(f"{data}: no such file or directory; give labelled .psv files "
                                "(a directory, one file or a .tar.gz)")  # fmt: skip
    wide = read_cohort(Path(data))
    if LABEL not in wide.columns or wide[LABEL].isna().any():
        raise TransparencyError(f"{data}: {LABEL} is missing on some rows; the report "
                                "recomputes performance only on labelled data")  # fmt: skip
    return wide.sort_values(["patient_id", "hour"], kind="stable").reset_index(drop=True)


def recompute(data: Path, model: RiskModel, book: PolicyBook) -> dict[str, Any]:
    """Exact figures of `model` on the labelled files at `data`: NOT fit to publish as they
    are (exact counts, small cells): `publish` makes them so."""
    wide = _cohort(data)
    outputs = score_cohort(wide, model).loc[:, list(POLICY_INPUTS)]
    labels = wide[LABEL].to_numpy()
    stays = Stays.from_labels(wide["patient_id"].to_numpy(), labels)
    predictions = as_predictions(outputs, model.threshold)
    result = evaluate_predictions(stays, labels, predictions, curves=False)
    simulated = simulate(wide, outputs, book, model.threshold)
    fired = simulated["fired"].to_numpy()
    policy = burden(wide, simulated, stays)
    subgroups = evaluate_subgroups(wide, {MODEL: predictions})
    return {
        "source": Path(data).name,
        "counts": {"patients": stays.n_stays, "septic_patients": int(stays.septic.sum()),
                   "patients_alerted": int(patient_alerts(stays, fired)["alerted_patients"])},
        "headline": {k: headline(result).get(k) for k in HEADLINE_KEYS},
        "reliability": _bins((result["calibration"] or {}).get("bins", [])),
        "policy": {k: policy[k] for k in POLICY_KEYS},
        "policy_settings": _policy_settings(book),
        "subgroups": {g: {level: _subgroup_cell(c) for level, c in cells.items()}
                      for g, cells in subgroups.items()},
    }  # fmt: skip


def _policy_settings(book: PolicyBook) -> dict[str, dict[str, Any]]:
    keys = ("threshold", "require_organ_dysfunction", "suppress_realert", "realert_after_hours")
    return {kind: {k: getattr(p, k) for k in keys} for kind, p in book.policies.items()}


def publish(exact: Mapping[str, Any], epsilon: float | None,
            seed: int | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:  # fmt: skip
    """`recompute`'s figures fit to publish: small cells suppressed, and every count released
    with differential-privacy noise as one table (epsilon None: exact, internal use only).
    Returns the figures and how the counts were made noisy (None when exact)."""
    subgroups = {g: suppress_small_cells(cells) for g, cells in exact["subgroups"].items()}
    counts = {f"cohort|{k}": int(v) for k, v in exact["counts"].items()}
    for g, cells in subgroups.items():
        for level, cell in cells.items():
            if "suppressed" not in cell:
                counts |= {f"{g}|{level}|{k}": cell[k] for k in ("patients", "septic_patients")}
    # One patient changes each cohort count and two counts in every grouping, at most.
    contributions = len(exact["counts"]) + 2 * len(subgroups)
    released, noise = _release(counts, epsilon, seed, contributions)
    for g, cells in subgroups.items():
        for level, cell in cells.items():
            if "suppressed" not in cell:
                cell |= {k: released[f"{g}|{level}|{k}"] for k in ("patients", "septic_patients")}
    cohort = {k: released[f"cohort|{k}"] for k in exact["counts"]}
    share = cohort["patients_alerted"] / cohort["patients"] if cohort["patients"] else None
    local = {k: v for k, v in exact.items() if k not in ("counts", "subgroups")}
    local |= {"counts": cohort, "subgroups": subgroups}
    local["policy"] = {**exact["policy"], "patients_alerted_share": share}
    return local, noise


def _release(counts: dict[str, int], epsilon: float | None, seed: int | None,
             contributions: int) -> tuple[dict[str, int], dict[str, Any] | None]:  # fmt: skip
    if epsilon is None:
        return dict(counts), None
    noisy = noisy_counts(counts, epsilon, seed, contributions=contributions)
    first = next(iter(noisy.values()))
    return {k: v.count for k, v in noisy.items()}, {
        "epsilon": first.epsilon, "scale": first.scale, "margin95": first.margin95,
        "contributions": contributions, "mechanism": first.mechanism,
        "statement": statement(noisy),
    }  # fmt: skip


def _privacy(noise: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "small_patients": SMALL_PATIENTS,
        "small_septic": SMALL_SEPTIC,
        "noise": noise,
    }


# ---------------------------------------------------------------- drift


def _drift(conn: Connection) -> dict[str, Any]:
    last = runs(conn, limit=1)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for notice in open_notices(conn):
        by_kind.setdefault(notice["kind"], []).append({
            "subject": notice["subject"], "raised_at": _iso(notice["raised_at"]),
            "message": notice["message"]})  # fmt: skip
    return {
        "last_run": None if not last else {
            "finished_at": _iso(last[0]["finished_at"]),
            "source": "the live data" if last[0]["source"] == STORE else "a labelled data file",
            "notices_raised": last[0]["notices"],
        },
        "open_total": count_open(conn),
        "open": [{"kind": kind, "what": DRIFT_KINDS.get(kind, kind), "count": len(items),
                  "notices": items} for kind, items in sorted(by_kind.items())],
    }  # fmt: skip


# ---------------------------------------------------------------- history and incidents


def _event_roles(conn: Connection, events: list[dict[str, Any]]) -> dict[int, str]:
    """Each registry event's actor as a role, from the audit chain (the role they acted in
    then), else their current role; never their user id."""
    log = audit.audit_events
    query = select(log.c.action, log.c.object, log.c.actor, log.c.at, log.c.role).where(
        log.c.action.like("model.%"))  # fmt: skip
    acted = {(r.action, r.object, r.actor, _at_text(r.at)): r.role for r in conn.execute(query)}
    now = {r.user_id: r.role for r in conn.execute(select(users.c.user_id, users.c.role))}
    named = {}
    for e in events:
        key = (f"model.{e['action']}", f"model/{e['version']}", e["actor"], _at_text(e["at"]))
        role = acted.get(key) or now.get(e["actor"])
        role = role or ("system" if e["actor"] == audit.SYSTEM else "")
        named[e["id"]] = ROLE_NAMES.get(role, "staff member")
    return named


def _scrubber(conn: Connection, events: list[dict[str, Any]]) -> Callable[[str], str]:
    """Blank every user id (registered users, registry actors) inside free text."""
    ids = {e["actor"] for e in events} | set(conn.execute(select(users.c.user_id)).scalars())
    ids.discard(audit.SYSTEM)  # "wardwatch" is the product's name too
    if not ids:
        return lambda text: text
    names = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.@-])(?:{names})(?![\w@-]|\.\w)", re.IGNORECASE)
    return lambda text: pattern.sub(SCRUBBED, text or "")


def _gates(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    gates = (detail or {}).get("gates")
    if not gates:
        return {"checked": False, "passed": None, "failed": []}
    failed = [g["name"] for g in gates.get("gates", []) if not g.get("passed")]
    return {"checked": True, "passed": bool(gates.get("passed")), "failed": failed}


def _event_row(event: Mapping[str, Any], roles: dict[int, str],
               scrub: Callable[[str], str]) -> dict[str, Any]:  # fmt: skip
    override = (event["detail"] or {}).get("override")
    return {
        "at": _iso(event["at"]),
        "action": event["action"],
        "scope": event["scope"],
        "version": event["version"],
        "previous": event["previous"],
        "by": roles[event["id"]],
        "reason": scrub(event["reason"]),
        "gates": _gates(event["detail"]),
        "override": scrub(override) if override else None,
    }


def _incidents(events: list[dict[str, Any]], roles: dict[int, str],
               scrub: Callable[[str], str]) -> list[dict[str, Any]]:  # fmt: skip
    """Rollbacks, and promotions that needed a gate override, newest first."""
    rows = []
    for event in events:
        row = _event_row(event, roles, scrub)
        if event["action"] == "rollback":
            rows.append({"kind": "rollback", **row})
        elif event["action"] == "promote" and row["override"]:
            rows.append({"kind": "gate override", **row})
    return rows
