"""`wardwatch report`: the public transparency report of the active model, as HTML and JSON.

Registered by `cli.py` (`_register_governance`). The model stack is imported inside the
command, so `wardwatch --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine

HOSPITAL = "hospital"  # registry.HOSPITAL, without importing the model stack for --help


def register(root: typer.Typer) -> None:
    root.command("report")(report_command)


def report_command(
    data: Annotated[Path | None, typer.Option(
        help="labelled PhysioNet .psv files (directory, file or .tar.gz) of patients the "
        "model never saw: recompute performance, subgroups and alert burden on them")] = None,
    out: Annotated[Path | None, typer.Option(
        help="directory for transparency.html and .json (default: WARDWATCH_HOME/transparency)"
    )] = None,
    scope: Annotated[str, typer.Option(
        help="hospital, or unit:<name> (e.g. unit:MICU)")] = HOSPITAL,
    epsilon: Annotated[float | None, typer.Option(
        help="differential-privacy budget of the local counts, stated on the page [default: 1.0]"
    )] = None,
    no_noise: Annotated[bool, typer.Option(
        "--no-noise", help="exact local counts: for internal use only, never publish")] = False,
) -> None:  # fmt: skip
    """Write the transparency report of the active model: intended use and limitations,
    training and validation populations, headline and subgroup performance (small cells
    suppressed), calibration, alert burden, drift status, incidents, rollbacks and model
    history. Aggregates only; staff appear by role. Counts from `--data` carry
    differential-privacy noise (`--epsilon`) unless `--no-noise`."""
    from rich.markup import escape

    from wardwatch.cli import console, fail
    from wardwatch.monitor.transparency import DEFAULT_EPSILON, TransparencyError, gather
    from wardwatch.monitor.transparency_report import write_report

    if no_noise and epsilon is not None:
        raise fail("--epsilon and --no-noise contradict each other", "give one of them")
    budget = None if no_noise else (DEFAULT_EPSILON if epsilon is None else epsilon)
    if budget is not None and not budget > 0:
        raise fail(f"--epsilon must be positive, not {budget:g}",
                   "1.0 is a common budget; smaller is more private and noisier")  # fmt: skip
    engine, home = _engine()
    try:
        with engine.connect() as conn:
            report = gather(conn, data=data, scope=scope, epsilon=budget)
        html_path, json_path = write_report(report, out or home / "transparency")
    except (TransparencyError, ValueError, OSError) as error:
        raise fail(escape(str(error)), "check --data and --out (see `wardwatch report --help`)"
                   ) from None  # fmt: skip
    noise = "exact counts: internal use only" if budget is None else f"ε = {budget:g}"
    console.print(f"transparency report of {report['model']['version']} ({noise})\n"
                  f"page: {html_path}\nfigures: {json_path}")  # fmt: skip


def _engine() -> tuple[Engine, Path]:
    from wardwatch.model import registry
    from wardwatch.settings import load_settings
    from wardwatch.store import engine_from_settings, init_db

    settings = load_settings()
    engine = engine_from_settings(settings)
    init_db(engine)
    with engine.begin() as conn:
        registry.ensure_shipped_active(conn)
    return engine, settings.home
