"""A provider's round in a real browser: Debian's chromium, driven by Playwright, against the
real app served by uvicorn on a copy of the replayed ward.

Chromium is the system package (`apt-get install chromium`); Playwright's own browser download
is never used. Without chromium the module is skipped with the reason, unless
WARDWATCH_REQUIRE_BROWSER is set (as `.ci/run` does): then a missing browser fails the run.

Screenshots of each step are saved in the test's tmp_path and, when WARDWATCH_SCREENSHOTS
names a directory, there too (CI keeps them as artifacts).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from wardwatch import ward as ward_model
from wardwatch.alerts import workflow
from wardwatch.alerts.records import get_alert
from wardwatch.chart import stay_history
from wardwatch.clock import ward_now
from wardwatch.explain import explain
from wardwatch.web.app import create_app
from wardwatch.web.background import serving

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 15_000


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("WARDWATCH_REQUIRE_BROWSER"):
        pytest.fail(f"{reason}, and WARDWATCH_REQUIRE_BROWSER is set")
    pytest.skip(reason)


@pytest.fixture
def site(ward) -> Iterator[str]:
    """The real app on a private copy of the replayed ward, served on a free local port."""
    with serving(create_app(ward)) as base_url:
        yield base_url


@pytest.fixture
def chromium() -> str:
    """Debian's chromium and Playwright, checked before the ward is built (skip early)."""
    executable = chromium_path()
    if executable is None:
        _unavailable("chromium is not installed (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:  # pragma: no cover - in the test extra
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    return str(executable)


@pytest.fixture
def browser(chromium: str, site: str):  # needs `site`: the browser closes before it stops
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def shots(tmp_path: Path):
    """Save a full-page screenshot under tmp_path (and WARDWATCH_SCREENSHOTS, if set)."""
    folders = [tmp_path / "screenshots"]
    if extra := os.environ.get("WARDWATCH_SCREENSHOTS"):
        folders.append(Path(extra))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)

    def shoot(page, name: str) -> None:
        png = page.screenshot(full_page=True)
        for folder in folders:
            (folder / f"{name}.png").write_bytes(png)

    shoot.folder = folders[0]
    return shoot


PASSWORD = "correct horse battery staple 24"  # tests/web/conftest.py's test accounts


def sign_in(page, user: str, secret: str) -> None:
    """Type the user name, password and the authenticator's current code, as a person does."""
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label(re.compile("^Code from your authenticator")).fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Sign in").click()


def test_a_provider_pauses_then_dismisses_an_alert(browser, site, shots, ward, model, totp_secrets):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)

    # Not signed in: the worklist sends us to the sign-in page: password, then TOTP code.
    page.goto(f"{site}/ward")
    expect(page).to_have_url(re.compile(r"/signin\?next=/ward$"))
    shots(page, "1-signin")
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()  # keyboard users skip to the content
    page.get_by_label("User name").fill("dr.snow")
    page.get_by_label("Password").fill("not my password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".error")).to_contain_text("wrong user, password or code")
    sign_in(page, "dr.snow", totp_secrets["dr.snow"])

    # The worklist, highest risk first, as the read model orders it.
    expect(page).to_have_url(re.compile(r"/ward$"))
    with ward.engine.connect() as conn:
        beds = ward_model.worklist(conn, book=ward.book)
    rows = page.locator("#worklist-rows tr.row")
    expect(rows).to_have_count(len(beds))
    order = rows.evaluate_all("rows => rows.map(r => r.dataset.encounter)")
    assert order == [b.encounter_id for b in beds]
    shots(page, "2-worklist")

    # The highest-risk patient with an alert: starred measurements as explain stars them.
    bed = next(b for b in beds if b.sepsis is not None and b.sepsis.active)
    alert_id = bed.sepsis.alert_id
    page.locator(f"#open-{bed.encounter_id}").click()
    expect(page.locator("h1")).to_contain_text(bed.patient_id)
    with ward.engine.connect() as conn:
        expected = explain(model, stay_history(conn, bed.encounter_id, ward_now(conn)))
    starred = page.locator("ul.starred li")
    expect(starred).to_have_count(len(expected.starred))
    for item, measurement in zip(starred.all(), expected.starred, strict=True):
        expect(item).to_contain_text(measurement.sentence)
    expect(page.locator("svg.risk-chart")).to_be_visible()
    shots(page, "3-patient")

    # Pause for an hour: as easy as confirming (one choice, one button of the same size).
    card = page.locator(f"#alert-{alert_id}")
    card.get_by_label("1 hour").check()
    card.get_by_role("button", name="Pause", exact=True).click()
    expect(page.locator(".notice")).to_contain_text("Alert paused")
    expect(page.locator(f"#alert-{alert_id} .paused")).to_contain_text("Paused until")
    shots(page, "4-paused")

    # Then dismiss it, with a reason.
    card = page.locator(f"#alert-{alert_id}")
    card.get_by_label("Reason").select_option("not_infected")
    card.get_by_label(re.compile("^Note")).fill("viral picture, afebrile overnight")
    card.get_by_role("button", name="Dismiss", exact=True).click()
    expect(page.locator(".notice")).to_contain_text("Alert dismissed")
    expect(page.locator("#history")).to_contain_text("dismissed the alert: No sign of infection")
    with ward.engine.connect() as conn:
        assert get_alert(conn, alert_id).state.value == "dismissed"
    shots(page, "5-dismissed")

    # Back on the worklist the row says so; and it keeps up without a reload (htmx).
    page.get_by_role("link", name=re.compile("Worklist")).first.click()
    row = page.locator(f'tr[data-encounter="{bed.encounter_id}"]')
    expect(row).to_contain_text("sepsis alert dismissed")
    other = _confirm_another_alert(ward, beds, bed.encounter_id)
    if other is not None:
        expect(page.locator(f'tr[data-encounter="{other}"]')).to_contain_text(
            "sepsis alert confirmed", timeout=TIMEOUT_MS
        )
    shots(page, "6-worklist-after")
    page.close()


def _alerted(ward) -> ward_model.Bed:
    with ward.engine.connect() as conn:
        beds = ward_model.worklist(conn, book=ward.book)
    return next(b for b in beds if b.sepsis is not None and b.sepsis.active)


def test_a_nurse_sees_no_dismiss_and_a_forged_dismissal_is_refused(
    browser, site, ward, totp_secrets
):
    from playwright.sync_api import expect

    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{site}/signin")
    sign_in(page, "nurse.nightingale", totp_secrets["nurse.nightingale"])
    expect(page).to_have_url(re.compile(r"/ward$"))
    bed = _alerted(ward)
    page.goto(f"{site}/patients/{bed.encounter_id}")
    card = page.locator(f"#alert-{bed.sepsis.alert_id}")
    expect(card).to_contain_text("A provider evaluates this alert")
    expect(card.get_by_role("button", name="Dismiss", exact=True)).to_have_count(0)
    # The same request the provider's form sends, from the nurse's signed-in browser.
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    url = f"{site}/patients/{bed.encounter_id}/alerts/{bed.sepsis.alert_id}/dismiss"
    answer = page.request.post(url, form={"reason": "not_infected", "csrf_token": token})
    assert answer.status == 403
    with ward.engine.connect() as conn:
        assert get_alert(conn, bed.sepsis.alert_id).state.value == "open"
    page.close()


def test_an_admin_must_break_the_glass_to_open_a_patient(browser, site, ward, totp_secrets):
    from playwright.sync_api import expect

    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{site}/signin")
    sign_in(page, "admin.root", totp_secrets["admin.root"])
    bed = _alerted(ward)
    page.goto(f"{site}/patients/{bed.encounter_id}")
    expect(page.locator("h1")).to_contain_text("Break the glass")
    expect(page.locator("svg.risk-chart")).to_have_count(0)
    page.get_by_label(re.compile("Why do you need this record")).fill(
        "Restoring the monitor interface during a resuscitation in this bed"
    )
    page.get_by_role("button", name=re.compile("Break the glass")).click()
    expect(page.locator("h1")).to_contain_text(bed.patient_id)
    expect(page.locator("svg.risk-chart")).to_be_visible()
    page.close()


def _confirm_another_alert(ward, beds: list[ward_model.Bed], skip: str) -> str | None:
    """A colleague confirms another open sepsis alert on the worklist, behind the page's back."""
    other = next((b for b in beds if b.encounter_id != skip and b.sepsis is not None
                  and b.sepsis.state.value == "open"), None)  # fmt: skip
    if other is None:
        return None
    with ward.engine.begin() as conn:
        colleague = workflow.Actor("dr.snow", "provider")
        workflow.confirm(conn, other.sepsis.alert_id, colleague, at=ward_now(conn))
    return other.encounter_id
