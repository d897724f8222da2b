"""The governance page lists the refused attempts to break the glass of the last 30 days, read
from the audit trail: who tried which stay, why it was refused, and how often each person was
refused — to reviewers; the others who read the page see how many."""

from __future__ import annotations

from datetime import timedelta

from wardwatch.alerts.workflow import Actor
from wardwatch.clock import ward_now
from wardwatch.security import break_glass
from wardwatch.ward import worklist
from wardwatch.web.auth import wall_clock

WHY = "Resuscitation in bed 4: restoring the monitor feed, need the lactate trend"
NONE = "No attempt to break the glass was refused in the last 30 days."


def a_stay(ward) -> str:
    with ward.engine.connect() as conn:
        return worklist(conn, at=ward_now(conn), book=ward.book)[0].encounter_id


def refusals_section(page: str) -> str:
    return page.split('id="break-glass-refused"')[1].split("</section>")[0]


def test_a_refusal_through_the_route_is_listed_with_who_and_why(ward, sign_in):
    stay = a_stay(ward)
    admin = sign_in("admin.root")
    for reason in ("because", "<i>hm</i>"):  # too short to judge: refused, twice
        assert admin.post(f"/patients/{stay}/break-glass", data={"reason": reason}
                          ).status_code == 422  # fmt: skip
    auditor = sign_in("auditor.ada")  # the auditor's role may not break the glass
    assert auditor.post(f"/patients/{stay}/break-glass", data={"reason": WHY}).status_code == 403
    page = auditor.get("/governance").text
    section = refusals_section(page)
    assert ">Refused break-the-glass attempts (last 30 days)</h2>" in section
    assert "3 attempts refused" in section and "<strong>3</strong> refused" in page
    assert "admin.root <span" in section and "auditor.ada <span" in section
    assert f"<code>{stay}</code>" in section and "at least 10 characters" in section
    assert "auditor.ada (auditor) is not allowed to open one patient" in section
    assert "&lt;i&gt;hm&lt;/i&gt;" in section and "<i>hm</i>" not in section  # as typed, inert
    per_person = section.split("Refusals per person")[1].split("</table>")[0]
    assert '<th scope="row">admin.root</th><td class="num">2</td>' in per_person
    assert '<th scope="row">auditor.ada</th><td class="num">1</td>' in per_person
    assert per_person.index("admin.root") < per_person.index("auditor.ada")  # most first


def test_those_who_do_not_review_see_how_many_not_who(ward, sign_in):
    stay = a_stay(ward)
    sign_in("admin.root").post(f"/patients/{stay}/break-glass", data={"reason": "because"})
    section = refusals_section(sign_in("ds.fisher").get("/governance").text)
    assert "1 attempt refused." in section and "shown to reviewers only" in section
    assert "admin.root" not in section and stay not in section


def test_an_attempt_older_than_30_days_is_not_listed(ward, sign_in):
    stay, now = a_stay(ward), wall_clock()
    with ward.engine.begin() as conn:
        for days, who in ((31, "old.timer"), (29, "recent.one")):
            break_glass.refuse(conn, Actor(who, "admin"), stay, "reason too short",
                               reason="because", source="testclient",
                               at=now - timedelta(days=days))  # fmt: skip
    section = refusals_section(sign_in("auditor.ada").get("/governance").text)
    assert "1 attempt refused" in section and "recent.one" in section
    assert "old.timer" not in section


def test_a_granted_access_is_not_listed_as_refused(ward, sign_in):
    stay = a_stay(ward)
    assert sign_in("admin.root").post(f"/patients/{stay}/break-glass", data={"reason": WHY}
                                      ).status_code == 200  # fmt: skip
    page = sign_in("auditor.ada").get("/governance").text
    assert WHY in page.split('id="break-glass"')[1].split("</section>")[0]  # waiting for review
    section = refusals_section(page)
    assert NONE in section and "admin.root" not in section and WHY not in section


def test_the_page_renders_with_no_refusal(ward, sign_in):
    for user_id in ("auditor.ada", "ds.fisher"):
        page = sign_in(user_id).get("/governance")
        assert page.status_code == 200
        assert NONE in refusals_section(page.text) and "<strong>0</strong> refused" in page.text
