"""A site configuration activated in the registry is what the pages show and what alerts:
the worklist's thresholds follow it from the next request, without a restart."""

from __future__ import annotations

from fastapi.testclient import TestClient

from wardwatch.model.artifact import load_shipped_model
from wardwatch.model.serving import ServingModels
from wardwatch.security import sessions
from wardwatch.site.config import SiteConfig
from wardwatch.site.registry import activate_site_config
from wardwatch.web.app import create_app
from wardwatch.web.auth import wall_clock
from wardwatch.web.deps import Services


def test_the_worklist_shows_the_thresholds_of_the_active_site_configuration(ward):
    served = Services(ward.engine, ServingModels.of(ward.engine), ward.default_book, ward.pipeline)
    with ward.engine.begin() as conn:
        session = sessions.create_session(conn, "dr.snow", at=wall_clock())
    with TestClient(create_app(served), base_url="https://testserver") as client:
        client.cookies.set(sessions.COOKIE, session.token)
        before = {p["unit"]: p["threshold"] for p in client.get("/api/patients").json()["patients"]
                  if p["threshold"] is not None}  # fmt: skip
        site = SiteConfig(model_version=load_shipped_model().version, method="test",
                          thresholds={"MICU": 0.5, "SICU": 0.25}, data_hash="sha256:test",
                          created="2026-11-22")  # fmt: skip
        with ward.engine.begin() as conn:
            activate_site_config(conn, site, by="auditor.ada", role="auditor",
                                 reason="the committee's budget")  # fmt: skip
        after = {p["unit"]: p["threshold"] for p in client.get("/api/patients").json()["patients"]
                 if p["threshold"] is not None}  # fmt: skip
    assert before.get("MICU") not in (None, 0.5)
    assert after["MICU"] == 0.5 and after["SICU"] == 0.25
    assert served.book.for_unit("MICU").threshold == 0.5
