"""The console in a real browser: Debian's chromium driven by Playwright, against a manager
filled by a real agent polling simulated printers (snmpsim serving our recordings), with the
agent's channel on for "read now".

Screenshots of every page are saved (the path is printed; METERSYNC_SCREENSHOTS overrides it).
Without chromium the tests skip, except under CI=true, where CI provides it (.ci/run).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from test_channel import CLI, Manager, _agent
from test_end_to_end import _wait, simulated_printers

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEVICES = ["hp_color_mfp", "supplies_odd", "brother_hl"]
HOSTS = [f"127.0.8.{20 + i}" for i in range(len(DEVICES))]
PASSWORDS: dict[str, str] = {}

pytestmark = pytest.mark.slow

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI provides chromium (.ci/run installs it); it is missing")
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def shots() -> Path:
    where = Path(os.environ.get("METERSYNC_SCREENSHOTS") or tempfile.mkdtemp(prefix="console-"))
    where.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots in {where}")
    return where


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A manager (SQLite), an agent with its channel on, three simulated printers; one printer
    moved to the customer "acme"; users of each role."""
    tmp = tmp_path_factory.mktemp("console")
    (tmp / "printers").mkdir()
    with simulated_printers(tmp / "printers", HOSTS, DEVICES) as port:
        m = Manager(tmp / "manager", tmp / "manager.log")
        agent = None
        try:
            _wait("the manager", lambda: httpx.get(m.url + "/healthz").status_code == 200, 30)
            target = f"{HOSTS[0]}-{HOSTS[-1]}:{port}"
            agent = _agent(tmp, "agent", m, m.token(), target, True)
            logs = f"see {tmp}"
            devices = _wait(
                "every printer reported",
                lambda: (
                    items
                    if len(items := m.get("/api/v1/devices").json()["items"]) == len(DEVICES)
                    else None
                ),
                60,
                logs=logs,
            )
            _wait("the channel", lambda: m.get("/api/v1/channels").json()["items"], 30, logs=logs)
            for name, role, customers in (
                ("ada", "dealer-admin", []),
                ("sam", "dealer-staff", ["default"]),
                ("vic", "customer-viewer", ["acme"]),
            ):
                if name == "vic":  # the customer exists first
                    r = httpx.post(
                        m.url + "/api/v1/customers",
                        json={"customerId": "acme", "name": "Acme"},
                        headers=m.api_headers,
                    )
                    assert r.status_code == 201, r.text
                PASSWORDS[name] = _cli_user(m, name, role, customers)
            by_ip = {d["currentIp"]: d for d in devices}
            moved = by_ip[HOSTS[2]]["deviceKey"]
            r = httpx.post(
                f"{m.url}/api/v1/devices/{quote(moved, safe='')}/assignment",
                json={"customerId": "acme", "site": "Main office"},
                headers=m.api_headers,
            )
            assert r.status_code == 200, r.text
            yield {"m": m, "devices": by_ip, "moved": moved, "tmp": tmp}
        finally:
            if agent is not None:
                agent.stop()
            m.stop()


def _cli_user(m: Manager, name: str, role: str, customers: list[str]) -> str:
    extra = [x for c in customers for x in ("--customer", c)]
    out = subprocess.run(
        [*CLI, "manager", "user", "create", name, "--role", role, *extra]
        + ["--data-dir", str(m.data)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def signed_in(browser: Browser, fleet: dict[str, Any], user: str) -> Page:
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    page.goto(fleet["m"].url + "/")
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    return page


def shot(page: Page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_admin_sees_every_page(browser: Browser, fleet: dict[str, Any], shots: Path) -> None:
    page = signed_in(browser, fleet, "ada")
    rows = page.locator("table.devices tbody tr[data-key]")
    expect(rows).to_have_count(len(DEVICES))
    shot(page, shots, "fleet-admin")
    hp = fleet["devices"][HOSTS[0]]["deviceKey"]
    page.goto(fleet["m"].url + "/console/devices/" + quote(hp))
    expect(page.get_by_role("heading", name="Identity")).to_be_visible()
    expect(page.locator("svg.chart").first).to_be_visible()
    shot(page, shots, "device")
    for name in ("Agents", "Alerts", "Billing", "Admin"):
        page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()
        expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
        shot(page, shots, name.lower())
    # the agents page shows the agent's channel open and its version
    page.goto(fleet["m"].url + "/console/agents")
    expect(page.locator("table.agents tbody tr")).to_have_count(1)
    expect(page.locator("table.agents")).to_contain_text("open (websocket)")
    # the admin creates a customer through the form; an enrollment token is shown once
    page.goto(fleet["m"].url + "/console/admin")
    page.get_by_label("Id", exact=True).fill("globex")
    page.get_by_label("Name", exact=True).first.fill("Globex")
    page.get_by_role("button", name="Create customer").click()
    expect(page.locator("table").first).to_contain_text("Globex")
    page.get_by_label("Customer", exact=True).nth(1).select_option("globex")
    page.get_by_role("button", name="Create enrollment token").click()
    token = page.locator("#shown-value").inner_text()
    assert len(token) >= 20
    shot(page, shots, "admin-token-shown")
    page.reload()
    assert token not in page.content()
    rows = sqlite3.connect(fleet["m"].data / "manager.db").execute(
        "SELECT customer_id FROM enrollment_tokens ORDER BY created_at DESC LIMIT 1"
    )
    assert rows.fetchone() == ("globex",)


def _supply_cells(page: Page, key: str) -> Any:
    return page.locator(f'tr[data-key="{key}"] .supply')


def test_supply_bars_match_the_stored_levels(
    browser: Browser, fleet: dict[str, Any], shots: Path
) -> None:
    page = signed_in(browser, fleet, "ada")
    m = fleet["m"]
    for ip in HOSTS[:2]:
        key = fleet["devices"][ip]["deviceKey"]
        stored = m.get(f"/api/v1/devices/{quote(key, safe='')}/supplies").json()["items"]
        cells = _supply_cells(page, key)
        expect(cells).to_have_count(len(stored))
        for i, s in enumerate(stored):
            cell = cells.nth(i)
            text = cell.locator(".stext").inner_text()
            if s["percent"] is not None:
                width = cell.locator("rect.fill").get_attribute("width")
                assert width is not None and abs(float(width) - s["percent"]) < 0.01
                assert text.startswith(f"{s['percent']:g} %"), (text, s)
            else:  # no percentage: no bar, the meaning in words (never a number as a level)
                assert cell.locator("rect.fill").count() == 0
                meaning = s["level"]["meaning"]
                words = {"someRemaining": "some remaining", "unknown": "unknown"}
                if meaning in words:
                    assert text == words[meaning], (text, s)
                assert "%" not in text
    odd = fleet["devices"][HOSTS[1]]["deviceKey"]
    some = _supply_cells(page, odd).filter(has_text="some remaining")
    expect(some).to_have_count(1)
    assert some.get_attribute("data-meaning") == "someRemaining"
    page.locator(f'tr[data-key="{odd}"]').screenshot(path=str(shots / "supplies-odd-row.png"))


def test_customer_viewer_sees_only_its_customer(
    browser: Browser, fleet: dict[str, Any], shots: Path
) -> None:
    page = signed_in(browser, fleet, "vic")
    rows = page.locator("table.devices tbody tr[data-key]")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-key") == fleet["moved"]
    expect(page.locator(".counts li strong").first).to_have_text("1")
    shot(page, shots, "fleet-viewer")
    other = fleet["devices"][HOSTS[0]]["deviceKey"]
    resp = page.goto(fleet["m"].url + "/console/devices/" + quote(other))
    assert resp is not None and resp.status == 404
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Admin")).to_have_count(0)
    resp = page.goto(fleet["m"].url + "/console/admin")
    assert resp is not None and resp.status == 403
    # the staff member of "default" sees the two others, not acme's
    staff = signed_in(browser, fleet, "sam")
    keys = staff.locator("table.devices tbody tr[data-key]")
    expect(keys).to_have_count(len(DEVICES) - 1)
    assert fleet["moved"] not in staff.content()


def test_forms_without_their_csrf_token_are_refused(
    browser: Browser, fleet: dict[str, Any]
) -> None:
    page = signed_in(browser, fleet, "ada")
    url = fleet["m"].url
    # the session cookie goes along (same browser context), the form token does not
    r = page.request.post(url + "/console/admin/customers", form={"customer_id": "x", "name": "X"})
    assert r.status == 403
    r = page.request.post(
        url + "/console/admin/customers", form={"customer_id": "x", "name": "X", "csrf": "forged"}
    )
    assert r.status == 403
    r = page.request.post(url + "/console/logout", form={})
    assert r.status == 403
    with sqlite3.connect(fleet["m"].data / "manager.db") as db:
        assert db.execute("SELECT count(*) FROM customers WHERE customer_id = 'x'").fetchone() == (
            0,
        )
    # the sign-in form too: without the pre-session cookie's token it is refused
    r = httpx.post(url + "/console/login", data={"username": "ada", "password": PASSWORDS["ada"]})
    assert r.status_code == 403 and "metersync_session" not in r.headers.get("set-cookie", "")


def test_read_now_shows_a_fresh_read_without_storing_it(
    browser: Browser, fleet: dict[str, Any], shots: Path
) -> None:
    m = fleet["m"]
    key = fleet["devices"][HOSTS[0]]["deviceKey"]
    path = f"/api/v1/devices/{quote(key, safe='')}"
    before = m.get(path + "/latest").json()
    history = m.get(path + "/counters", params={"limit": 1000}).json()["items"]
    page = signed_in(browser, fleet, "sam")
    page.goto(m.url + "/console/devices/" + quote(key))
    page.get_by_role("button", name="Read now").click()
    fresh = page.locator("section.fresh")
    expect(fresh).to_be_visible(timeout=60_000)
    assert "error" not in (fresh.get_attribute("class") or "")
    assert fresh.locator(".error").count() == 0, fresh.inner_text()
    shot(page, shots, "device-read-now")
    total = next(c for c in before["counters"] if c["kind"] == "total")
    cell = fresh.locator('tr[data-kind="total"] td.num').first
    assert int(cell.inner_text()) >= total["value"]
    # not stored: the same latest snapshot and counter history as before
    assert m.get(path + "/latest").json()["polledAt"] == before["polledAt"]
    after = m.get(path + "/counters", params={"limit": 1000}).json()["items"]
    assert len(after) == len(history)


def test_login_is_rate_limited(fleet: dict[str, Any]) -> None:
    url = fleet["m"].url + "/console/login"
    with httpx.Client() as c:
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get(url).text)
        assert csrf is not None
        codes = [
            c.post(url, data={"username": "mallory", "password": "wrong", "csrf": csrf.group(1)})
            for _ in range(6)
        ]
    assert [r.status_code for r in codes] == [401] * 5 + [429]
    assert codes[-1].headers["Retry-After"] == "900"


def test_billing_download_is_the_api_export(
    browser: Browser, fleet: dict[str, Any], shots: Path
) -> None:
    m = fleet["m"]
    page = signed_in(browser, fleet, "ada")
    page.goto(m.url + "/console/billing?customer=default")
    rows = page.locator("table.meters tbody tr[data-type]")
    expect(rows.first).to_be_visible()
    shot(page, shots, "billing-default")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    got = Path(info.value.path()).read_bytes()
    href = page.get_by_role("link", name="Download CSV").get_attribute("href")
    assert href is not None
    query = href.split("?", 1)[1]
    api = httpx.get(f"{m.url}/api/v1/meters?{query}", headers=m.api_headers)
    assert api.status_code == 200 and api.headers["content-type"].startswith("text/csv")
    assert got == api.content
    lines = got.decode().strip().splitlines()
    assert len(lines) - 1 == rows.count() > 0  # the table shows every line of the export
    # default's bill: default's lines only (acme's printer up to its move, as assigned then)
    assert {x.split(",", 1)[0] for x in lines[1:]} == {"default"}
    # the viewer of acme gets acme's bill and no other customer's
    viewer = signed_in(browser, fleet, "vic")
    resp = viewer.goto(m.url + "/console/billing?customer=default")
    assert resp is not None and resp.status == 404
    viewer.goto(m.url + "/console/billing")
    expect(viewer.locator("table.meters")).to_contain_text(fleet["moved"])
    for ip in HOSTS[:2]:
        assert fleet["devices"][ip]["deviceKey"] not in viewer.content()


def test_alerts_inbox_acknowledge_resolve_and_forecasts(
    browser: Browser, fleet: dict[str, Any], shots: Path
) -> None:
    m = fleet["m"]
    hp = fleet["devices"][HOSTS[0]]["deviceKey"]  # its recording has a supply at 8 %
    found = _wait(
        "the evaluator's low-supply alert",
        lambda: [
            a
            for a in m.get("/api/v1/alerts", params={"state": "open", "subject": hp}).json()[
                "items"
            ]
            if a["rule"] == "supply-low"
        ],
        60,
    )
    alert = found[0]
    row_of = f'tr[data-alert-id="{alert["alertId"]}"]'
    page = signed_in(browser, fleet, "sam")
    active = m.get("/api/v1/alerts", params={"state": "active", "customerId": "default"})
    summary = page.locator(".counts li", has_text="open alerts").locator("strong")
    expect(summary).to_have_text(str(len(active.json()["items"])))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    expect(page.locator(row_of)).to_contain_text(alert["title"])
    shot(page, shots, "alerts-open")
    other = next(s for s in ("critical", "warning", "info") if s != alert["severity"])
    page.get_by_label("Severity").select_option(other)
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(row_of)).to_have_count(0)
    page.get_by_label("Severity").select_option(alert["severity"])
    page.get_by_role("button", name="Apply").click()
    page.locator(row_of).get_by_role("button", name="Acknowledge").click()
    expect(page.locator(row_of)).to_have_count(0)  # it left the open alerts
    page.get_by_role("link", name=re.compile("^Acknowledged")).click()
    expect(page.locator(row_of)).to_contain_text("acknowledged by sam")
    shot(page, shots, "alerts-acknowledged")
    page.locator(row_of).get_by_role("button", name="Resolve").click()
    got = m.get(f"/api/v1/alerts/{alert['alertId']}").json()
    assert (got["state"], got["acknowledgedBy"], got["resolvedBy"]) == ("resolved", "sam", "sam")
    # acme's viewer sees none of default's alerts, and no button to change one
    viewer = signed_in(browser, fleet, "vic")
    viewer.goto(m.url + "/console/alerts?state=resolved")
    expect(viewer.locator(row_of)).to_have_count(0)
    expect(viewer.get_by_role("button", name="Resolve")).to_have_count(0)
    # the device page: each supply's days to empty as the forecasts API has it
    page.goto(m.url + "/console/devices/" + quote(hp))
    forecasts = m.get("/api/v1/forecasts", params={"deviceKey": hp}).json()["items"]
    assert forecasts
    for f in forecasts:
        cell = page.locator(f'tr[data-supply="{f["supply"]}"] td.days')
        days = f["forecast"]["daysToEmpty"]
        expect(cell).to_contain_text("no forecast" if days is None else f"about {days:.0f}")
    shot(page, shots, "device-forecasts")
