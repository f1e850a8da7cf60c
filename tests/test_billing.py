"""Customers, ownership and billing (MS-OWN, MS-BILL, MS-SCOPE) over SQLite and PostgreSQL.

Store-level tests drive `store_report` with signed reports; the HTTP tests run the manager under
Hypercorn and call the operator API with tokens of each role.
"""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from test_manager_support import Dev, Server, TestAgent, enrolled, new_token, store  # noqa: F401

from metersync.errors import ProtocolError
from metersync_manager import ingest
from metersync_manager.billing import Period
from metersync_manager.scope import CUSTOMER_VIEWER, DEALER_STAFF, Scope
from metersync_manager.store import Store

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
BROTHER_RECORD = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.10.0"


class Feeder:
    """Sends reports of one agent in sequence order."""

    def __init__(self, s: Store, agent: TestAgent) -> None:
        self.s, self.agent, self.seq = s, agent, 0

    def send(self, devs: list[Dev], created: datetime | None = None) -> Any:
        self.seq += 1
        created = created or max(d.polled_at for d in devs)
        raw = self.agent.report(devs, sequence=self.seq, created_at=created)
        rows = ingest.read_report(raw)
        ingest.check_report(rows, self.agent.agent_id, NOW)  # as the HTTP binding does
        stored = self.s.store_report(rows, ingest.digest(raw), len(raw), NOW)
        if self.seq % 10 == 0:  # a lost receipt: the same bytes again, stored once
            again = self.s.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), NOW)
            assert again.duplicate
        return stored


def total(value: int, **extra: str) -> tuple[str, int, dict[str, str]]:
    return ("total", value, extra)


def lines(s: Store, start: datetime, end: datetime, **kw: Any) -> list[dict[str, Any]]:
    period = Period(start.replace(tzinfo=None), end.replace(tzinfo=None), **kw)
    return [x for page in s.meter_lines(period) for x in page]


def at(day: float) -> datetime:
    return NOW - timedelta(days=40) + timedelta(days=day)


def test_two_counters_of_one_oid_never_merge(store: Store) -> None:  # noqa: F811
    """The colour Brother: black and cyan counters of kind other share one record OID."""
    feed = Feeder(store, enrolled(store))
    for day, (black, cyan) in enumerate([(9000, 510), (9010, 512), (9025, 520)]):
        counters = [
            (
                "other",
                black,
                {"oid": BROTHER_RECORD, "source": "brother", "label": "black counter"},
            ),
            ("other", cyan, {"oid": BROTHER_RECORD, "source": "brother", "label": "cyan counter"}),
        ]
        feed.send([Dev("sn:brother:c1", polled_at=at(day), counters=counters)])
    got = {x["label"]: (x["usage"], x["resets"]) for x in lines(store, at(-1), at(5))}
    assert got == {"black counter": (25, []), "cyan counter": (10, [])}


def test_a_snapshot_with_two_counters_of_one_identity_is_refused(store: Store) -> None:  # noqa: F811
    feed = Feeder(store, enrolled(store))
    same = {"oid": BROTHER_RECORD, "source": "brother", "label": "black counter"}
    with pytest.raises(ProtocolError) as exc:
        feed.send([Dev("sn:brother:c2", polled_at=at(0), counters=[("other", 1, same)] * 2)])
    assert exc.value.code == 3001 and exc.value.requirement == "MS-BILL-2"


def test_no_other_agent_changes_the_bill(store: Store) -> None:  # noqa: F811
    store.create_customer("acme", "ACME", NOW)
    store.create_customer("beta", "Beta", NOW)
    owner = Feeder(store, enrolled(store, "acme"))
    colleague = Feeder(store, enrolled(store, "acme"))
    stranger = Feeder(store, enrolled(store, "beta"))
    for day in range(4):
        owner.send([Dev("sn:hp:own", polled_at=at(day), counters=[total(100 + 100 * day)])])
        # the attacks of the issue: a huge counter, a backdated zero, a read from the future
        stranger.send([Dev("sn:hp:own", polled_at=at(day + 0.5), counters=[total(5_000_000)])])
        colleague.send([Dev("sn:hp:own", polled_at=at(day + 0.1), counters=[total(0)])])
    owner.send([Dev("sn:hp:own", polled_at=at(1.5), counters=[total(0)])])  # backdated: refused
    with pytest.raises(ProtocolError) as exc:
        stranger.send(
            [Dev("sn:hp:own", polled_at=at(4) + timedelta(days=3650), counters=[total(1)])],
            created=at(4),
        )
    assert exc.value.code == 3001
    (line,) = lines(store, at(-1), at(10))
    assert (line["usage"], line["resets"], line["customerId"]) == (300, [], "acme")
    (dev,) = store.devices("sn:hp:own")
    assert dev["ownerAgentId"] == owner.agent.agent_id and dev["currentIp"] == "192.0.2.10"
    kinds = [e["kind"] for e in store.device_events("sn:hp:own")]
    assert kinds.count("conflict") == 8
    assert store.latest("sn:hp:own")["counters"][0]["value"] == 400


def test_a_silent_owner_hands_over_within_its_customer_only(store: Store) -> None:  # noqa: F811
    store.create_customer("acme", "ACME", NOW)
    store.create_customer("beta", "Beta", NOW)
    owner = Feeder(store, enrolled(store, "acme"))
    heir = Feeder(store, enrolled(store, "acme"))
    stranger = Feeder(store, enrolled(store, "beta"))
    owner.send([Dev("sn:hp:ho", polled_at=at(0), counters=[total(1000)])])
    stranger.send([Dev("sn:hp:ho", polled_at=at(3), counters=[total(1)])])  # never a hand-over
    heir.send([Dev("sn:hp:ho", polled_at=at(3), counters=[total(1500)])])  # 3 days silent
    owner.send([Dev("sn:hp:ho", polled_at=at(3.2), counters=[total(1600)])])  # now a conflict
    heir.send([Dev("sn:hp:ho", polled_at=at(5), counters=[total(1700)])])
    (line,) = lines(store, at(-1), at(10))
    assert line["usage"] == 700
    (dev,) = store.devices("sn:hp:ho")
    assert dev["ownerAgentId"] == heir.agent.agent_id and dev["customerId"] == "acme"
    kinds = [e["kind"] for e in store.device_events("sn:hp:ho")]
    assert kinds == ["conflict", "hand-over", "conflict"]


def test_a_move_splits_the_bill_at_the_move(store: Store) -> None:  # noqa: F811
    store.create_customer("acme", "ACME", NOW)
    store.create_customer("beta", "Beta", NOW)
    feed = Feeder(store, enrolled(store, "acme", "HQ"))
    for day in range(6):
        if day == 3:
            store.move("device", "sn:hp:mv", "beta", "Lab", at(2.5), "tester")
        feed.send([Dev("sn:hp:mv", polled_at=at(day), counters=[total(100 * day)])])
    by_customer = {x["customerId"]: x for x in lines(store, at(-1), at(10))}
    assert {c: x["usage"] for c, x in by_customer.items()} == {"acme": 200, "beta": 300}
    assert by_customer["acme"]["site"] == "HQ" and by_customer["beta"]["site"] == "Lab"
    only_beta = lines(store, at(-1), at(10), customer="beta")
    assert [x["usage"] for x in only_beta] == [300]


def test_a_swap_at_one_address_is_an_event_not_a_reset(store: Store) -> None:  # noqa: F811
    feed = Feeder(store, enrolled(store))
    feed.send([Dev("sn:hp:old", ip="192.0.2.77", polled_at=at(0), counters=[total(5000)])])
    feed.send([Dev("sn:hp:new", ip="192.0.2.77", polled_at=at(1), counters=[total(12)])])
    feed.send([Dev("sn:hp:new", ip="192.0.2.77", polled_at=at(2), counters=[total(40)])])
    got = {x["deviceKey"]: (x["usage"], x["resets"]) for x in lines(store, at(-1), at(10))}
    assert got == {"sn:hp:old": (0, []), "sn:hp:new": (28, [])}
    assert [e["kind"] for e in store.device_events("sn:hp:old")] == ["swap-out"]
    assert [e["kind"] for e in store.device_events("sn:hp:new")] == ["swap-in"]


def test_the_same_address_on_another_agents_network_is_no_swap(store: Store) -> None:  # noqa: F811
    """MS-OWN-5: 192.0.2.77 at two sites of one customer is two printers, not a swap."""
    Feeder(store, enrolled(store)).send(
        [Dev("sn:hp:site-a", ip="192.0.2.77", polled_at=at(0), counters=[total(5000)])]
    )
    Feeder(store, enrolled(store)).send(
        [Dev("sn:hp:site-b", ip="192.0.2.77", polled_at=at(1), counters=[total(12)])]
    )
    assert store.device_events("sn:hp:site-a") == []
    assert store.device_events("sn:hp:site-b") == []


def test_contract_meters_compose_counters(store: Store) -> None:  # noqa: F811
    store.create_customer("acme", "ACME", NOW)
    store.define_contract_meter("*", "mono", "print-mono + copy-mono", NOW)
    store.define_contract_meter("acme", "a3", "2*large-format", NOW)
    feed = Feeder(store, enrolled(store, "acme"))
    for day, (pm, cm, lf) in enumerate([(100, 50, 10), (130, 70, 15)]):
        counters = [("print-mono", pm, {}), ("copy-mono", cm, {}), ("large-format", lf, {})]
        feed.send([Dev("sn:hp:cm", polled_at=at(day), counters=counters)])
    meters = {x["meter"]: x for x in lines(store, at(-1), at(5)) if x["type"] == "meter"}
    assert meters["mono"]["usage"] == 50 and meters["mono"]["end"]["value"] == 200
    assert meters["a3"]["usage"] == 10 and meters["a3"]["terms"] == "2*large-format"
    with pytest.raises(ValueError):
        store.define_contract_meter("acme", "bad", "print-mono + toner", NOW)


# --- a simulated year ----------------------------------------------------------------------


class Fleet:
    """A seeded fleet that knows its truth: every page each owner's reads bill."""

    def __init__(self, s: Store, seed: int = 7, printers: int = 200, customers: int = 5) -> None:
        self.rng = random.Random(seed)
        self.s = s
        self.customers = [f"cust-{i}" for i in range(customers)]
        for c in self.customers:
            s.create_customer(c, c.upper(), NOW)
        self.agents = {c: [Feeder(s, enrolled(s, c)) for _ in range(2)] for c in self.customers}
        self.printers = [
            {"key": f"sn:sim:{i:04d}", "ip": f"10.0.{i // 250}.{i % 250 + 1}", "value": 0,
             "customer": self.customers[i % customers], "daily": self.rng.randint(5, 400)}
            for i in range(printers)
        ]  # fmt: skip
        self.truth: dict[str, list[tuple[datetime, int]]] = {}  # key -> [(read at, pages)]
        self.resets = 0

    def read(self, p: dict[str, Any], when: datetime) -> Dev:
        return Dev(p["key"], ip=p["ip"], polled_at=when, counters=[total(p["value"])])

    def run(self, start: datetime, weeks: int) -> None:
        backlog: list[tuple[Feeder, list[Dev]]] = []
        for week in range(weeks):
            when = start + timedelta(days=7 * week)
            for p in self.printers:
                pages = self.rng.randint(0, 14 * p["daily"])
                event = self.rng.random()
                if event < 0.004 and p["value"] > 1:  # a new board: the counter restarts lower
                    p["value"] = min(pages, p["value"] // 2)
                    self.resets += 1
                    pages = 0  # unknown across a decrease: never billed
                else:
                    p["value"] += pages
                if event > 0.996:
                    p["ip"] = f"10.9.{week}.{self.rng.randint(1, 250)}"
                first = p["key"] not in self.truth  # the first read is the baseline
                self.truth.setdefault(p["key"], []).append((when, 0 if first else pages))
            for c in self.customers:
                owner, other = self.agents[c]
                mine = [self.read(p, when) for p in self.printers if p["customer"] == c]
                if c == self.customers[1] and 20 <= week < 21:
                    backlog.append((owner, mine))  # an outage: flushed a week later
                    continue
                for f, devs in backlog:  # the outbox sends its oldest first
                    f.send(devs)
                backlog.clear()
                owner.send(mine)
                # the colleague agent reads two of the same printers: conflicts, not bills
                shared = [x for x in self.printers if x["customer"] == c][:2]
                other.send([self.read(p, when + timedelta(minutes=5)) for p in shared])
                # an agent of the next customer claims this customer's first printer
                thief = self.agents[self.customers[(self.customers.index(c) + 1) % 5]][1]
                victim = next(p for p in self.printers if p["customer"] == c)
                thief.send([Dev(victim["key"], polled_at=when + timedelta(minutes=9),
                                counters=[total(victim["value"] + 10**6)])])  # fmt: skip

    def expected(self, key: str, lo: datetime, hi: datetime) -> int:
        return sum(n for t, n in self.truth[key] if lo < t <= hi)


@pytest.mark.slow
def test_a_simulated_year_bills_every_page_exactly_once(store: Store) -> None:  # noqa: F811
    start = datetime(2025, 11, 24, 9, tzinfo=UTC)
    fleet = Fleet(store)
    fleet.run(start, 52)
    months = [start + timedelta(days=30 * i) for i in range(13)]
    billed: dict[str, int] = {}
    listed_resets = 0
    for lo, hi in zip(months, months[1:], strict=False):
        for c in fleet.customers:
            got = lines(store, lo, hi, customer=c)
            assert all(x["customerId"] == c for x in got)
            for x in got:
                want = fleet.expected(x["deviceKey"], lo, hi)
                assert x["usage"] == want, (x["deviceKey"], lo)
                assert x["usage"] >= 0
                billed[x["deviceKey"]] = billed.get(x["deviceKey"], 0) + x["usage"]
                listed_resets += len(x["resets"])
    for key, reads in fleet.truth.items():
        in_year = sum(n for t, n in reads if months[0] < t <= months[-1])
        assert billed.get(key, 0) == in_year, key  # 0 lost, 0 twice
    assert listed_resets == fleet.resets > 0


# --- scoped access over HTTP ---------------------------------------------------------------


def token_for(s: Store, scope: Scope) -> dict[str, str]:
    tok = ingest.new_token()
    s.add_operator_token(ingest.hash_token(tok), scope.operator or scope.role, NOW, scope)
    return {"Authorization": f"Bearer {tok}"}


def test_each_role_sees_only_its_customers(store: Store) -> None:  # noqa: F811
    for c in ("acme", "beta"):
        store.create_customer(c, c.upper(), NOW)
    feeds = {c: Feeder(store, enrolled(store, c)) for c in ("acme", "beta")}
    for c, f in feeds.items():
        for day in range(2):
            f.send([Dev(f"sn:hp:{c}", polled_at=at(day), counters=[total(10 + day)])])
    viewer = token_for(store, Scope(CUSTOMER_VIEWER, frozenset({"acme"}), "v"))
    staff = token_for(store, Scope(DEALER_STAFF, frozenset({"beta"}), "st"))
    period = {"from": at(-1).isoformat(), "to": at(5).isoformat()}
    with Server(store) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        admin = server.api_headers
        for headers, mine, other in ((viewer, "acme", "beta"), (staff, "beta", "acme")):
            keys = [
                d["deviceKey"] for d in c.get("/api/v1/devices", headers=headers).json()["items"]
            ]
            assert keys == [f"sn:hp:{mine}"]
            agents = c.get("/api/v1/agents", headers=headers).json()["items"]
            assert [a["customerId"] for a in agents] == [mine]
            for path in ("", "/latest", "/supplies", "/counters", "/ips", "/events"):
                r = c.get(f"/api/v1/devices/sn:hp:{other}{path}", headers=headers)
                assert r.status_code == 404, path
                assert (
                    c.get(f"/api/v1/devices/sn:hp:{mine}{path}", headers=headers).status_code == 200
                )
            r = c.get(f"/api/v1/agents/{feeds[other].agent.agent_id}", headers=headers)
            assert r.status_code == 404
            meters = c.get("/api/v1/meters", params=period, headers=headers).json()["lines"]
            assert {x["customerId"] for x in meters} == {mine}
            r = c.get("/api/v1/meters", params={**period, "customer": other}, headers=headers)
            assert r.status_code == 404
            assert c.post("/api/v1/customers", json={"customerId": "x", "name": "X"},
                          headers=headers).status_code == 403  # fmt: skip
        # a viewer moves nothing; staff move within their customers only
        move = {"customerId": "acme"}
        assert c.post("/api/v1/devices/sn:hp:acme/assignment", json=move,
                      headers=viewer).status_code == 403  # fmt: skip
        assert c.post("/api/v1/devices/sn:hp:beta/assignment", json=move,
                      headers=staff).status_code == 404  # fmt: skip
        all_lines = c.get("/api/v1/meters", params=period, headers=admin).json()["lines"]
        assert {x["customerId"] for x in all_lines} == {"acme", "beta"}
        r = c.post("/api/v1/customers", json={"customerId": "gamma", "name": "G"}, headers=admin)
        assert r.status_code == 201


def test_the_csv_export_equals_the_json_export_and_pages_by_cursor(store: Store) -> None:  # noqa: F811
    feed = Feeder(store, enrolled(store))
    for day in range(3):
        feed.send(
            [Dev(f"sn:hp:p{i}", polled_at=at(day), counters=[total(i * 100 + day * 7)])
             for i in range(5)]
        )  # fmt: skip
    period = {"from": at(-1).isoformat(), "to": at(5).isoformat()}
    with (
        Server(store) as server,
        httpx.Client(base_url=server.url, timeout=30, headers=server.api_headers) as c,
    ):
        whole = c.get("/api/v1/meters", params=period).json()["lines"]
        r = c.get("/api/v1/meters", params={**period, "format": "csv"})
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [(x["device_key"], int(x["usage"])) for x in rows] == [
            (x["deviceKey"], x["usage"]) for x in whole
        ]
        assert [x["usage"] for x in whole] == [14] * 5
        paged, cursor = [], None
        while True:
            q = {**period, "limit": "2", **({"cursor": cursor} if cursor else {})}
            body = c.get("/api/v1/meters", params=q).json()
            paged += body["lines"]
            cursor = body["nextCursor"]
            if cursor is None:
                break
        assert paged == whole
        assert c.get("/api/v1/meters", params={**period, "cursor": "junk"}).status_code == 400
