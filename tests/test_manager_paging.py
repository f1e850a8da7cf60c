"""Cursor pagination of the operator lists (agents, devices, customers, a device's events):
walking `nextCursor` and the `Link` header gives every item once, in order; a made-up cursor
is a 400. On SQLite and PostgreSQL, through a real server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from test_manager_support import Dev, Server, enrolled, store  # noqa: F401

from metersync_manager import ingest
from metersync_manager.store import Store

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


@pytest.fixture
def seeded(store: Store) -> Iterator[Server]:  # noqa: F811
    agents = [enrolled(store) for _ in range(4)]
    for i in range(5):
        store.create_customer(f"cust{i}", f"Customer {i}", T0)
    a = agents[0]
    devices = [Dev(f"sn:hp:page{i}", polled_at=T0) for i in range(7)]
    for n, ip in enumerate(["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]):
        snap = [Dev("sn:hp:page0", ip=ip, polled_at=T0 + timedelta(hours=n + 1))]
        raw = a.report(devices if n == 0 else snap, sequence=n + 1)
        store.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), T0)
    with Server(store) as s:
        yield s


def _walk(s: Server, path: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list, page by page through the Link header; (items, pages)."""
    items: list[dict[str, Any]] = []
    url: str | None = f"{path}?limit={limit}"
    pages = 0
    with httpx.Client(base_url=s.url, headers=s.api_headers, timeout=30) as c:
        while url:
            r = c.get(url)
            assert r.status_code == 200, r.text
            body = r.json()
            assert len(body["items"]) <= limit
            items += body["items"]
            pages += 1
            link = r.headers.get("Link")
            assert (link is None) == (body["nextCursor"] is None)
            url = link.split(">", 1)[0].lstrip("<") if link else None
    return items, pages


def test_cursor_pages_give_every_item_once(seeded: Server) -> None:
    agents, pages = _walk(seeded, "/api/v1/agents", 3)
    ids = [x["agentId"] for x in agents]
    assert len(ids) == 4 and ids == sorted(ids) and pages == 2
    devices, pages = _walk(seeded, "/api/v1/devices", 2)
    assert [x["deviceKey"] for x in devices] == [f"sn:hp:page{i}" for i in range(7)]
    assert pages == 4
    customers, _ = _walk(seeded, "/api/v1/customers", 2)
    assert [x["customerId"] for x in customers] == sorted(
        ["default", *(f"cust{i}" for i in range(5))]
    )
    events, pages = _walk(seeded, "/api/v1/devices/sn:hp:page0/events", 1)
    assert [e["kind"] for e in events] == ["ip-change"] * 3 and pages == 3
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert len({e["eventId"] for e in events}) == 3


def test_a_made_up_cursor_is_refused(seeded: Server) -> None:
    with httpx.Client(base_url=seeded.url, headers=seeded.api_headers, timeout=30) as c:
        for path in ("/api/v1/agents", "/api/v1/devices/sn:hp:page0/events"):
            r = c.get(path, params={"cursor": "bm90LWEtY3Vyc29y"})
            assert r.status_code == 400, r.text
            assert "cursor" in r.json()["detail"]
        r = c.get("/api/v1/devices", params={"cursor": "x" * 2000})
        assert r.status_code == 400
