"""Console benchmark: the fleet page's first byte over a large fleet, SQLite and PostgreSQL.

    .venv/bin/python bench/console.py [--devices 100000] [--readings 10000000] [--agents 200]
                                      [--requests 200] [--backend sqlite --backend postgresql]

Fills a fresh database directly with bulk inserts (not through ingest, so it fits in time):
agents, reports (one per agent and poll cycle, with cycle starts, so poll intervals and the
silent count are real), devices with their device_state rows (supplies, some low), and
`--readings` rows in `readings`, generated inside the database. Then starts `metersync
manager serve` on it, signs in a console user and times GET /console/ (time to the first
byte of the body) for: the default page, a low-supply filter, searches (serial, IP, name, no
match), a sort by IP, the second page by cursor, the silent filter, the alert inbox and the
agents page; GET /healthz in the same run is the baseline. `--silent 100` makes every device
silent (the silent filter's other plan). Forecasts (four supplies per
device) and alerts are filled as the evaluator leaves them; its cursor starts after the
filled readings, as the migration to schema 9 sets it. The manager serves with --no-fleet
(`--fleet`: with the evaluator on; its rounds over a fleet of this size keep a core busy for
minutes, which measures the evaluator, not the pages). Prints p50/p95 (ms), the
ratio to the baseline, and counts every failed request. Never run by the tests.
PostgreSQL: 127.0.0.1:5432, database `test`, a fresh schema dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
from sqlalchemy import text

from metersync_manager import models as m
from metersync_manager import search_terms
from metersync_manager.store import Store, sqlite_url

CLI = [sys.executable, "-m", "metersync.cli"]
BASE = datetime(2026, 9, 1)  # run() moves it: the newest poll cycle starts as the fill does
INTERVAL = 3600  # seconds between poll cycles: silent after 3 h (MS-DEV-26), beyond the run
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def report_id(agent: int, cycle: int) -> str:
    return f"{agent:08d}-{cycle:04d}-4000-8000-000000000000"


def supplies(rng: random.Random) -> tuple[str, int]:
    out = []
    for colour in ("black", "cyan", "magenta", "yellow"):
        p = rng.choice([None, *range(0, 101)]) if rng.random() < 0.97 else None
        meaning = "exact" if p is not None else rng.choice(["someRemaining", "unknown"])
        low = p is not None and p <= 10
        out.append(
            {
                "name": f"{colour.title()} toner",
                "colour": colour,
                "meaning": meaning,
                "percent": p,
                "level": p if p is not None else -3,
                "max": 100,
                "receptacle": False,
                "low": low,
            }
        )
    return json.dumps(out, separators=(",", ":")), sum(1 for x in out if x["low"])


def fill(
    store: Store, devices: int, readings: int, agents: int, customers: int, silent: float = 2.0
) -> None:
    """`silent`: the percentage of devices whose newest complete read is a day old."""
    every = max(1, round(100 / silent)) if silent > 0 else 0
    rng = random.Random(7)
    cycles = max(2, -(-readings // devices))  # two cycle starts at least: a poll interval
    now = BASE + timedelta(seconds=INTERVAL * cycles)
    t0 = time.monotonic()
    with store.writing() as conn:
        conn.execute(
            m.customers.insert(),
            [
                {"customer_id": f"c{i:03d}", "name": f"Customer {i}", "created_at": BASE}
                for i in range(customers)
            ],
        )
        conn.execute(
            m.agents.insert(),
            [
                {
                    "agent_id": agent_id(i),
                    "public_key": "x" * 44,
                    "algorithm": "ed25519",
                    "hostname": f"agent-{i}",
                    "capabilities": "http channel-websocket",
                    "software_vendor": "MeterSync",
                    "software_product": "reference-agent",
                    "software_version": "0.1.0",
                    "enrolled_at": BASE,
                    "last_seen_at": now,
                    "queue_depth": 0 if i % 50 else 12,
                    "dropped_reports": 0,
                    "licence_state": "valid",
                    "revoked": False,
                    "customer_id": f"c{i % customers:03d}",
                }
                for i in range(agents)
            ],
        )
        conn.execute(
            m.reports.insert(),
            [
                {
                    "report_id": report_id(a, c),
                    "agent_id": agent_id(a),
                    "sequence": c + 1,
                    "created_at": BASE + timedelta(seconds=INTERVAL * c + 60),
                    "received_at": BASE + timedelta(seconds=INTERVAL * c + 61),
                    "sha256": "0" * 64,
                    "size": 1000,
                    "devices": devices // agents,
                    "cycle_started_at": BASE + timedelta(seconds=INTERVAL * c),
                }
                for a in range(agents)
                for c in range(cycles)
            ],
        )
    vendors = ["HP", "Brother", "Kyocera", "Ricoh", "Canon", "Xerox", "Lexmark", "Konica"]
    dev_rows, state_rows = [], []
    for i in range(devices):
        a = i % agents
        # `silent` % of the devices stopped answering a day ago
        last = now - timedelta(days=1) if every and i % every == 7 % every else now
        dev_rows.append(
            {
                "device_key": f"sn:bench:{i:07d}",
                "vendor": vendors[i % len(vendors)],
                "model": f"Model {i % 37}",
                "serial_number": f"SN{i:07d}",
                "sys_name": f"printer-{i}",
                "current_ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                "first_seen": BASE,
                "last_seen": last,
                "last_agent_id": agent_id(a),
                "last_complete_at": last,
                "owner_agent_id": agent_id(a),
                "customer_id": f"c{a % customers:03d}",
                "last_polled_at": last,
            }
        )
        js, low = supplies(rng)
        state_rows.append(
            {
                "device_key": f"sn:bench:{i:07d}",
                "reading_id": i + 1,
                "polled_at": last,
                "device_status": "running" if i % 13 else "warning",
                "printer_status": "idle",
                "error_flags": None if i % 13 else "lowToner",
                "supplies": js,
                "low_supplies": low,
                "alerts": 0 if i % 17 else 1,
            }
        )
    for start in range(0, devices, 20_000):
        with store.writing() as conn:
            conn.execute(m.devices.insert(), dev_rows[start : start + 20_000])
            conn.execute(m.device_state.insert(), state_rows[start : start + 20_000])
    with store.writing() as conn:
        search_terms.backfill(conn)
    _fill_intelligence(store, dev_rows, rng, now)
    print(f"  {devices} devices, {agents} agents, {agents * cycles} reports "
          f"in {time.monotonic() - t0:.0f} s", flush=True)  # fmt: skip
    _fill_readings(store, devices, readings, agents)


def _fill_intelligence(
    store: Store, dev_rows: list[dict[str, Any]], rng: random.Random, now: datetime
) -> None:
    """A forecast for every supply (a tenth without one) and open, acknowledged and resolved
    alerts on one device in 17, as the evaluator would have left them."""
    forecasts, alerts = [], []
    for i, dev in enumerate(dev_rows):
        for idx, colour in enumerate(("black", "cyan", "magenta", "yellow"), 1):
            days = None if rng.random() < 0.1 else round(rng.uniform(0, 200), 1)
            fc = {"daysToEmpty": days, "low": days and days * 0.8, "high": days and days * 1.2,
                  "confidence": 0.6, "estimatedLevel": 40, "method": "pages",
                  "reason": None if days is not None else "not enough history"}  # fmt: skip
            forecasts.append(
                {
                    "device_key": dev["device_key"],
                    "idx": idx,
                    "customer_id": dev["customer_id"],
                    "computed_at": now,
                    "description": f"{colour.title()} toner",
                    "colour": colour,
                    "level": 40,
                    "forecast": json.dumps(fc),
                    "lives": "[]",
                    "days_to_empty": days,
                }
            )
        if i % 17 == 0:
            state = ("open", "acknowledged", "resolved")[i // 17 % 3]
            alerts.append(
                {
                    "customer_id": dev["customer_id"],
                    "rule": "printer-error",
                    "subject_kind": "device",
                    "subject_id": dev["device_key"],
                    "key": "jammed",
                    "open_key": None if state == "resolved" else f"pe|{dev['device_key']}",
                    "state": state,
                    "severity": ("critical", "warning")[i % 2],
                    "title": "Paper jam",
                    "evidence": "{}",
                    "opened_at": now - timedelta(hours=i % 500),
                    "updated_at": now,
                    "last_true_at": now,
                    "resolved_at": now if state == "resolved" else None,
                }
            )
    with store.writing() as conn:
        for start in range(0, len(forecasts), 20_000):
            conn.execute(m.supply_forecasts.insert(), forecasts[start : start + 20_000])
        conn.execute(m.fleet_alerts.insert(), alerts)


def _fill_readings(store: Store, devices: int, readings: int, agents: int) -> None:
    """readings rows generated inside the database, a million per transaction."""
    t0 = time.monotonic()
    pg = store.dialect == "postgresql"
    chunk = 1_000_000
    for lo in range(0, readings, chunk):
        hi = min(readings, lo + chunk) - 1
        if pg:
            sql = f"""
            INSERT INTO readings (report_id, device_key, agent_id, polled_at, received_at, ip,
                                  complete, disposition)
            SELECT lpad(((i % {devices}) % {agents})::text, 8, '0') || '-' ||
                   lpad((i / {devices})::text, 4, '0') || '-4000-8000-000000000000',
                   'sn:bench:' || lpad((i % {devices})::text, 7, '0'),
                   '00000000-0000-4000-8000-' || lpad(((i % {devices}) % {agents})::text, 12, '0'),
                   TIMESTAMP '{BASE:%Y-%m-%d %H:%M:%S}' + make_interval(secs => (i / {devices})
                       * {INTERVAL} + (i % 60)),
                   TIMESTAMP '{BASE:%Y-%m-%d %H:%M:%S}' + make_interval(secs => (i / {devices})
                       * {INTERVAL} + 61),
                   '10.0.0.1', true, 'applied'
            FROM generate_series({lo}::bigint, {hi}::bigint) AS g(i)"""
        else:
            sql = f"""
            WITH RECURSIVE n(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM n WHERE i < {hi})
            INSERT INTO readings (report_id, device_key, agent_id, polled_at, received_at, ip,
                                  complete, disposition)
            SELECT printf('%08d-%04d-4000-8000-000000000000', (i % {devices}) % {agents},
                          i / {devices}),
                   printf('sn:bench:%07d', i % {devices}),
                   printf('00000000-0000-4000-8000-%012d', (i % {devices}) % {agents}),
                   datetime('{BASE:%Y-%m-%d %H:%M:%S}',
                            '+' || ((i / {devices}) * {INTERVAL} + (i % 60)) || ' seconds'),
                   datetime('{BASE:%Y-%m-%d %H:%M:%S}',
                            '+' || ((i / {devices}) * {INTERVAL} + 61) || ' seconds'),
                   '10.0.0.1', 1, 'applied'
            FROM n"""
        with store.writing() as conn:
            conn.execute(text(sql))
        done = hi + 1
        rate = done / max(time.monotonic() - t0, 1e-9)
        print(f"  readings {done:>10,} ({rate:,.0f}/s)", flush=True)
    with store.engine.begin() as conn:  # the evaluator starts after the filled readings
        conn.execute(text("UPDATE fleet_cursor SET position = (SELECT max(id) FROM readings)"))
        conn.execute(text("ANALYZE"))


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def ttfb(client: httpx.Client, path: str) -> tuple[float, bool]:
    t = time.perf_counter()
    with client.stream("GET", path) as r:
        took = None
        for _ in r.iter_raw():
            took = took or time.perf_counter() - t  # the first chunk of the body
        return took or time.perf_counter() - t, r.status_code == 200


PASSWORD = "bench-password-123456"


def create_user(db_args: list[str]) -> None:
    """Before the manager serves: its first fleet round holds the write lock for a while."""
    proc = subprocess.run(
        [*CLI, "manager", "user", "create", "bench", "--password-stdin", *db_args],
        input=PASSWORD + "\n",
        text=True,
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr


def settle(pid: int, limit: float = 180.0) -> None:
    """Wait until the serving manager is idle (its first fleet round over the filled fleet
    done: under 5 % of a core over a second), so the figures are the pages' own."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        before = cpu()
        time.sleep(1.0)
        if cpu() - before < 0.05:
            break
    print(f"  manager idle after {time.monotonic() - t0:.0f} s", flush=True)


def measure(url: str, requests: int) -> None:
    pw = PASSWORD
    with httpx.Client(base_url=url, timeout=60) as c:
        page = c.get("/console/login")
        r = c.post(
            "/console/login", data={"username": "bench", "password": pw, "csrf": _csrf(page.text)}
        )
        assert r.status_code == 302, r.text
        cold, ok = ttfb(c, "/console/")
        print(f"  first fleet page (poll intervals not cached yet): {cold * 1000:.0f} ms")
        second = c.get("/console/").text
        cursor = re.search(r'href="\?cursor=([^"&]+)"', second)
        cases = {
            "healthz (baseline)": "/healthz",
            "fleet": "/console/",
            "fleet low supply": "/console/?low=1",
            "fleet search 'SN00123'": "/console/?q=SN00123",
            "fleet sort by IP": "/console/?sort=ip",
            "fleet page 2": f"/console/?cursor={cursor.group(1) if cursor else ''}",
            "fleet silent": "/console/?silent=1",
            "fleet search IP '10.1.2'": "/console/?q=10.1.2",
            "fleet search name": "/console/?q=printer-4242",
            "fleet search no match": "/console/?q=zzzz",
            "alerts inbox": "/console/alerts",
            "alerts acknowledged": "/console/alerts?state=acknowledged&severity=critical",
            "agents": "/console/agents",
        }
        base = None
        print(f"  {'page':<26} {'p50 ms':>8} {'p95 ms':>8} {'× base p50':>11} {'failed':>7}")
        for name, path in cases.items():
            times, failed = [], 0
            for _ in range(requests):
                took, ok = ttfb(c, path)
                times.append(took)
                failed += not ok
            times.sort()
            p50 = statistics.median(times)
            p95 = times[int(0.95 * (len(times) - 1))]
            base = base or p50
            print(f"  {name:<26} {p50 * 1000:8.1f} {p95 * 1000:8.1f} {p50 / base:11.1f} "
                  f"{failed:7d}", flush=True)  # fmt: skip


def run(backend: str, args: argparse.Namespace) -> None:
    global BASE
    cycles = max(2, -(-args.readings // args.devices))
    start = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    BASE = start - timedelta(seconds=INTERVAL * cycles)
    print(f"{backend}: {args.devices:,} devices, {args.readings:,} readings", flush=True)
    with TemporaryDirectory() as tmp:
        schema = None
        if backend == "sqlite":
            url = sqlite_url(Path(tmp))
            db_args = ["--data-dir", tmp]
        else:
            import psycopg

            schema = f"bench_console_{int(time.time())}"
            with psycopg.connect(PG_BASE.replace("+psycopg", ""), autocommit=True) as pg:
                pg.execute(f"CREATE SCHEMA {schema}")
            url = f"{PG_BASE}?options=-csearch_path%3D{schema}"
            db_args = ["--database", url]
        store = Store(url)
        try:
            store.migrate()
            fill(store, args.devices, args.readings, args.agents, args.customers, args.silent)
        finally:
            store.close()
        create_user(db_args)
        port = free_port()
        server = subprocess.Popen(
            [*CLI, "manager", "serve", "--bind", f"127.0.0.1:{port}", *db_args]
            + ([] if args.fleet else ["--no-fleet"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            settle(server.pid)
            measure(f"http://127.0.0.1:{port}", args.requests)
        finally:
            server.terminate()
            server.wait(60)
            if schema:
                import psycopg

                with psycopg.connect(PG_BASE.replace("+psycopg", ""), autocommit=True) as pg:
                    pg.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--readings", type=int, default=10_000_000)
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--customers", type=int, default=20)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    p.add_argument("--silent", type=float, default=2.0, help="percent of devices silent")
    p.add_argument(
        "--fleet",
        action="store_true",
        help="serve with the fleet evaluator on (its rounds over the whole fleet share the CPU)",
    )
    args = p.parse_args()
    for backend in args.backend or ["sqlite", "postgresql"]:
        run(backend, args)


if __name__ == "__main__":
    main()
