"""The web application: pages, JSON API, CDS Hooks and FHIR out, on one FastAPI app.

`create_app` takes what it serves (store, active model, alert policy) instead of reading
globals, so tests build an app on a scratch database and `wardwatch serve` on the real one.
Static assets (htmx, the stylesheet) are vendored in `static/`: nothing is fetched from a CDN
at run time, because a hospital network often cannot reach one and must not depend on one.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from wardwatch.web import api, cds_hooks, fhir_out, pages
from wardwatch.web.deps import Services

STATIC = Path(__file__).resolve().parent / "static"


def create_app(services: Services, *, banner: str | None = None) -> FastAPI:
    """The app serving `services`; `banner`, if given, is shown on every page (the demo says
    that its patients are sample data and its accounts are for the demo only)."""
    app = FastAPI(
        title="wardwatch",
        summary="Sepsis early warning: worklist, patient chart, alerts, CDS Hooks, FHIR.",
        version="0.1.0",
    )
    app.state.services = services
    app.state.banner = banner
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages.router, include_in_schema=False)  # HTML pages, not an API
    app.include_router(api.router, prefix="/api")
    app.include_router(cds_hooks.router)
    app.include_router(fhir_out.router, prefix="/fhir")
    api.install_problem_handlers(app)
    return app
