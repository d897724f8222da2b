"""Screenshots of the web pages for the README: docs/worklist.png and docs/patient.png.

    .venv/bin/python scripts/web_screenshots.py [--out docs] [--hours 72]

Builds the demo ward exactly as `wardwatch demo` does (a fresh SQLite ward in a temporary
directory: the sample messages ingested, the sample patients replayed for `--hours`), serves
the real app on a free localhost port, signs in as the demo provider in Debian's chromium
(Playwright drives it; no browser is downloaded) and saves two 1280-pixel-wide pictures: the
worklist and the page of the highest-risk patient with an open alert. It also prints how long
the worklist takes to render on that ward (the server's own Server-Timing, median of 20).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import urllib.request
from pathlib import Path

from rich.console import Console

from wardwatch.demo import WARM_UP_HOURS, fresh_pipeline, ingest_messages, start_ward
from wardwatch.security import sessions
from wardwatch.security.demo_users import demo_session
from wardwatch.web.app import create_app
from wardwatch.web.background import serving
from wardwatch.web.deps import Services

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
WIDTH = 1280
PROVIDER = "dr.snow"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--hours", type=int, default=WARM_UP_HOURS)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        raise SystemExit("chromium is not installed: apt-get install chromium")
    with tempfile.TemporaryDirectory() as home:
        services = _demo_ward(Path(home), args.hours)
        token = demo_session(services.engine, PROVIDER).token
        with serving(create_app(services)) as site:
            _report_timing(site, token)
            _shoot(site, chromium, args.out, token)
        services.engine.dispose()


def _demo_ward(home: Path, hours: int) -> Services:
    console = Console(stderr=True)
    pipeline = fresh_pipeline(home)
    ingest_messages(pipeline, Console(quiet=True))
    ward = start_ward(pipeline, console, warm_up_hours=hours)
    return Services(pipeline.engine, ward.replay.model, ward.replay.book, pipeline)


def _report_timing(site: str, token: str, repeats: int = 20) -> None:
    """The worklist's server-side render time on this ward (median and worst of `repeats`)."""
    cookie = {"Cookie": f"{sessions.COOKIE}={token}"}
    request = urllib.request.Request(f"{site}/ward", headers=cookie)
    durations, beds = [], 0
    for _ in range(repeats):
        with urllib.request.urlopen(request) as response:
            timing = response.headers["Server-Timing"]
            beds = response.read().decode().count('<tr class="row')
        durations.append(float(timing.split("dur=")[1]))
    print(f"worklist of {beds} beds: render median {statistics.median(durations):.0f} ms, "
          f"worst {max(durations):.0f} ms over {repeats} requests")  # fmt: skip


def _shoot(site: str, chromium: str, out: Path, token: str) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
        # A __Host- cookie must name its domain and path "/" (a url= cookie is refused).
        cookie = {"name": sessions.COOKIE, "value": token, "domain": "127.0.0.1", "path": "/",
                  "secure": True, "httpOnly": True, "sameSite": "Lax"}  # fmt: skip
        page.context.add_cookies([cookie])
        page.goto(f"{site}/ward")
        page.screenshot(path=out / "worklist.png")
        page.locator("#worklist-rows tr.row", has=page.locator(".badge.state-open")).first.locator(
            "th a"
        ).click()
        page.wait_for_selector("svg.risk-chart")
        page.set_viewport_size({"width": WIDTH, "height": 1500})
        page.screenshot(path=out / "patient.png")
        browser.close()
    print(f"wrote {out / 'worklist.png'} and {out / 'patient.png'}")


if __name__ == "__main__":
    main()
