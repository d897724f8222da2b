"""How the registry commands show gates and comparisons on the console."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Connection

from wardwatch.ingest.psv import read_cohort
from wardwatch.model import registry
from wardwatch.model.gates import check_gates, load_rules


def gate_report(conn: Connection, version: str, data: Path | None, scope: str,
                console: Console) -> dict[str, Any] | None:  # fmt: skip
    """The gates of `version` against the scope's active model on `data` (None: no data)."""
    if data is None:
        return None
    candidate = registry.load_entry(registry.get_model(conn, version))
    active_version = registry.active_version(conn, scope) or registry.active_version(conn)
    active = registry.load_entry(registry.get_model(conn, str(active_version)))
    config = Path(os.environ.get("WARDWATCH_CONFIG", "wardwatch.toml"))
    report = check_gates(candidate, active, read_cohort(data), load_rules(config))
    table = Table("gate", "result", "figures", title=f"promotion gates: {candidate.version} "
                  f"vs active {active.version} on {report.patients} patients "
                  f"({report.septic_patients} septic)")  # fmt: skip
    for gate in report.gates:
        mark = "[green]pass[/]" if gate.passed else "[bold red]FAIL[/]"
        table.add_row(gate.name, mark, escape(gate.message))
    console.print(table)
    return report.to_dict()


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def print_comparison(result: dict[str, Any], console: Console) -> None:
    console.print(f"{result['first']} vs {result['second']}: {result['hours']:,} hours of "
                  f"{result['stays']} stays scored by both")  # fmt: skip
    if not result["hours"]:
        console.print(result.get("note", ""))
        return
    rates = f"{_pct(result['alert_rate_first'])} vs {_pct(result['alert_rate_second'])}"
    console.print(
        f"agreement on alerting {_pct(result['agreement'])}; alert rate {rates} "
        f"of hours; mean |risk difference| {result['mean_abs_risk_difference']:.4f}"
    )
    labelled = result.get("labelled")
    if not labelled:
        console.print(result.get("note", ""))
        return
    table = Table("", result["first"], result["second"],
                  title=f"on {labelled['stays']} stays with known outcome "
                  f"({labelled['septic']} septic)")  # fmt: skip
    rows = (("utility", _num), ("auroc", _num), ("ece", _num), ("sensitivity", _pct),
            ("ppv", _pct), ("alerts_per_100_patient_days", _num))  # fmt: skip
    for key, show in rows:
        table.add_row(key, show(labelled["first"].get(key)), show(labelled["second"].get(key)))
    console.print(table)
