"""What every route needs, as FastAPI dependencies: a database connection, the active model,
the alert policy, the ward clock, and who is asking.

Who is asking (`current_actor`) is, until the security work lands, a *demo* sign-in: a cookie
naming one of the demo clinicians (`DEMO_USERS`), set on the sign-in page. It is not
authentication — the server binds to localhost by default and says so on every page. Every
route already declares the actor it needs, so real sessions replace this one function.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Connection, Engine

from wardwatch.alerts.policy import PolicyBook
from wardwatch.alerts.workflow import Actor
from wardwatch.clock import ward_now
from wardwatch.ingest.pipeline import Pipeline
from wardwatch.model.risk import RiskModel

DEMO_COOKIE = "wardwatch_demo_user"
DEMO_USERS: dict[str, Actor] = {
    "nurse.nightingale": Actor("nurse.nightingale", "nurse"),
    "dr.snow": Actor("dr.snow", "provider"),
}


@dataclass(frozen=True)
class Services:
    """Everything the app was started with (stored on `app.state.services`)."""

    engine: Engine
    model: RiskModel
    book: PolicyBook
    pipeline: Pipeline


async def services(request: Request) -> Services:  # no I/O: inline, as current_actor
    return request.app.state.services


def connection(svc: Services = Depends(services)) -> Iterator[Connection]:  # noqa: B008
    """One transaction per request: committed when the route returns, rolled back on error."""
    with svc.engine.begin() as conn:
        yield conn


def now(conn: Connection = Depends(connection)) -> datetime:  # noqa: B008
    return ward_now(conn)


def actor_of(request: Request) -> Actor:
    """The signed-in clinician (demo sign-in; see the module docstring). 401 when none."""
    actor = DEMO_USERS.get(request.cookies.get(DEMO_COOKIE, ""))
    if actor is None:
        raise HTTPException(status_code=401, detail="sign in first")
    return actor


async def current_actor(request: Request) -> Actor:
    """`actor_of` as a dependency; async because it does no I/O, so FastAPI runs it inline
    instead of in its thread pool (a hop per dependency per request adds up at 200 req/s)."""
    return actor_of(request)
