"""The console without a browser: device_state at ingest and in the migration, the fleet
table's cursor pages under every sort, scope filtering, accounts and the CSRF guard."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from test_manager_ingest import NOW, downgrade_console, downgrade_console_search, enrolled, t
from test_manager_support import Dev, store  # noqa: F401

from metersync_manager import device_state, ingest
from metersync_manager import models as m
from metersync_manager.app import create_app
from metersync_manager.console import charts, queries
from metersync_manager.console.accounts import AccountError, Accounts
from metersync_manager.scope import ADMIN, Scope
from metersync_manager.store import Store

TONER = [
    {"index": 1, "level": 7, "max": 100, "percent": "7.00"},
    {"index": 2, "level": -3, "meaning": "someRemaining", "colour": "cyan"},
    {"index": 3, "level": 150, "max": 100, "colour": "magenta"},
]


def _put(s: Store, a: Any, devs: list[Dev]) -> None:
    raw = a.report(devs)
    s.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), NOW)


def _states(s: Store) -> dict[str, Any]:
    with s.reading() as conn:
        return {r.device_key: r for r in conn.execute(select(m.device_state))}


def test_device_state_follows_the_newest_snapshot(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    _put(store, a, [Dev("sn:hp:one", polled_at=t(10), supplies=TONER)])
    _put(store, a, [Dev("sn:hp:one", polled_at=t(5), supplies=TONER[1:])])  # late, older
    st = _states(store)["sn:hp:one"]
    assert st.polled_at == t(10).replace(tzinfo=None) and st.low_supplies == 1
    bars = device_state_bars(st.supplies)
    assert bars == [(7.0, "exact", True), (None, "someRemaining", False), (None, "exact", False)]
    # what the migration computes from the readings is what ingest kept
    with store.engine.begin() as conn:
        downgrade_console(conn)
    store.migrate()
    again = _states(store)["sn:hp:one"]
    assert (again.reading_id, again.supplies) == (st.reading_id, st.supplies)


def device_state_bars(raw: str) -> list[tuple[Any, str, bool]]:
    import json

    return [(x["percent"], x["meaning"], x["low"]) for x in json.loads(raw)]


def test_monthly_volumes_are_the_billed_usage(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    reads = [(0, 100), (12, 300), (13, 50), (38, 80)]  # days after 28 Nov; 50 is a reset
    for day, value in reads:
        at = NOW + timedelta(days=day)
        _put(store, a, [Dev("sn:hp:vol", polled_at=at, counters=[("total", value, {})])])
    now = (NOW + timedelta(days=40)).replace(tzinfo=None)  # 7 January
    with store.reading() as conn:
        got = queries.monthly_volumes(conn, "sn:hp:vol", now, months=3)
    assert [x.month for x in got["months"]] == [11, 12, 1]
    (series,) = got["series"]
    assert series["months"] == [0, 200, 30]
    assert [(z.before, z.after) for z in series["resets"]] == [(300, 50)]


def test_percent_only_where_defined() -> None:
    base = {"level_meaning": "exact", "max_meaning": "exact", "percent_x100": None}
    assert device_state.percent({**base, "level_raw": 30, "max_raw": 120}) == 25.0
    assert device_state.percent({**base, "level_raw": 150, "max_raw": 100}) is None
    assert device_state.percent({**base, "level_raw": 0, "max_raw": 0}) is None
    unknown = {**base, "level_meaning": "unknown", "level_raw": -2, "max_raw": 100}
    assert device_state.percent(unknown) is None
    assert device_state.is_low(95.0, receptacle=True) and not device_state.is_low(95.0, False)


def test_cursor_pages_cover_the_fleet_once(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    devs = [
        Dev(
            f"sn:hp:{i:02d}",
            ip=f"192.0.2.{i % 4}",
            polled_at=t(i % 3),
            serial=None if i % 2 else f"S{i % 5}",
        )  # fmt: skip
        for i in range(23)
    ]
    _put(store, a, devs)
    for sort in sorted(queries.SORTS):  # NULLs (no serial) first ascending, last descending
        for desc in (False, True):
            seen: list[str] = []
            f = queries.FleetFilter(sort=sort, desc=desc, limit=5)
            with store.reading() as conn:
                while True:
                    rows, nxt = queries.fleet_page(conn, ADMIN, f, queries.Thresholds())
                    seen += [r["device_key"] for r in rows]
                    if nxt is None:
                        break
                    f.cursor = nxt
            assert sorted(seen) == sorted(d.key for d in devs), (sort, desc)
            assert len(seen) == len(set(seen)), (sort, desc)


def test_scope_limits_rows_and_counts(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    _put(store, a, [Dev("sn:hp:a", supplies=TONER), Dev("sn:hp:b")])
    store.create_customer("acme", "Acme", NOW)
    store.move("device", "sn:hp:b", "acme", None, NOW, "test")
    viewer = Scope("customer-viewer", frozenset({"acme"}), "v")
    with store.reading() as conn:
        rows, _ = queries.fleet_page(conn, viewer, queries.FleetFilter(), queries.Thresholds())
        assert [r["device_key"] for r in rows] == ["sn:hp:b"]
        assert queries.device(conn, viewer, "sn:hp:a") is None
        now = NOW.replace(tzinfo=None)
        assert queries.counts(conn, viewer, queries.Thresholds(), now)["low"] == 0
        assert queries.counts(conn, ADMIN, queries.Thresholds(), now)["low"] == 1
        low = queries.FleetFilter(low=True)
        rows, _ = queries.fleet_page(conn, ADMIN, low, queries.Thresholds())
        assert [r["device_key"] for r in rows] == ["sn:hp:a"]
        q = queries.FleetFilter(q="HP:B")  # case-insensitive search of keys, serials, IPs
        assert [r["device_key"] for r in queries.fleet_page(conn, ADMIN, q,
                queries.Thresholds())[0]] == ["sn:hp:b"]  # fmt: skip


def test_accounts_sign_in_reset_disable_and_rate_limit(store: Store) -> None:  # noqa: F811
    acc = Accounts(store)
    acc.create("ann", "a long password 1", Scope("dealer-admin", operator="ann"), NOW)
    with pytest.raises(AccountError):
        acc.create("ann", "another password", ADMIN, NOW)
    with pytest.raises(AccountError):
        acc.create("bo", "short", ADMIN, NOW)
    got = acc.sign_in("ann", "a long password 1", "1.2.3.4", NOW)
    assert got is not None and got[1].scope.operator == "ann"
    assert acc.session(got[0], NOW) is not None
    assert acc.session(got[0], NOW + timedelta(hours=13)) is None  # expired
    acc.reset("ann", "a new long password", NOW)
    assert acc.session(got[0], NOW) is None  # a reset ends the sessions
    assert acc.sign_in("ann", "a long password 1", "1.2.3.4", NOW) is None
    for _ in range(4):
        assert acc.sign_in("ann", "wrong password!", "1.2.3.4", NOW) is None
    assert acc.blocked("ann", "5.6.7.8", NOW)  # 5 failures of this user in the window
    assert not acc.blocked("ann", "5.6.7.8", NOW + timedelta(minutes=16))
    acc.disable("ann", NOW)
    assert acc.sign_in("ann", "a new long password", "9.9.9.9", NOW) is None
    with store.reading() as conn:
        stored = conn.execute(text("SELECT password_hash FROM console_users")).scalar_one()
    assert stored.startswith("$argon2id$") and "password" not in stored


def test_csrf_guard_and_cookie_flags(store: Store) -> None:  # noqa: F811
    Accounts(store).create("ann", "a long password 1", ADMIN, NOW)

    async def go() -> None:
        c = create_app(store).test_client()
        r = await c.get("/console/")
        assert r.status_code == 302 and "/console/login" in r.headers["Location"]
        page = await (await c.get("/console/login")).get_data(as_text=True)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        creds = {"username": "ann", "password": "a long password 1"}
        assert (await c.post("/console/login", form=creds)).status_code == 403
        r = await c.post("/console/login", form={**creds, "csrf": csrf.group(1)})
        cookie = r.headers["Set-Cookie"]
        assert r.status_code == 302 and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert "Secure" not in cookie  # plain HTTP here; Secure behind TLS
        form = {"customer_id": "x1", "name": "X"}
        assert (await c.post("/console/admin/customers", form=form)).status_code == 403
        fleet = await (await c.get("/console/")).get_data(as_text=True)
        token = re.search(r'name="csrf" value="([^"]+)"', fleet)
        assert token
        r = await c.post("/console/admin/customers", form={**form, "csrf": token.group(1)})
        assert r.status_code == 302
        assert "script-src 'none'" in r.headers["Content-Security-Policy"]

    asyncio.run(go())
    assert "x1" in {c["customerId"] for c in store.customers()}


def test_charts_name_levels_without_a_percentage() -> None:
    when = NOW.replace(tzinfo=None)
    svg = charts.supply_levels(
        "levels",
        [("Cyan", None, [(when, None, "someRemaining")]), ("Black", "#222222", [(when, 40, "x")])],
    )
    assert "Cyan: some remaining" in svg and "Black: 40 %" in svg and "<title>levels" in svg
    bars = charts.monthly_bars("v", [when], [("total", [12])], [(0, "total reset 9→1")])
    assert "total: 12 in 1 months" in bars and "total reset 9→1" in bars


def _found(s: Store, q: str) -> list[str]:
    with s.reading() as conn:
        f = queries.FleetFilter(q=q)
        return [
            r["device_key"] for r in queries.fleet_page(conn, ADMIN, f, queries.Thresholds())[0]
        ]


def test_search_finds_word_starts_through_the_terms_index(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    _put(
        store,
        a,
        [Dev("sn:hp:a", ip="10.1.2.3", serial="CNB7K12345", polled_at=t(0)), Dev("sn:hp:b")],
    )
    assert _found(store, "cnb7k") == ["sn:hp:a"]  # serial prefix, any case
    assert _found(store, "10.1.2") == ["sn:hp:a"] and _found(store, "2.3") == ["sn:hp:a"]
    assert _found(store, "LaserJet M4") == ["sn:hp:a", "sn:hp:b"]  # words of the model
    assert _found(store, "hp:b") == ["sn:hp:b"] and _found(store, "b7k12") == []
    assert _found(store, "50%") == [] and _found(store, "_") == []  # no pattern characters
    # the IP changes: the old one is no longer found, the new one is
    _put(store, a, [Dev("sn:hp:a", ip="10.9.9.9", polled_at=t(5))])
    assert _found(store, "10.1.2") == [] and _found(store, "10.9.9") == ["sn:hp:a"]
    with store.reading() as conn:
        kept = sorted(conn.execute(select(m.device_terms.c.term)).scalars())
    # the migration to schema 12 computes the same terms from `devices`
    with store.engine.begin() as conn:
        downgrade_console_search(conn)
    store.migrate()
    with store.reading() as conn:
        assert sorted(conn.execute(select(m.device_terms.c.term)).scalars()) == kept


async def _client(db: Store, user: str, scope: Scope) -> tuple[Any, str]:
    """A test client of the app signed in as a new user of this scope, and its form token."""
    Accounts(db).create(user, "a long password 1", scope, NOW)
    c = create_app(db).test_client()
    page = await (await c.get("/console/login")).get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    form = {"username": user, "password": "a long password 1", "csrf": csrf.group(1)}
    assert (await c.post("/console/login", form=form)).status_code == 302
    fleet = await (await c.get("/console/")).get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', fleet)
    assert token
    return c, token.group(1)


def test_alert_inbox_forecasts_and_scope(store: Store) -> None:  # noqa: F811
    from test_fleet import Story, printer

    from metersync_manager.console import intel
    from metersync_manager.fleet import alerts

    s = Story(store)
    for i in range(34):  # 40 % down to 7 %, a point every 6 hours: a forecast, a low alert
        s.report(printer("sn:t:1", 10_000 + 50 * i, 40 - i))
        s.now += timedelta(hours=6)
    [low] = s.alerts("supply-low")
    with store.reading() as conn:
        [out] = intel.running_out(conn, ADMIN)
    assert (out["device_key"], out["idx"]) == ("sn:t:1", 1)
    days = out["forecast"]["daysToEmpty"]
    assert days is not None and days <= intel.RUNNING_OUT_DAYS
    store.create_customer("acme", "Acme", NOW)

    async def go() -> None:
        staff, csrf = await _client(store, "sam", Scope("dealer-staff", frozenset({"default"})))
        fleet = await (await staff.get("/console/")).get_data(as_text=True)
        assert "Running out within 14 days" in fleet and intel.days_text(out["forecast"]) in fleet
        assert re.search(r"<strong>1</strong> open alerts", fleet)
        inbox = await (await staff.get("/console/alerts")).get_data(as_text=True)
        assert f'data-alert-id="{low["alertId"]}"' in inbox and "Acknowledge" in inbox
        device = await (await staff.get("/console/devices/sn:t:1")).get_data(as_text=True)
        assert intel.days_text(out["forecast"]) in device and "Resolve" in device
        ack = f"/console/alerts/{low['alertId']}/acknowledge"
        assert (await staff.post(ack, form={})).status_code == 403  # no form token
        r = await staff.post(ack, form={"csrf": csrf, "next": "/console/alerts?state=open"})
        assert r.status_code == 302 and r.headers["Location"] == "/console/alerts?state=open"
        done = await (await staff.get("/console/alerts?state=acknowledged")).get_data(as_text=True)
        assert f'data-alert-id="{low["alertId"]}"' in done and "acknowledged by sam" in done
        # another customer's viewer and staff: not listed, not found, not changed
        viewer, vcsrf = await _client(store, "vic", Scope("customer-viewer", frozenset({"acme"})))
        for path in ("/console/alerts?state=acknowledged", "/console/"):
            body = await (await viewer.get(path)).get_data(as_text=True)
            assert "sn:t:1" not in body and "Resolve<" not in body, body
        for path in ("/console/devices/sn:t:1", "/console/billing?customer=default"):
            assert (await viewer.get(path)).status_code == 404, path
        csv = "/console/billing/meters.csv?customer=default&format=csv"
        csv += "&from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z"
        assert (await viewer.get(csv)).status_code == 404
        assert (await staff.get(csv)).status_code == 200
        agents = await (await viewer.get("/console/agents")).get_data(as_text=True)
        assert s.agent.agent_id not in agents
        assert s.agent.agent_id in await (await staff.get("/console/agents")).get_data(as_text=True)
        resolve = f"/console/alerts/{low['alertId']}/resolve"
        assert (await viewer.post(resolve, form={"csrf": vcsrf})).status_code == 403  # read only
        read_now = "/console/devices/sn:t:1/read-now"
        assert (await viewer.post(read_now, form={"csrf": vcsrf})).status_code == 404
        other, ocsrf = await _client(store, "oto", Scope("dealer-staff", frozenset({"acme"})))
        assert (await other.post(resolve, form={"csrf": ocsrf})).status_code == 404
        r = await staff.post(resolve, form={"csrf": csrf})
        assert r.status_code == 302 and r.headers["Location"] == "/console/alerts"

    asyncio.run(go())
    [gone] = alerts.list_alerts(store, ADMIN, rule="supply-low", state="resolved")
    assert gone["resolvedBy"] == "sam" and gone["acknowledgedBy"] == "sam"


def test_silent_filter_gives_the_same_pages_under_both_plans(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    _put(store, a, [Dev(f"sn:hp:{i:02d}", polled_at=t(i)) for i in range(12)])
    th = queries.Thresholds(since={a.agent_id: t(5).replace(tzinfo=None)})  # 0..4 are silent
    with store.reading() as conn:
        counts = queries.counts(conn, ADMIN, th, t(20).replace(tzinfo=None))
        assert counts["silent"] == 5
        for sort in ("key", "ip", "seen"):
            pages = []
            for share in (0.0, 1.0):  # IN (the silent keys) / a test per row walked
                f = queries.FleetFilter(silent=True, sort=sort, silent_share=share, limit=2)
                seen = []
                while True:
                    rows, nxt = queries.fleet_page(conn, ADMIN, f, th)
                    seen += [r["device_key"] for r in rows]
                    assert all(r["silent"] for r in rows)
                    if nxt is None:
                        break
                    f.cursor = nxt
                pages.append(seen)
            assert pages[0] == pages[1] and sorted(pages[0]) == [f"sn:hp:{i:02d}" for i in range(5)]


def test_agents_behind_are_those_with_a_queue_or_not_seen_since_their_threshold(
    store: Store,  # noqa: F811
) -> None:
    """The fleet's "agents behind" card: a queue to send, or silent since its own threshold
    (per agent, like the silent devices); a revoked agent is not counted."""
    queued, late, fresh, revoked = (enrolled(store) for _ in range(4))
    seen = {queued: (3, t(10)), late: (0, t(1)), fresh: (0, t(10)), revoked: (5, t(1))}
    with store.engine.begin() as conn:
        for agent, (depth, at) in seen.items():
            conn.execute(
                m.agents.update()
                .where(m.agents.c.agent_id == agent.agent_id)
                .values(queue_depth=depth, last_seen_at=at, revoked=agent is revoked)
            )
    th = queries.Thresholds(since={a.agent_id: t(5) for a in (queued, late, fresh, revoked)})
    with store.reading() as conn:
        got = queries.counts(conn, ADMIN, th, t(10))["agents_behind"]
        no_th = queries.counts(conn, ADMIN, queries.Thresholds(), t(10))
    assert got == 2  # queued and late
    assert no_th["agents_behind"] == 1  # no interval known yet: only the queue counts
