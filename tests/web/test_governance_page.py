"""The governance dashboard: who may read it, and that it shows what the registry, the shadow
scores, the monitor, the fairness audit and the break-the-glass queue hold — and acts on the
two forms it carries (acknowledge a drift notice, review an access), refusals readable."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

import wardwatch
from wardwatch.alerts.policy import PolicyBook
from wardwatch.alerts.watch import ward_round
from wardwatch.alerts.workflow import Actor
from wardwatch.clock import ward_now
from wardwatch.features import build_features
from wardwatch.ingest.psv import read_cohort
from wardwatch.model import registry
from wardwatch.model.artifact import SHIPPED, load_card, load_shipped_model, save_model
from wardwatch.model.serving import ServingModels
from wardwatch.monitor.drift import DriftReport, DriftThresholds, Finding
from wardwatch.monitor.fairness import audit
from wardwatch.monitor.notices import open_notices, record_run
from wardwatch.security import sessions, users
from wardwatch.security.break_glass import pending_break_glass_reviews
from wardwatch.ward import worklist
from wardwatch.web.governance_page import Bar, bar_chart
from wardwatch.web.pages import home_of

SAMPLE = Path(wardwatch.__file__).parent / "data" / "physionet_sample" / "setA_sample.tar.gz"
GOV = {"by": "auditor.ada", "role": "auditor"}
WHY = "Resuscitation in bed 4: restoring the monitor feed, need the lactate trend"


def shipped_active(engine: Engine) -> str:
    with engine.begin() as conn:
        return registry.ensure_shipped_active(conn)


def register_variant(engine: Engine, tmp_path: Path, threshold: float) -> str:
    """A real second model: the shipped one at another threshold (so another version)."""
    model = copy.copy(load_shipped_model())
    model.threshold = threshold
    source = tmp_path / f"variant-{threshold}"
    save_model(model, source, card=load_card(SHIPPED), card_md="a test variant")
    with engine.begin() as conn:
        return registry.register(conn, tmp_path / "store", source, label="variant", **GOV).version


def a_bed(ward):
    with ward.engine.connect() as conn:
        return worklist(conn, at=ward_now(conn), book=ward.book)[0]


# ---------------------------------------------------------------- who sees it


def test_the_auditor_sees_the_models_in_service(ward, sign_in):
    before = sign_in("auditor.ada").get("/governance")
    assert before.status_code == 200
    assert ward.model.version in before.text and "registry of this store is empty" in before.text
    version = shipped_active(ward.engine)
    page = sign_in("auditor.ada").get("/governance")
    assert page.status_code == 200 and "registry of this store is empty" not in page.text
    assert f"<code>{version}</code>" in page.text and "first start: the shipped model" in page.text
    for heading in ("Models in service", "Shadow comparisons", "Drift notices", "Fairness",
                    "Incidents", "Break-the-glass reviews"):  # fmt: skip
        assert f">{heading}</h2>" in page.text
    assert '<a href="/governance">Governance</a>' in page.text


@pytest.mark.parametrize("user_id", ["nurse.nightingale", "dr.snow", "admin.root", "eng.hopper"])
def test_roles_without_governance_read_are_refused(ward, sign_in, user_id):
    who = sign_in(user_id)
    assert who.get("/governance").status_code == 403
    assert '<a href="/governance">' not in who.get("/model").text


def test_governance_people_land_on_the_dashboard_after_signing_in():
    assert home_of(Actor("auditor.ada", "auditor")) == "/governance"
    assert home_of(Actor("ds.fisher", "data_scientist")) == "/governance"
    assert home_of(Actor("dr.snow", "provider")) == "/ward"
    assert home_of(Actor("admin.root", "admin")) == "/model"


# ---------------------------------------------------------------- registry


def test_a_rollback_is_an_incident_with_its_reason(ward, sign_in, tmp_path):
    shipped = shipped_active(ward.engine)
    variant = register_variant(ward.engine, tmp_path, threshold=0.5)
    with ward.engine.begin() as conn:
        registry.promote(conn, variant, reason="better utility on the March data", **GOV)
        registry.rollback(conn, reason="alert burden doubled on MICU overnight", **GOV)
    page = sign_in("auditor.ada").get("/governance").text
    incidents = page.split('id="incidents"')[1].split("</section>")[0]
    assert "alert burden doubled on MICU overnight" in incidents and "Rollback" in incidents
    assert f"<code>{shipped}</code>" in incidents and f"<code>{variant}</code>" in incidents
    assert "better utility" not in incidents  # a promotion that passed its gates is no incident
    assert "not in service" in page  # the variant is registered, serves nowhere now


def test_a_shadow_is_compared_with_the_active_model_after_a_ward_round(ward, sign_in, tmp_path):
    shipped = shipped_active(ward.engine)
    candidate = register_variant(ward.engine, tmp_path, threshold=0.02)
    with ward.engine.begin() as conn:
        registry.shadow(conn, candidate, by="ds.fisher", role="data_scientist")
        ward_round(conn, ServingModels.of(ward.engine), PolicyBook(), ward_now(conn))
    page = sign_in("ds.fisher").get("/governance").text
    shadows = page.split('id="shadows"')[1].split("</section>")[0]
    assert f"<code>{candidate}</code> in shadow beside <code>{shipped}</code>" in shadows
    assert "agree on alerting in" in shadows
    assert shadows.count('<svg class="bar-chart"') == 2 and "Hours alerting" in shadows


# ---------------------------------------------------------------- drift notices


def stored_notice(engine: Engine) -> int:
    finding = Finding("alert_rate", "alerts", 2.1, 1.5,
                      "Alerts fire 2.1 times as often as in the reference period.",
                      "Check the unit's threshold and the inputs feeding the model.")  # fmt: skip
    report = DriftReport(hours=480, patients=24, variables=[], prediction=None, alert_rate=None,
                         ood=None, calibration=None, findings=[finding],
                         thresholds=DriftThresholds(), reference={"source": "test"})  # fmt: skip
    with engine.begin() as conn:
        _, ids = record_run(conn, report, source="store", started_at=datetime.now(UTC))
    return ids[0]


def test_a_drift_notice_is_listed_and_acknowledging_it_closes_it(ward, sign_in):
    notice_id = stored_notice(ward.engine)
    auditor = sign_in("auditor.ada")
    page = auditor.get("/governance").text
    assert "Alerts fire 2.1 times as often" in page and "Check the unit&#39;s threshold" in page
    assert f'action="/governance/notices/{notice_id}/acknowledge"' in page
    assert f'aria-labelledby="notice-chart-{notice_id}-title' in page  # its figure, drawn
    empty = auditor.post(f"/governance/notices/{notice_id}/acknowledge", data={"note": " "})
    assert empty.status_code == 422 and "what was decided" in empty.text
    url = f"/governance/notices/{notice_id}/acknowledge"
    done = auditor.post(url, data={"note": "new surgical unit opened"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].startswith("/governance")
    with ward.engine.connect() as conn:
        assert open_notices(conn) == []
    after = auditor.get(done.headers["location"]).text
    assert "No open drift notice." in after and "Notice acknowledged" in after
    again = auditor.post(f"/governance/notices/{notice_id}/acknowledge", data={"note": "x"})
    assert again.status_code == 422 and "already acknowledged by auditor.ada" in again.text


def test_a_form_without_its_csrf_token_is_refused(ward, sign_in):
    notice_id = stored_notice(ward.engine)
    auditor = sign_in("auditor.ada")
    del auditor.headers[sessions.CSRF_HEADER]
    refused = auditor.post(f"/governance/notices/{notice_id}/acknowledge", data={"note": "ok"})
    assert refused.status_code == 403
    with ward.engine.connect() as conn:
        assert [n["id"] for n in open_notices(conn)] == [notice_id]


# ---------------------------------------------------------------- break the glass


def test_a_break_the_glass_access_is_queued_and_the_auditors_review_clears_it(ward, sign_in):
    bed = a_bed(ward)
    admin = sign_in("admin.root")
    assert admin.post(f"/patients/{bed.encounter_id}/break-glass", data={"reason": WHY}
                      ).status_code == 200  # fmt: skip
    scientist = sign_in("ds.fisher").get("/governance").text
    assert "1 access waiting for review" in scientist and WHY not in scientist  # reviewers only
    auditor = sign_in("auditor.ada")
    page = auditor.get("/governance").text
    queue = page.split('id="break-glass"')[1].split("</section>")[0]
    assert "admin.root" in queue and bed.encounter_id in queue and WHY in queue
    with ward.engine.connect() as conn:
        grant_id = pending_break_glass_reviews(conn)[0].grant_id
    no_note = auditor.post(f"/governance/break-glass/{grant_id}/review", data={"note": ""})
    assert no_note.status_code == 422
    done = auditor.post(f"/governance/break-glass/{grant_id}/review",
                        data={"note": "appropriate: monitor outage, confirmed with ICU"},
                        follow_redirects=False)  # fmt: skip
    assert done.status_code == 303
    with ward.engine.connect() as conn:
        assert pending_break_glass_reviews(conn) == []
    assert "Nothing waiting for review." in auditor.get("/governance").text


def test_nobody_reviews_their_own_access(ward, sign_in):
    bed = a_bed(ward)
    sign_in("admin.root").post(f"/patients/{bed.encounter_id}/break-glass", data={"reason": WHY})
    with ward.engine.begin() as conn:
        users.change_role(conn, "admin.root", "auditor", at=datetime.now(UTC), by="tests")
        grant_id = pending_break_glass_reviews(conn)[0].grant_id
    same = sign_in("admin.root")
    page = same.get("/governance").text
    assert "Your own access: another reviewer judges it." in page
    refused = same.post(f"/governance/break-glass/{grant_id}/review", data={"note": "fine"})
    assert refused.status_code == 403 and "nobody reviews their own" in refused.text
    assert sign_in("nurse.nightingale").post(f"/governance/break-glass/{grant_id}/review",
                                             data={"note": "fine"}).status_code == 403  # fmt: skip
    with ward.engine.connect() as conn:
        assert len(pending_break_glass_reviews(conn)) == 1


# ---------------------------------------------------------------- fairness


def test_without_a_stored_fairness_audit_the_page_says_how_to_write_one(ward, sign_in):
    page = sign_in("auditor.ada").get("/governance").text
    assert "No fairness audit is stored yet" in page and "wardwatch fairness DATA --out" in page


def test_the_newest_stored_fairness_audit_is_shown(ward, sign_in, tmp_path):
    model = load_shipped_model()
    sample = read_cohort(SAMPLE, as_stored=True)
    risk = model.predict(build_features(sample))["risk"].to_numpy()
    result = audit(sample, risk, risk >= model.threshold, n_boot=20) | {
        "model_version": model.version, "patients_selected": "all patients in DATA"}  # fmt: skip
    folder = tmp_path / "reports" / "fairness-2026-03-01"
    folder.mkdir(parents=True)
    (folder / "fairness.json").write_text(json.dumps(result, allow_nan=False))
    page = sign_in("auditor.ada").get("/governance").text
    fairness = page.split('id="fairness"')[1].split('id="incidents"')[0]
    assert f"<code>{model.version}</code>" in fairness
    assert '<table class="fairness"><caption>by sex</caption>' in fairness
    assert "equalized-odds difference" in fairness


# ---------------------------------------------------------------- charts


def test_bar_charts_say_what_they_show_and_escape_their_words():
    chart = bar_chart("c1", "Rates <A&B>", "A sentence.",
                      [Bar("tiny", 0.0001, "first"), Bar("half", 0.5, "second")], 1.0)  # fmt: skip
    assert chart.startswith('<svg class="bar-chart"') and 'role="img"' in chart
    assert '<title id="c1-title">Rates &lt;A&amp;B&gt;</title>' in chart
    assert "&lt;0.1%" in chart and "50.0%" in chart
    assert 'width="130.0"' in chart  # half of the 260-pixel track
