"""The manager over real HTTP: Hypercorn on 127.0.0.1, httpx, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from test_manager_support import (  # noqa: F401
    MEDIA,
    Dev,
    Server,
    TestAgent,
    free_port,
    new_token,
    parse_xml,
    pg_schema,
    store,
)

from metersync import signing
from metersync_manager import ingest
from metersync_manager.store import Store

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def server(store: Store) -> Iterator[Server]:  # noqa: F811
    with Server(store) as s:
        yield s


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30, headers=server.api_headers) as c:
        yield c


def enroll(client: httpx.Client, store: Store, agent: TestAgent | None = None) -> TestAgent:  # noqa: F811
    agent = agent or TestAgent()
    body = agent.enrollment(new_token(store))
    r = client.post("/v1/enroll", content=body, headers=agent.headers(body))
    assert r.status_code == 200, r.text
    assert parse_xml(r.content).status.value == "accepted"
    return agent


def post_report(
    client: httpx.Client, agent: TestAgent, raw: bytes, **headers: str
) -> httpx.Response:
    return client.post("/v1/reports", content=raw, headers={**agent.headers(raw), **headers})


def assert_error(r: httpx.Response, status: int, code: int) -> None:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith(MEDIA)
    err = parse_xml(r.content)
    assert type(err).__name__ == "Error" and err.code == code, r.text[:500]


def key_url(key: str, tail: str = "") -> str:
    return f"/api/v1/devices/{quote(key, safe='')}{tail}"


# --- enrollment ---------------------------------------------------------------------------


def test_enrollment_is_idempotent_and_tokens_are_one_time(
    client: httpx.Client,
    store: Store,  # noqa: F811
) -> None:
    def post(agent: TestAgent, body: bytes) -> httpx.Response:
        return client.post("/v1/enroll", content=body, headers=agent.headers(body))

    agent = TestAgent()
    token = new_token(store)
    body = agent.enrollment(token)
    first, again = post(agent, body), post(agent, body)
    assert [parse_xml(r.content).status.value for r in (first, again)] == ["accepted", "duplicate"]
    other = TestAgent()
    assert_error(post(other, other.enrollment(token)), 403, 2007)
    same_id_other_key = TestAgent(agent.agent_id)
    assert_error(post(same_id_other_key, same_id_other_key.enrollment(new_token(store))), 409, 2010)
    stranger = TestAgent()
    assert_error(post(stranger, stranger.enrollment("x" * 43)), 403, 2006)
    unsigned = TestAgent()
    assert_error(
        client.post(
            "/v1/enroll",
            content=unsigned.enrollment(new_token(store)),
            headers={"Content-Type": MEDIA},
        ),
        401,
        2001,
    )
    assert store.count("agents") == 1


# --- reports --------------------------------------------------------------------------------


def full_device(key: str = "sn:hp:cnb123") -> Dev:
    return Dev(
        key,
        ip="192.0.2.44",
        polled_at=NOW - timedelta(seconds=5),
        serial="CNB123",
        counters=[("total", 48213, {}), ("mono", 31877, {"label": "Total Mono"})],
        supplies=[
            {"index": 1, "level": 64, "percent": "64"},
            {"index": 2, "level": -3, "meaning": "someRemaining", "colour": "cyan"},
        ],
        alerts=[{"index": 7, "description": "Cyan cartridge low"}],
        error="prtConsoleDisplayBufferText timed out",
    )


def test_signed_report_is_stored_and_read_back(client: httpx.Client, store: Store) -> None:  # noqa: F811
    agent = enroll(client, store)
    raw = agent.report([full_device(), Dev("mac:3c:52:82:1a:2b:3c")], queue_depth=3)
    r = post_report(client, agent, raw)
    assert r.status_code == 200, r.text
    rec = parse_xml(r.content)
    assert (rec.status.value, rec.devices_stored, rec.agent_id) == ("accepted", 2, agent.agent_id)

    latest = client.get(key_url("sn:hp:cnb123", "/latest")).json()
    assert latest["ip"] == "192.0.2.44" and latest["complete"] is False
    assert [(c["kind"], c["value"], c["label"]) for c in latest["counters"]] == [
        ("mono", 31877, "Total Mono"),
        ("total", 48213, None),
    ]
    supplies = client.get(key_url("sn:hp:cnb123", "/supplies")).json()["items"]
    assert [(s["index"], s["level"], s["percent"]) for s in supplies] == [
        (1, {"raw": 64, "meaning": "exact"}, 64.0),
        (2, {"raw": -3, "meaning": "someRemaining"}, None),
    ]
    alerts = client.get("/api/v1/printer-alerts", params={"deviceKey": "sn:hp:cnb123"}).json()[
        "items"
    ]
    assert [(a["index"], a["code"], a["description"]) for a in alerts] == [
        (7, "markerTonerAlmostEmpty", "Cyan cartridge low")
    ]
    device = client.get(key_url("sn:hp:cnb123")).json()
    assert (device["serialNumber"], device["currentIp"], device["agentId"]) == (
        "CNB123",
        "192.0.2.44",
        agent.agent_id,
    )
    agent_json = client.get(f"/api/v1/agents/{agent.agent_id}").json()
    assert agent_json["queueDepth"] == 3 and agent_json["reports"] == 1
    assert client.get(key_url("sn:hp:nothere")).status_code == 404


def test_gzip_report_is_accepted(client: httpx.Client, store: Store) -> None:  # noqa: F811
    agent = enroll(client, store)
    raw = agent.report([full_device()])
    r = client.post(
        "/v1/reports",
        content=gzip.compress(raw),
        headers={**agent.headers(raw), "Content-Encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    assert store.count("readings") == 1


def test_multi_member_gzip_and_a_big_text_node(client: httpx.Client, store: Store) -> None:  # noqa: F811
    """Issue 9, case 9: several gzip members (RFC 1952) are one body; a text node over 10 MB
    in a document under the size limit is judged by the schema, not refused as malformed."""
    agent = enroll(client, store)
    raw = agent.report([full_device()])
    half = len(raw) // 2
    body = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    headers = {**agent.headers(raw), "Content-Encoding": "gzip"}
    r = client.post("/v1/reports", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert store.count("readings") == 1
    bad = gzip.compress(raw) + b"not gzip"
    assert_error(client.post("/v1/reports", content=bad, headers=headers), 415, 1010)
    big = raw.replace(b"</Report>", b"<x>" + b"a" * (11 * 1024 * 1024) + b"</x></Report>")
    assert_error(post_report(client, agent, big), 400, 1008)


def test_duplicate_report_stores_nothing_twice(client: httpx.Client, store: Store) -> None:  # noqa: F811
    agent = enroll(client, store)
    raw = agent.report([full_device()])
    statuses = [parse_xml(post_report(client, agent, raw).content).status.value for _ in range(3)]
    assert statuses == ["accepted", "duplicate", "duplicate"]
    assert (store.count("reports"), store.count("readings"), store.count("counters")) == (1, 1, 2)


def test_concurrent_duplicates_store_exactly_one(server: Server, store: Store) -> None:  # noqa: F811
    with httpx.Client(base_url=server.url) as c:
        agent = enroll(c, store)
    raw = agent.report([full_device(), Dev("sn:hp:two")])
    headers = agent.headers(raw)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as ac:
            return await asyncio.gather(
                *(ac.post("/v1/reports", content=raw, headers=headers) for _ in range(20))
            )

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    statuses = sorted(parse_xml(r.content).status.value for r in responses)
    assert statuses == ["accepted"] + ["duplicate"] * 19
    assert (store.count("reports"), store.count("readings"), store.count("counters")) == (1, 2, 2)


def test_same_id_different_bytes_is_a_replay(client: httpx.Client, store: Store) -> None:  # noqa: F811
    agent = enroll(client, store)
    rid = str(uuid.uuid4())
    assert (
        post_report(client, agent, agent.report([full_device()], report_id=rid)).status_code == 200
    )
    changed = agent.report([full_device(), Dev("sn:hp:extra")], report_id=rid)
    assert_error(post_report(client, agent, changed), 409, 2005)
    assert store.count("readings") == 1


def test_authentication_refusals(client: httpx.Client, store: Store) -> None:  # noqa: F811
    agent = enroll(client, store)
    raw = agent.report([full_device()])
    forger = TestAgent(agent.agent_id)  # same id, another key
    assert_error(client.post("/v1/reports", content=raw, headers=forger.headers(raw)), 401, 2003)
    tampered = raw.replace(b"48213", b"48214")
    assert_error(
        client.post("/v1/reports", content=tampered, headers=agent.headers(raw)), 401, 2003
    )
    stranger = TestAgent()
    assert_error(post_report(client, stranger, stranger.report([full_device()])), 401, 2002)
    assert_error(
        client.post("/v1/reports", content=raw, headers={"Content-Type": MEDIA}), 401, 2001
    )
    # signed by a known agent, but speaking for another one
    other = enroll(client, store)
    posing = other.report([])
    assert_error(
        client.post(
            "/v1/reports",
            content=posing,
            headers={
                "Content-Type": MEDIA,
                signing.HEADER: signing.sign(agent.key, posing, agent.agent_id),
            },
        ),
        403,
        2009,
    )
    assert store.count("reports") == 0


def test_clock_skew(client: httpx.Client, store: Store) -> None:  # noqa: F811
    agent = enroll(client, store)
    ahead = agent.report([full_device()], created_at=datetime.now(UTC) + timedelta(seconds=400))
    assert_error(post_report(client, agent, ahead), 400, 2004)
    # an old report from the outbox (after an outage) is delivered
    created = datetime.now(UTC) - timedelta(days=3)
    dev = dataclasses.replace(full_device(), polled_at=created - timedelta(seconds=30))
    old = agent.report([dev], created_at=created)
    assert post_report(client, agent, old).status_code == 200
    # MS-OWN-4: a snapshot polled after its report's createdAt plus the skew window is 3001
    late = dataclasses.replace(full_device("sn:hp:late"), polled_at=created + timedelta(hours=1))
    assert_error(post_report(client, agent, agent.report([late], created_at=created)), 422, 3001)


def test_document_refusals(client: httpx.Client, store: Store) -> None:  # noqa: F811
    agent = enroll(client, store)
    raw = agent.report([full_device()])
    assert_error(post_report(client, agent, raw, **{"Content-Type": "text/plain"}), 415, 1005)
    assert_error(post_report(client, agent, raw, **{"Content-Encoding": "br"}), 415, 1010)
    assert_error(
        client.post(
            "/v1/reports",
            content=b"\x1f\x8b\x08\x00garbage",
            headers={**agent.headers(raw), "Content-Encoding": "gzip"},
        ),
        415,
        1010,
    )
    hostile = raw.replace(
        b"<Report ", b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<Report ', 1
    )
    assert_error(post_report(client, agent, hostile), 400, 1002)
    assert_error(post_report(client, agent, b"<Report xmlns='urn:metersync:v1'>"), 400, 1001)
    invalid = raw.replace(b"<sequence>1</sequence>", b"<sequence>-1</sequence>")
    assert_error(post_report(client, agent, invalid), 400, 1008)
    twice = agent.report([full_device(), full_device()])
    assert_error(post_report(client, agent, twice), 422, 3001)
    assert store.count("reports") == 0


def test_size_limits_and_gzip_bomb(client: httpx.Client, store: Store) -> None:  # noqa: F811
    agent = enroll(client, store)
    limit = 16 * 1024 * 1024
    big = b"<" + b" " * limit
    assert_error(post_report(client, agent, big), 413, 1003)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        for _ in range(17):
            yield b" " * (1024 * 1024)

    r = client.post("/v1/reports", content=chunks(), headers=agent.headers(b""))
    assert_error(r, 413, 1003)
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < limit // 100
    r = client.post(
        "/v1/reports",
        content=bomb,
        headers={**agent.headers(bomb), "Content-Encoding": "gzip"},
    )
    assert_error(r, 413, 1003)
    assert store.count("reports") == 0


def test_meter_export_across_a_counter_reset(client: httpx.Client, store: Store) -> None:  # noqa: F811
    agent = enroll(client, store)
    base = NOW - timedelta(days=30)
    reads = [  # (days after base, total, flags)
        (0, 1000, {}),
        (5, 1500, {}),
        (10, 1800, {}),
        (15, 40, {"anomaly": "decreased", "previous": "1800"}),  # board swap
        (20, 340, {}),
        (25, 300, {}),  # an unflagged decrease: also a reset
        (28, 350, {}),
    ]
    for seq, (day, value, extra) in enumerate(reads, start=1):
        dev = Dev(
            "sn:hp:meter", polled_at=base + timedelta(days=day), counters=[("total", value, extra)]
        )
        raw = agent.report([dev], sequence=seq)
        assert post_report(client, agent, raw).status_code == 200
    period = {
        "from": (base + timedelta(days=2)).isoformat(),
        "to": (base + timedelta(days=29)).isoformat(),
    }
    export = client.get("/api/v1/meters", params=period).json()
    (line,) = export["lines"]
    assert line["start"]["value"] == 1000 and line["end"]["value"] == 350
    assert line["usage"] == (1500 - 1000) + (1800 - 1500) + (340 - 40) + (350 - 300)
    assert [(z["before"], z["after"], z["flagged"]) for z in line["resets"]] == [
        (1800, 40, True),
        (340, 300, False),
    ]
    assert not line["stale"] and not line["startInPeriod"]
    # reads every five days: the nearest read is 2 days from `from` and 1 day from `to`
    assert (line["startGapSeconds"], line["endGapSeconds"]) == (2 * 86400, 86400)
    assert not line["complete"]
    # two consecutive periods add up to the whole: nothing billed twice
    mid = (base + timedelta(days=17)).isoformat()
    a = client.get("/api/v1/meters", params={"from": period["from"], "to": mid}).json()["lines"][0]
    b = client.get("/api/v1/meters", params={"from": mid, "to": period["to"]}).json()["lines"][0]
    assert a["usage"] + b["usage"] == line["usage"] and a["usage"] >= 0 and b["usage"] >= 0
    assert a["end"] == b["start"]
    history = client.get(key_url("sn:hp:meter", "/counters"), params={"kind": "total"}).json()
    assert [c["value"] for c in history["items"]] == [v for _, v, _ in reads]


def test_operator_api_needs_an_operator_token(server: Server, store: Store) -> None:  # noqa: F811
    """MS-HTTP-18: no token, a wrong scheme, an enrollment token, a revoked token: 401."""
    enrollment_token = new_token(store)
    token = ingest.new_token()
    store.add_operator_token(ingest.hash_token(token), "billing", ingest.utcnow())
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for headers in (
            {},
            {"Authorization": f"Basic {token}"},
            {"Authorization": f"Bearer {enrollment_token}"},
            {"Authorization": "Bearer " + "x" * 600},
        ):
            r = c.get("/api/v1/devices", headers=headers)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
            assert r.json()["status"] == 401
        ok = {"Authorization": f"Bearer {token}"}
        assert c.get("/api/v1/channels", headers=ok).status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/openapi.yaml").status_code == 200
        assert store.revoke_operator_tokens("billing", ingest.utcnow()) == 1
        assert c.get("/api/v1/devices", headers=ok).status_code == 401


def test_meter_export_refuses_a_reversed_period(client: httpx.Client) -> None:
    t = NOW.isoformat()
    r = client.get("/api/v1/meters", params={"from": t, "to": t})
    assert r.status_code == 400 and "after from" in r.json()["detail"]


def test_rate_limit_is_per_agent_and_address(store: Store) -> None:  # noqa: F811
    """MS-LIM-5: beyond the limit 429 + 4001 + Retry-After; a client at another address that
    names the same agent (unverified at that point) does not spend that agent's budget."""
    with Server(store, rate_limit=60) as server:
        elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
        with (
            httpx.Client(base_url=server.url, timeout=30) as client,
            httpx.Client(base_url=server.url, timeout=30, transport=elsewhere) as other,
        ):
            agent = enroll(client, store)
            raw = agent.report([])
            posing = TestAgent(agent.agent_id).headers(raw)  # same id, another key
            poser = [other.post("/v1/reports", content=raw, headers=posing) for _ in range(80)]
            assert 429 in {r.status_code for r in poser}  # limited at its own address
            answers = [post_report(client, agent, raw) for _ in range(59)]
            assert {r.status_code for r in answers} == {200}  # the enrollment took one of 60
            for _ in range(100):  # the bucket refills at 1/s while we post
                r = post_report(client, agent, raw)
                if r.status_code != 200:
                    break
            assert_error(r, 429, 4001)
            assert int(r.headers["Retry-After"]) >= 1


def test_rate_limit_cannot_be_dodged_by_rotating_names(store: Store) -> None:  # noqa: F811
    """Issue 9, case 6: a header naming an agent twice is 2001 (MS-SEC-19), and names the
    agent does not verify as do not open fresh buckets: the limit keys on the verified agent."""
    with Server(store, rate_limit=60) as server, httpx.Client(base_url=server.url) as client:
        agent = enroll(client, store)
        raw = agent.report([])
        own = agent.headers(raw)
        dup = {**own, signing.HEADER: f'agent="{uuid.uuid4()}", ' + own[signing.HEADER]}
        assert_error(client.post("/v1/reports", content=raw, headers=dup), 401, 2001)
        codes = []
        for _ in range(100):
            rotated = f'agent="{uuid.uuid4()}", ' + own[signing.HEADER]
            r = client.post("/v1/reports", content=raw, headers={**own, signing.HEADER: rotated})
            codes.append(r.status_code)
        honest = [post_report(client, agent, raw).status_code for _ in range(70)]
        assert 401 in codes and 200 not in codes  # never accepted
        assert 429 in honest  # its own budget was not escaped


def test_slow_bodies_from_one_address_leave_room_for_others(store: Store) -> None:  # noqa: F811
    """Issue 9, case 4 (MS-LIM-8): never-ending bodies from one address fill at most its share
    of the requests in progress; an agent at another address is still served."""
    import socket

    with Server(store, max_in_flight=16) as server:
        host, port = server.url.split("//")[1].rsplit(":", 1)
        held = []
        try:
            for _ in range(5):  # 16 // 4 = 4 slots for this address; the rest is refused
                s = socket.create_connection((host, int(port)), timeout=10)
                s.sendall(
                    b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/"
                    b"vnd.metersync+xml\r\nContent-Length: 100000\r\n\r\n<"
                )
                held.append(s)
            time.sleep(0.5)
            with httpx.Client(base_url=server.url, timeout=30) as client:
                r = client.post(
                    "/v1/reports", content=b"<x/>", headers={"Content-Type": "text/xml"}
                )
                assert_error(r, 429, 4001)  # this address is at its share
            elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
            with httpx.Client(base_url=server.url, timeout=30, transport=elsewhere) as other:
                agent = enroll(other, store)
                assert post_report(other, agent, agent.report([])).status_code == 200
        finally:
            for s in held:
                s.close()


def _assert_locked_out(client: httpx.Client, agent: TestAgent, raw: bytes) -> None:
    """While the database is locked: ingest answers 4002 with Retry-After within a few lock
    timeouts (not after the lock is gone), and the /healthz lock probe says 503."""
    from metersync_manager import store as store_module

    t0 = time.monotonic()
    r = post_report(client, agent, raw)
    waited = time.monotonic() - t0
    assert_error(r, 503, 4002)
    assert int(r.headers["Retry-After"]) >= 1
    assert waited < store_module.LOCK_TIMEOUT_MS / 1000 * 3
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"


@pytest.mark.parametrize("table", ["reports", "readings", "devices"])
def test_a_locked_database_answers_4002_within_seconds(table: str) -> None:
    """Issue 9, case 8: a table ingest writes, locked on PostgreSQL from a second connection;
    ingest answers 4002 with Retry-After within the lock timeout (not after the lock is gone),
    /healthz says 503, and everything works again once the lock is released."""
    import psycopg

    with pg_schema() as url:
        s = Store(url)
        s.migrate()
        schema = url.rsplit("%3D", 1)[1]
        try:
            with Server(s) as server, httpx.Client(base_url=server.url, timeout=60) as client:
                agent = enroll(client, s)
                raw = agent.report([Dev("sn:hp:locked", polled_at=NOW)])
                conninfo = url.split("?")[0].replace("postgresql+psycopg://", "postgresql://")
                with psycopg.connect(conninfo) as locker:
                    locker.execute(f'LOCK TABLE "{schema}".{table} IN ACCESS EXCLUSIVE MODE')
                    _assert_locked_out(client, agent, raw)
                    locker.rollback()
                assert post_report(client, agent, raw).status_code == 200
                assert client.get("/healthz").status_code == 200
        finally:
            s.close()


def test_a_locked_sqlite_database_answers_4002_and_healthz_503(tmp_path: Path) -> None:
    """Issue 9, case 8: an SQLite file locked by another process's write transaction; ingest
    waits at most the busy timeout, then answers 4002 with Retry-After; /healthz says 503;
    both recover when the lock is gone."""

    db = tmp_path / "m.db"
    s = Store(f"sqlite:///{db}")
    s.migrate()
    try:
        with Server(s) as server, httpx.Client(base_url=server.url, timeout=60) as client:
            agent = enroll(client, s)
            raw = agent.report([Dev("sn:hp:sqlite-locked", polled_at=NOW)])
            locker = subprocess.Popen(
                [sys.executable, "-c", _HOLD_SQLITE_LOCK, str(db)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            try:
                assert locker.stdout is not None and locker.stdout.readline() == b"locked\n"
                _assert_locked_out(client, agent, raw)
            finally:
                locker.communicate(b"\n", timeout=30)
            assert post_report(client, agent, raw).status_code == 200
            assert client.get("/healthz").status_code == 200
    finally:
        s.close()


# Another process: take SQLite's write lock, say so, hold it until a line on stdin.
_HOLD_SQLITE_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


def test_device_key_with_a_slash(client: httpx.Client, store: Store) -> None:  # noqa: F811
    agent = enroll(client, store)
    key = "sys:1.3.6.1.4.1.11/ab?c#d%20"
    assert post_report(client, agent, agent.report([Dev(key, polled_at=NOW)])).status_code == 200
    assert client.get(key_url(key)).json()["deviceKey"] == key
    assert client.get(key_url(key, "/latest")).json()["deviceKey"] == key
    assert [e["ip"] for e in client.get(key_url(key, "/ips")).json()["items"]] == ["192.0.2.10"]
    trap = "sn:hp:x/latest"  # issue 9, case 9: the key, not the /latest of "sn:hp:x"
    assert post_report(client, agent, agent.report([Dev(trap, polled_at=NOW)])).status_code == 200
    assert client.get(key_url(trap)).json()["deviceKey"] == trap
    assert client.get(key_url(trap, "/latest")).json()["deviceKey"] == trap
    assert client.get(key_url("sn:hp:x", "/latest")).status_code == 404


# --- the command line -----------------------------------------------------------------------


def test_cli_serve_and_token_create(tmp_path: Path) -> None:
    env = {**os.environ, "METERSYNC_HOME": str(tmp_path / "home")}
    cli = [sys.executable, "-m", "metersync.cli", "manager"]

    def printed(*args: str) -> str:
        done = subprocess.run([*cli, *args], env=env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    token = printed("token", "create", "--expires", "10m")
    assert (tmp_path / "home" / "manager" / "manager.db").exists()
    port = free_port()
    proc = subprocess.Popen(
        [*cli, "serve", "--bind", f"127.0.0.1:{port}"], env=env, stderr=subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
            time.sleep(0.1)
        agent = TestAgent()
        with httpx.Client(base_url=url) as c:
            body = agent.enrollment(token)
            r = c.post("/v1/enroll", content=body, headers=agent.headers(body))
            assert parse_xml(r.content).status.value == "accepted"
            raw = agent.report([Dev("sn:hp:cli")])
            assert parse_xml(post_report(c, agent, raw).content).status.value == "accepted"
            assert c.get("/api/v1/devices").status_code == 401
            api = {"Authorization": f"Bearer {printed('api-token', 'create', '--name', 'billing')}"}
            items = c.get("/api/v1/devices", headers=api).json()["items"]
            assert items[0]["deviceKey"] == "sn:hp:cli"
            revoke = [*cli, "api-token", "revoke", "--name", "billing"]
            assert subprocess.run(revoke, env=env, capture_output=True).returncode == 0
            assert c.get("/api/v1/devices", headers=api).status_code == 401
            assert subprocess.run(revoke, env=env, capture_output=True).returncode == 1
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
