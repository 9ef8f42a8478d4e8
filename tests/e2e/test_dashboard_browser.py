"""The dashboard in a real browser: ``bulwark serve`` as a real process whose simulated
model answers 503, a few reviews so the breaker of ``sim:reviewer`` opens, then headless
Chromium (Debian's, driven by Playwright) logs in with HTTP Basic, sees the breaker open
without a console error, and resets it with the page's button."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli_review import Server, Workspace

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "dashboard-e2e-admin-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
TARGET = "sim:reviewer"


def require_chromium() -> None:
    """Never skip silently: a missing browser is a failure, under CI or not."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing on CI: the dashboard browser test needs it")
    pytest.fail(
        f"{CHROMIUM} is missing: install Debian's Chromium (`sudo apt-get install chromium`); "
        "Playwright must not download a browser"
    )


@pytest.fixture
def faulty_server(tmp_path: Path) -> Iterator[Server]:
    workspace = Workspace(tmp_path)
    workspace.env.update(
        {
            "BULWARK_ADMIN_TOKEN": TOKEN,
            "BULWARK_ROUTES": json.dumps({"review": [TARGET], "code": ["sim:coder"]}),
            "BULWARK_SIM_FAULTS": "status=503",
            "BULWARK_BREAKER_THRESHOLD": "2",
            "BULWARK_RETRY_MAX_RETRIES": "0",
        }
    )
    server = Server(workspace)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def breaker_state(client: httpx.Client) -> str:
    breakers = client.get("/v1/admin/breakers", headers=BEARER).json()["breakers"]
    return next((b["state"] for b in breakers if b["key"] == TARGET), "missing")


def open_the_breaker(client: httpx.Client) -> None:
    """Submit reviews until the breaker of the reviewer has opened (two failures)."""
    deadline = time.monotonic() + 30
    while breaker_state(client) != "open":
        assert time.monotonic() < deadline, "the breaker of sim:reviewer did not open"
        body = {"type": "review", "input": {"code": "x = 1\n"}}
        task = client.post("/v1/tasks", json=body, headers=BEARER)
        assert task.status_code in (201, 202), task.text
        done = client.get(
            f"/v1/tasks/{task.json()['id']}", params={"wait": 20}, headers=BEARER
        ).json()
        assert done["status"] == "succeeded", done
        assert done["result"]["degraded"] is True  # static analysis only


def test_the_dashboard_shows_the_open_breaker_and_resets_it(faulty_server: Server) -> None:
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    with httpx.Client(base_url=faulty_server.url, timeout=30) as client:
        open_the_breaker(client)

        problems: list[str] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            try:
                context = browser.new_context(
                    http_credentials={"username": "admin", "password": TOKEN}
                )
                page = context.new_page()
                page.on(
                    "console",
                    lambda m: (
                        problems.append(f"console {m.type}: {m.text}")
                        if m.type in ("error", "warning")
                        else None
                    ),
                )
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                outside: list[str] = []
                page.on(
                    "request",
                    lambda r: (
                        None
                        if r.url.startswith(faulty_server.url) or r.url.startswith("data:")
                        else outside.append(r.url)
                    ),
                )
                page.set_default_timeout(15_000)

                response = page.goto(f"{faulty_server.url}/dashboard")
                assert response is not None
                assert response.status == 200
                row = page.locator(f'tr[data-key="{TARGET}"]')
                expect(row).to_have_attribute("data-state", "open")
                expect(row.locator(".state")).to_have_text("open")
                expect(row.locator("td.error")).not_to_have_text("—")
                expect(page.locator(f'figure[data-target="{TARGET}"] svg polyline')).to_have_count(
                    3
                )
                expect(page.locator("#categories svg rect").first).to_be_visible()

                row.locator("button.reset").click()
                expect(row).to_have_attribute("data-state", "closed")
                expect(row.locator(".state")).to_have_text("closed")
                assert breaker_state(client) == "closed"
                detail = client.get(f"/v1/admin/breakers/{TARGET}", headers=BEARER).json()
                assert detail["events"][0]["reason"] == "reset"

                refreshes = int(page.evaluate("() => document.body.dataset.refreshes"))
                page.wait_for_function(  # the page refreshes by itself, still without error
                    "(n) => Number(document.body.dataset.refreshes) > n",
                    arg=refreshes,
                    timeout=8_000,
                )
                expect(page.locator("#status")).not_to_have_class("status error")
            finally:
                browser.close()
        assert problems == []
        assert outside == [], "the page must not load anything from elsewhere"
