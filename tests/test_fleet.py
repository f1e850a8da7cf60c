"""Fleet intelligence on a real store (SQLite and PostgreSQL): the rules open and resolve,
orders are placed once per cartridge life, alerts are scoped; and the sans-IO parts alone.

Reports are stored through the store's ingest path with their times in the past, and the
evaluator runs with the clock of the story, so days pass in milliseconds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_manager_ingest import enrolled
from test_manager_support import Dev, store  # noqa: F401

from metersync_manager import ingest
from metersync_manager import models as m
from metersync_manager.fleet import alerts, evaluate, lifecycle, notify, rules
from metersync_manager.fleet.evaluate import Evaluator
from metersync_manager.fleet.forecast import LifeTracker, Obs, OrderPolicy, order_due
from metersync_manager.scope import ADMIN, CUSTOMER_VIEWER, DEALER_STAFF, Scope
from metersync_manager.store import Store

T0 = datetime(2026, 11, 2, 6, tzinfo=UTC)  # a Monday


class Story:
    """One agent reporting to a store at times of the story; the evaluator on the same clock."""

    def __init__(self, db: Store) -> None:
        self.store = db
        self.agent = enrolled(db)
        self.now = T0
        self.seq = 0
        self.ev = Evaluator(db, lambda: self.now)

    def report(self, *devs: Dev) -> None:
        self.seq += 1
        for d in devs:
            d.polled_at = self.now
        raw = self.agent.report(
            list(devs), created_at=self.now, sequence=self.seq, cycle_started_at=self.now
        )
        self.store.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), self.now)
        while self.ev.step():
            pass

    def alerts(self, rule: str, state: str = "active") -> list[dict[str, Any]]:
        return alerts.list_alerts(self.store, ADMIN, rule=rule, state=state)


def printer(key: str, pages: int, level: int, meaning: str = "exact", **kw: Any) -> Dev:
    sup = {"index": 1, "level": level, "meaning": meaning}
    if meaning == "exact":
        sup["percent"] = str(level)
    return Dev(key, counters=[("total", pages, {})], supplies=[sup], **kw)


def test_supply_low_orders_once_per_life_and_resolves_on_replacement(store: Store) -> None:  # noqa: F811
    s = Story(store)
    level, pages = 60.0, 10_000
    bounced = False
    while level > 4:  # 2 points a day, read every 6 hours
        shown = round(level)
        if level < 9 and not bounced:  # a shaken cartridge: +6 for one read, then -3
            shown, bounced = shown + 6, True
        elif 9 <= level < 10:
            s.report(printer("sn:t:1", pages, -3, "someRemaining"))
            s.now += timedelta(hours=6)
        s.report(printer("sn:t:1", pages, shown))
        level -= 0.5
        pages += 50
        s.now += timedelta(hours=6)
    low = s.alerts("supply-low")
    assert len(low) == 1 and low[0]["subject"]["id"] == "sn:t:1" and low[0]["key"] == "1"
    assert low[0]["evidence"]["forecast"]["daysToEmpty"] is not None
    orders = evaluate.orders(store, ADMIN)
    assert len(orders) == 1 and orders[0]["supply"] == 1
    fc = evaluate.forecasts(store, ADMIN, "sn:t:1")[0]["forecast"]
    assert fc["method"] == "pages" and 0 <= fc["daysToEmpty"] < 5 and fc["confidence"] > 0

    s.report(printer("sn:t:1", pages, 100))  # a new cartridge …
    s.now += timedelta(hours=6)
    s.report(printer("sn:t:1", pages + 50, 100))  # … confirmed: the first clear evaluation
    assert len(s.alerts("supply-low")) == 1  # damped: one clear evaluation is not enough
    s.now += timedelta(hours=6)
    s.report(printer("sn:t:1", pages + 100, 99))
    assert s.alerts("supply-low") == []
    done = s.alerts("supply-low", "resolved")
    assert len(done) == 1 and done[0]["resolvedBy"] is None
    lives = evaluate.forecasts(store, ADMIN, "sn:t:1")[0]["lives"]
    assert len(lives) == 2 and lives[0]["levelAtRemoval"] <= 6 and lives[0]["pages"] > 0
    assert s.alerts("replaced-early") == []  # it was used up
    assert len(evaluate.orders(store, ADMIN)) == 1


def test_early_replacement_printer_errors_and_events(store: Store) -> None:  # noqa: F811
    s = Story(store)
    for i in range(8):
        jam = [{"index": 3, "code": "jam", "raw": 8, "description": "Tray 2 jam"}] if i == 2 else []
        s.report(printer("sn:t:2", 1000 + 100 * i, 70 - 3 * i, alerts=jam))
        if i == 2:
            assert [a["key"] for a in s.alerts("printer-error")] == ["alert:jam:"]
        s.now += timedelta(hours=12)
    assert s.alerts("printer-error") == []  # gone for two evaluations: resolved
    assert len(s.alerts("printer-error", "resolved")) == 1
    s.report(printer("sn:t:2", 2000, 100))
    s.now += timedelta(hours=1)
    s.report(printer("sn:t:2", 2010, 100))
    early = s.alerts("replaced-early")
    assert len(early) == 1 and early[0]["evidence"]["life"]["levelAtRemoval"] == 49

    # a counter reset, as the ingest records it in device_events
    with store._write() as conn:
        conn.execute(
            m.device_events.insert().values(
                device_key="sn:t:2", at=s.now.replace(tzinfo=None), kind="reset",
                customer_id="default", agent_id=s.agent.agent_id, detail="{}",
            )
        )  # fmt: skip
    s.report(printer("sn:t:2", 5, 99))
    assert [a["key"] for a in s.alerts("counter-reset")] == ["reset"]
    s.now += timedelta(hours=25)
    s.ev.tick()
    s.ev.tick()
    assert s.alerts("counter-reset") == []


def test_silent_device_and_agent_open_on_the_timer_and_resolve(store: Store) -> None:  # noqa: F811
    s = Story(store)
    for _ in range(4):
        s.report(printer("sn:t:3", 100, 80))
        s.now += timedelta(hours=1)
    s.ev.tick()
    assert s.alerts("device-silent") == [] and s.alerts("agent-silent") == []
    s.now += timedelta(hours=4)
    s.ev.tick()
    assert [a["subject"]["id"] for a in s.alerts("device-silent")] == ["sn:t:3"]
    assert [a["subject"]["id"] for a in s.alerts("agent-silent")] == [s.agent.agent_id]
    s.report(printer("sn:t:3", 110, 80))
    s.ev.tick()
    s.ev.tick()
    assert s.alerts("device-silent") == [] and s.alerts("agent-silent") == []


def test_alerts_are_scoped_and_acknowledged_by_whom(store: Store) -> None:  # noqa: F811
    s = Story(store)
    jam = [{"index": 1, "code": "doorOpen", "raw": 3}]
    s.report(printer("sn:t:4", 100, 80, alerts=jam))
    (a,) = s.alerts("printer-error")
    now = s.now
    with store._write() as conn:
        conn.execute(
            m.customers.insert().values(
                customer_id="acme", name="Acme", created_at=now.replace(tzinfo=None)
            )
        )
    other = Scope(DEALER_STAFF, frozenset({"acme"}), "bob")
    viewer = Scope(CUSTOMER_VIEWER, frozenset({"default"}), "carol")
    assert (
        alerts.list_alerts(store, other) == []
        and alerts.get_alert(store, other, a["alertId"]) is None
    )
    assert alerts.acknowledge(store, other, a["alertId"], now) is None  # out of scope: 404
    with pytest.raises(PermissionError):
        alerts.acknowledge(store, viewer, a["alertId"], now)
    staff = Scope(DEALER_STAFF, frozenset({"default"}), "alice")
    done = alerts.acknowledge(store, staff, a["alertId"], now)
    assert done is not None and (done["state"], done["acknowledgedBy"]) == ("acknowledged", "alice")
    done = alerts.resolve(store, staff, a["alertId"], now)
    assert done is not None and done["resolvedBy"] == "alice"
    s.report(printer("sn:t:4", 101, 80, alerts=jam))  # still open: not opened again
    assert s.alerts("printer-error") == []
    s.report(printer("sn:t:4", 102, 80))
    s.report(printer("sn:t:4", 103, 80, alerts=jam))  # cleared, then back: a new alert
    assert len(s.alerts("printer-error")) == 1
    events = [r.event_type for r in _queue(store)]
    assert events == []  # no target: nothing queued


def _queue(db: Store) -> list[Any]:
    with db._read() as conn:
        return list(conn.execute(m.notifications.select().order_by(m.notifications.c.id)))


def test_settings_per_customer_over_dealer_defaults(store: Store) -> None:  # noqa: F811
    alerts.put_settings(store, ADMIN, "*", "supply-low", {"threshold": 25})
    got = alerts.settings(store, ADMIN, "default")["rules"]["supply-low"]
    assert got["threshold"] == 25 and got["leadDays"] == 7
    alerts.put_settings(store, ADMIN, "default", "supply-low", {"threshold": 5, "enabled": False})
    got = alerts.settings(store, ADMIN, "default")["rules"]["supply-low"]
    assert (got["threshold"], got["enabled"]) == (5, False)
    with pytest.raises(alerts.AlertError):
        alerts.put_settings(store, ADMIN, "default", "supply-low", {"colour": 1})
    with pytest.raises(PermissionError):
        alerts.put_settings(store, Scope(DEALER_STAFF, frozenset({"default"})), "*", "licence", {})
    s = Story(store)
    s.report(printer("sn:t:5", 100, 3))
    assert s.alerts("supply-low") == []  # disabled for this customer


# --- sans-IO --------------------------------------------------------------------------------


def _feed(levels: list[float | None], pages_per: int = 100) -> LifeTracker:
    t = LifeTracker()
    for i, lvl in enumerate(levels):
        t.feed(Obs(T0.replace(tzinfo=None) + timedelta(hours=6 * i), lvl, 1000 + pages_per * i))
    return t


def test_lives_ignore_bounces_and_unknowns_and_see_replacements() -> None:
    levels: list[float | None] = [50 - i for i in range(40)]
    levels[20] = levels[19] + 15  # shaken: one high read
    levels[25] = None  # -2
    t = _feed(levels)
    assert len(t.lives) == 1
    t = _feed([*levels, 100.0, 99.0])
    assert len(t.lives) == 2 and t.lives[0].end_level == 11
    assert t.lives[0].summary()["pages"] == 3900


def test_forecast_coarse_levels_and_not_enough_history() -> None:
    assert _feed([80.0]).forecast(T0.replace(tzinfo=None)).days is None
    assert "not used enough" in (_feed([80.0] * 12).forecast(T0.replace(tzinfo=None)).reason or "")
    # 1 point per 6 h, reported in steps of 20: 4 points a day → about 10 days left at 40 %
    levels = [float(round((80 - i) / 20) * 20) for i in range(41)]
    t = _feed(levels)
    now = T0.replace(tzinfo=None) + timedelta(hours=6 * 40)
    fc = t.forecast(now)
    assert t.coarse_step == 20 and fc.days is not None and 6 <= fc.days <= 14, fc
    assert fc.low is not None and fc.high is not None and fc.low <= fc.days <= fc.high
    assert order_due(t, fc, OrderPolicy(lead_days=14))


def test_reconcile_dedupes_damps_and_holds_operator_resolved() -> None:
    c = rules.Condition("printer-error", "device", "sn:x", "flag:jammed", "critical", "jam")
    ch = lifecycle.reconcile([], [c, c])
    assert len(ch.opened) == 1
    a = lifecycle.OpenAlert(1, c.ident, "open", "critical", 0)
    assert lifecycle.reconcile([a], [c]).held == [(a, c, False)]
    assert lifecycle.reconcile([a], []).cleared == [a]
    a.clear_count = 1
    assert lifecycle.reconcile([a], []).resolved == [a]
    warn = rules.Condition(*c.ident, "warning", "jam")  # type: ignore[misc]
    assert lifecycle.reconcile([a], [warn]).held[0][2] is True  # severity change is news
    r = lifecycle.OpenAlert(2, c.ident, "resolved", "critical", 0)
    ch = lifecycle.reconcile([r], [c])
    assert ch.opened == [] and ch.held == [] and ch.released == []
    assert lifecycle.reconcile([r], []).released == [r]


def test_agent_rules() -> None:
    now = T0
    a = rules.AgentState("ag", "default", now - timedelta(hours=2), timedelta(minutes=30), 150, 2,
                         "expiring", False)  # fmt: skip
    got = {(c.rule, c.key, c.severity) for c in rules.agent_conditions(a, now, rules.DEFAULTS.get)}
    assert got == {
        ("agent-silent", "", "critical"),
        ("agent-outbox", "queue", "warning"),
        ("agent-outbox", "dropped", "critical"),
        ("licence", "", "warning"),
    }
    a.licence_state = "missing"  # an agent without a licence: only when the dealer asks
    assert not [
        c for c in rules.agent_conditions(a, now, rules.DEFAULTS.get) if c.rule == "licence"
    ]
    on = {**rules.DEFAULTS, "licence": {"enabled": True, "missing": True}}
    assert [c.severity for c in rules.agent_conditions(a, now, on.get) if c.rule == "licence"] == [
        "critical"
    ]


def test_webhook_signature_is_hmac_over_timestamp_and_body() -> None:
    import hashlib
    import hmac

    body = json.dumps({"a": 1}).encode()
    want = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert notify.signature("k", 1700000000, body) == "v1=" + want
