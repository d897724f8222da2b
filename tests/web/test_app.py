"""The app starts on a replayed ward and serves its vendored assets."""

from __future__ import annotations


def test_htmx_is_served_from_the_package_not_a_cdn(client):
    response = client.get("/static/htmx-2.0.11.min.js")
    assert response.status_code == 200
    assert "htmx" in response.text[:2000]


def test_the_openapi_spec_describes_the_api(client):
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "wardwatch"
