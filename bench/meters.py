"""The meter export at fleet size: time and peak memory, SQLite and PostgreSQL.

    python bench/meters.py [--devices 20000] [--days 30] [--series 2] [--postgres URL]

Fills a fresh database directly (bulk inserts of devices, assignments, counter series and hourly
counter reads, as ingest would have left them — the ingest path has its own bench), then runs
the whole export of the month in a child process (`Store.meter_lines`, the code behind
`GET /api/v1/meters` and `metersync manager meters export`) and prints its wall time, the time
per device, the child's peak RSS, and the ratio to a baseline measured in the same child: one
scan of the counter_series table (a floor for any export that visits every series).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from metersync_manager import billing
from metersync_manager import models as m
from metersync_manager.store import Store, sqlite_url

START = datetime(2026, 10, 1)
KINDS = ("total", "mono")


def fill(store: Store, devices: int, days: int, series: int) -> int:
    """Devices with `series` counters each, read hourly; returns the reads written."""
    hours = days * 24 + 2
    reads = 0
    with store.engine.begin() as conn:
        conn.execute(
            m.agents.insert(),
            [{"agent_id": "00000000-0000-4000-8000-000000000001", "public_key": "x",
              "algorithm": "ed25519", "software_vendor": "b", "software_product": "b",
              "software_version": "1", "enrolled_at": START, "revoked": False,
              "customer_id": "default"}],
        )  # fmt: skip
    chunk = 500
    for lo in range(0, devices, chunk):
        keys = [f"sn:bench:{i:06d}" for i in range(lo, min(devices, lo + chunk))]
        with store.engine.begin() as conn:
            conn.execute(
                m.devices.insert(),
                [{"device_key": k, "vendor": "Bench", "model": "M1", "serial_number": k[9:],
                  "current_ip": "10.0.0.1", "first_seen": START, "last_seen": START,
                  "last_agent_id": "00000000-0000-4000-8000-000000000001",
                  "owner_agent_id": "00000000-0000-4000-8000-000000000001",
                  "customer_id": "default"} for k in keys],
            )  # fmt: skip
            conn.execute(
                m.assignments.insert(),
                [{"subject": "device", "subject_id": k, "customer_id": "default",
                  "valid_from": START - timedelta(days=1), "reason": "first-report"}
                 for k in keys],
            )  # fmt: skip
            rows = []
            for k in keys:
                for s in range(series):
                    rows.append(
                        {"device_key": k, "series_key": f"{s:040d}", "kind": KINDS[s % 2],
                         "unit": "impressions", "oid": f"1.3.6.1.2.1.43.10.2.1.4.1.{s + 1}",
                         "source": "standard", "first_polled_at": START,
                         "last_polled_at": START + timedelta(hours=hours - 1),
                         "last_value": billing.enc(hours * 10), "billed": billing.enc(hours * 10)}
                    )  # fmt: skip
            conn.execute(m.counter_series.insert(), rows)
            ids = (
                conn.execute(
                    select(m.counter_series.c.series_id).where(
                        m.counter_series.c.device_key.in_(keys)
                    )
                )
                .scalars()
                .all()
            )
            batch = []
            for sid in ids:
                for h in range(hours):
                    t = START + timedelta(hours=h)
                    batch.append({"series_id": sid, "polled_at": t, "value": billing.enc(h * 10),
                                  "billed": billing.enc(h * 10)})  # fmt: skip
            conn.execute(m.counter_reads.insert(), batch)
            reads += len(batch)
        print(f"\r  filled {min(devices, lo + chunk)}/{devices} devices, {reads:,} reads",
              end="", file=sys.stderr, flush=True)  # fmt: skip
    print(file=sys.stderr)
    return reads


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (getrusage's maxrss survives exec, so a child started
    by a large parent would report the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def export(url: str, days: int) -> None:
    """In the child: the baseline scan, then the export; one JSON line of figures."""
    store = Store(url)
    t0 = time.perf_counter()
    with store.engine.connect() as conn:
        n_series = sum(1 for _ in conn.execute(select(m.counter_series.c.series_id)))
    scan = time.perf_counter() - t0
    period = billing.Period(START + timedelta(hours=1), START + timedelta(days=days, hours=1))
    t0 = time.perf_counter()
    lines = usage = 0
    for page in store.meter_lines(period):
        lines += len(page)
        usage += sum(x["usage"] for x in page)
    took = time.perf_counter() - t0
    peak = peak_rss_mb()
    print(json.dumps({"series": n_series, "scan": scan, "export": took, "lines": lines,
                      "usage": usage, "peak_mb": peak}))  # fmt: skip
    store.close()


def measure(label: str, url: str, args: argparse.Namespace) -> None:
    store = Store(url)
    store.migrate()
    t0 = time.perf_counter()
    reads = fill(store, args.devices, args.days, args.series)
    fill_s = time.perf_counter() - t0
    with store.engine.begin() as conn:
        # Planner statistics, as a database in service has them (autovacuum): without them
        # PostgreSQL joins the boundary reads by scanning counter_reads (64 s instead of 10 s).
        conn.exec_driver_sql("ANALYZE")
        n = conn.execute(select(func.count()).select_from(m.devices)).scalar_one()
    store.close()
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, "--days", str(args.days)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    r = json.loads(out.strip().splitlines()[-1])
    want = args.devices * args.series * (args.days * 24) * 10
    print(f"{label}: {n} devices, {r['series']} series, {reads:,} reads (filled in {fill_s:.0f} s)")
    print(f"  export {r['export']:.1f} s ({r['export'] / n * 1e3:.2f} ms per device), "
          f"{r['lines']} lines, peak RSS {r['peak_mb']:.0f} MB")  # fmt: skip
    print(
        f"  baseline scan of every series {r['scan']:.2f} s: "
        f"export = {r['export'] / r['scan']:.1f}x"
    )
    print(
        f"  billed {r['usage']:,} pages; expected {want:,}: "
        + ("equal" if r["usage"] == want else "MISMATCH")
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--devices", type=int, default=20000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--series", type=int, default=2, help="counters per device")
    p.add_argument("--postgres", help="a PostgreSQL URL (a fresh schema is expected)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        export(args.child, args.days)
        return
    with tempfile.TemporaryDirectory() as tmp:
        measure("SQLite", sqlite_url(Path(tmp)), args)
    if args.postgres:
        measure("PostgreSQL", args.postgres, args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
