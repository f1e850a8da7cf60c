"""Storage benchmark: bytes stored per device snapshot, per table and index, SQLite and PostgreSQL.

    .venv/bin/python bench/storage.py [--devices 5000] [--hours 48] [--per-report 50]
                                      [--backend sqlite --backend postgresql] [--quick]

Stores N devices × M hourly reads through the real store (`Store.store_report`, the same rows
ingest writes) and prints, per table and index, the bytes it occupies divided by the snapshots
stored, next to the XML received per snapshot. The devices are the spec's example MFP; each
hour a device prints with probability 0.35 (its total, mono or colour and duplex counters rise)
and its black toner falls by 1 % per 150 pages, so most reads repeat the previous values, as
printers read hourly do. SQLite: the `dbstat` virtual table (pages in use, of the whole file);
PostgreSQL: `pg_relation_size` of each table (with its TOAST) and index of a fresh schema,
after VACUUM. `--quick`: 500 devices × 24 hours. Never run by the tests.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

from metersync import xml_edge
from metersync_manager import models as m
from metersync_manager.extract import report_rows
from metersync_manager.store import Store, sqlite_url
from metersync_spec import EXAMPLES_DIR

sys.path.insert(0, str(Path(__file__).parent))
from ingest import pg_url  # noqa: E402

EXAMPLE = (EXAMPLES_DIR / "valid" / "report.xml").read_text()
DEVICE = re.search(r"<device .*</device>", EXAMPLE, re.S).group(0)  # type: ignore[union-attr]
HEAD, TAIL = EXAMPLE.split(DEVICE)
START = datetime(2026, 1, 5, tzinfo=UTC)


def ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class Printer:
    """One simulated MFP: counters and a black toner level that change when it prints."""

    def __init__(self, n: int, rng: random.Random) -> None:
        self.key = f"sn:hp:bench{n:05d}"
        self.ip = f"192.0.{2 + n // 250}.{n % 250 + 1}"
        self.rng = rng
        self.mono, self.colour, self.duplex, self.toner, self.spent = 31877, 16336, 9120, 90, 0

    def read(self, at: datetime) -> str:
        if self.rng.random() < 0.35:
            pages = self.rng.randint(1, 60)
            colour = self.rng.randint(0, pages // 3)
            self.mono += pages - colour
            self.colour += colour
            self.duplex += self.rng.randint(0, pages // 4)
            self.spent += pages
            while self.spent >= 150:
                self.spent -= 150
                self.toner = self.toner - 1 if self.toner > 5 else 95
        return (
            DEVICE.replace("sn:hp:cnb1r2s3t4", self.key)
            .replace("2026-11-28T08:15:00Z", ts(at))
            .replace(">48213<", f">{self.mono + self.colour}<")
            .replace(">31877<", f">{self.mono}<")
            .replace(">16336<", f">{self.colour}<")
            .replace(">9120<", f">{self.duplex}<")
            .replace('raw="64" meaning="exact"', f'raw="{self.toner}" meaning="exact"')
            .replace("<percent>64</percent>", f"<percent>{self.toner}</percent>")
            .replace("192.0.2.17", self.ip)
        )


def add_agent(store: Store, agent_id: str) -> None:
    with store.writing() as conn:
        conn.execute(
            m.agents.insert().values(
                agent_id=agent_id,
                public_key="x" * 43,
                algorithm="ed25519",
                software_vendor="MeterSync",
                software_product="reference-agent",
                software_version="0.1.0",
                enrolled_at=START.replace(tzinfo=None),
                revoked=False,
                customer_id="default",
            )
        )


class Fleet:
    """The simulated printers, grouped into agents of `per_report` devices (one report each
    per hour)."""

    def __init__(self, store: Store, devices: int, per_report: int) -> None:
        rng = random.Random(17)
        printers = [Printer(n, rng) for n in range(devices)]
        self.groups = [printers[i : i + per_report] for i in range(0, devices, per_report)]
        self.agents = [str(uuid.uuid4()) for _ in self.groups]
        for agent_id in self.agents:
            add_agent(store, agent_id)
        self.store = store
        self.hour = 0

    def fill(self, hours: int) -> tuple[int, int]:
        """Store `hours` more hourly reads; (snapshots, XML bytes of their <device> elements)."""
        snapshots = xml_bytes = 0
        for _ in range(hours):
            at = START + timedelta(hours=self.hour)
            self.hour += 1
            for seq, (agent_id, group) in enumerate(zip(self.agents, self.groups, strict=True)):
                body = [p.read(at + timedelta(seconds=seq % 60)) for p in group]
                xml_bytes += sum(len(b.encode()) for b in body)
                snapshots += len(body)
                self._send(agent_id, at, body)
            print(f"  hour {self.hour}", end="\r", file=sys.stderr)
        return snapshots, xml_bytes

    def _send(self, agent_id: str, at: datetime, body: list[str]) -> None:
        head = (
            HEAD.replace("0b7e3f5a-8c21-4d9e-b6a3-2f4c1d8e9a70", agent_id)
            .replace("6f1c2a9e-3b7d-4c1e-9a4f-0d2b8e7c5a11", str(uuid.uuid4()))
            .replace("<sequence>42<", f"<sequence>{self.hour}<")
            .replace("2026-11-28T08:15:0", ts(at + timedelta(minutes=2))[:-2])
        )
        raw = (head + "".join(body) + TAIL).encode()
        rows = report_rows(xml_edge.parse_tree(raw))
        self.store.store_report(rows, uuid.uuid4().hex * 2, len(raw), at + timedelta(minutes=3))


def sizes_sqlite(store: Store) -> dict[str, int]:
    with store.reading() as conn:
        rows = conn.exec_driver_sql(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY name"
        ).all()
    return {name: int(n) for name, n in rows}


def sizes_pg(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("VACUUM ANALYZE")
        rows = conn.exec_driver_sql(
            "SELECT c.relname, pg_relation_size(c.oid) + coalesce(pg_relation_size("
            "nullif(c.reltoastrelid, 0)), 0) FROM pg_class c JOIN pg_namespace n ON "
            "n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i')"
        ).all()
    return {name: int(n) for name, n in rows}


def show(
    name: str, first: dict[str, int], last: dict[str, int], n: tuple[int, int], xml: int
) -> None:
    """Per relation: bytes at the end, and the growth per snapshot of the second half (the
    cost of one more snapshot, without what each device costs once)."""
    total, grown = sum(last.values()), sum(last.values()) - sum(first.values())
    print(f"\n{name}: {n[0] + n[1]} snapshots; growth measured over the last {n[1]}")
    print(f"  {'table or index':36} {'bytes':>12} {'B/snapshot':>11} {'growth B/snapshot':>18}")
    for rel, size in sorted(last.items(), key=lambda kv: -kv[1]):
        per, more = size / (n[0] + n[1]), (size - first.get(rel, 0)) / n[1]
        if size * 100 >= total or more >= 1:  # ≥ 1 % of the total, or growing
            print(f"  {rel:36} {size:>12,} {per:>11.1f} {more:>18.1f}")
    print(f"  {'TOTAL':36} {total:>12,} {total / (n[0] + n[1]):>11.1f} {grown / n[1]:>18.1f}")
    print(f"  {'XML received per snapshot':36} {'':>12} {xml / (n[0] + n[1]):>11.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=5000)
    p.add_argument("--hours", type=int, default=48)
    p.add_argument("--per-report", type=int, default=50)
    p.add_argument("--quick", action="store_true", help="500 devices × 24 hours")
    p.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    args = p.parse_args()
    if args.quick:
        args.devices, args.hours = 500, 24
    for backend in args.backend or ["sqlite", "postgresql"]:
        with TemporaryDirectory(prefix="ms-storage-") as tmp:
            drop = None
            if backend == "sqlite":
                url = sqlite_url(Path(tmp))
            else:
                found = pg_url()
                if found is None:
                    sys.exit("no PostgreSQL server on 127.0.0.1:5432 (database test)")
                url, base, schema = found
                drop = (base, schema)
            store = Store(url)
            try:
                store.migrate()
                sizes = sizes_sqlite if backend == "sqlite" else sizes_pg
                fleet = Fleet(store, args.devices, args.per_report)
                began = time.perf_counter()
                n1, x1 = fleet.fill(args.hours // 2)
                first = sizes(store)
                n2, x2 = fleet.fill(args.hours - args.hours // 2)
                secs = time.perf_counter() - began
                show(backend, first, sizes(store), (n1, n2), x1 + x2)
                print(f"  stored {(n1 + n2) / secs:.0f} snapshots/s")
            finally:
                store.close()
                if drop is not None:
                    import psycopg

                    with psycopg.connect(drop[0], autocommit=True) as conn:
                        conn.execute(f'DROP SCHEMA "{drop[1]}" CASCADE')


if __name__ == "__main__":
    main()
