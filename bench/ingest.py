"""Ingest benchmark: signed 10-device reports vs a no-op POST, same Hypercorn server, one worker.

    /work/venv/bin/python bench/ingest.py [--seconds 15] [--connections 16] [--devices 10]
                                          [--backend sqlite --backend postgresql]

For each backend, starts `metersync manager serve --bench-noop` (one process, one worker) on
127.0.0.1, enrolls an agent, then drives two phases with the same client: POST /bench/noop
(reads the body, answers empty) and POST /v1/reports (verify, validate, store, receipt).
Prints reports/s, devices/s, the ratio to the no-op, p50/p99 latency, and checks that every
accepted report was stored. The client is a minimal keep-alive HTTP/1.1 client on asyncio
streams (cheaper than httpx, so the server, not the client, is measured); it runs on the other
core. PostgreSQL: 127.0.0.1:5432, database `test`, a fresh schema dropped afterwards.
Never run by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx

from metersync import signing
from metersync_spec import EXAMPLES_DIR

MEDIA = "application/vnd.metersync+xml"
EXAMPLE = (EXAMPLES_DIR / "valid" / "report.xml").read_text()
DEVICE = re.search(r"<device .*</device>", EXAMPLE, re.S).group(0)  # type: ignore[union-attr]
HEAD, TAIL = EXAMPLE.split(DEVICE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class Reports:
    """Distinct, signed reports of the example device, with its counters rising."""

    def __init__(self, agent_id: str, devices: int, fleet: int = 1000) -> None:
        self.key = signing.generate_key()
        self.agent_id = agent_id
        self.devices = devices
        self.fleet = fleet
        self.n = 0
        self.base = datetime.now(UTC) - timedelta(days=1)
        self.head = HEAD.replace("0b7e3f5a-8c21-4d9e-b6a3-2f4c1d8e9a70", agent_id)

    def next(self) -> tuple[bytes, str]:
        self.n += 1
        polled = ts(self.base + timedelta(seconds=self.n))
        devs = []
        for j in range(self.devices):
            d = (self.n * self.devices + j) % self.fleet
            devs.append(
                DEVICE.replace("sn:hp:cnb1r2s3t4", f"sn:hp:bench{d:05d}")
                .replace("2026-11-28T08:15:00Z", polled)
                .replace(">48213<", f">{48213 + self.n}<")
                .replace("192.0.2.17", f"192.0.2.{d % 250 + 1}")
            )
        head = self.head.replace("6f1c2a9e-3b7d-4c1e-9a4f-0d2b8e7c5a11", str(uuid.uuid4()))
        head = head.replace("2026-11-28T08:15:02Z", ts(datetime.now(UTC)))
        raw = (head + "".join(devs) + TAIL).encode()
        return raw, signing.sign(self.key, raw, self.agent_id)


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes, sig: str
) -> tuple[int, bool]:
    """POST one body; (status, whether the server closes the connection after this answer)."""
    writer.write(
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {MEDIA}\r\n"
            f"{signing.HEADER}: {sig}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    if m and int(m.group(1)):
        await reader.readexactly(int(m.group(1)))
    # Hypercorn closes a keep-alive connection after keep_alive_max_requests (1,000) answers.
    return status, bool(re.search(rb"(?i)\r\nconnection:\s*close", head))


async def drive(
    port: int, path: str, reports: Reports, seconds: float, connections: int
) -> tuple[int, int, list[float]]:
    """Run `connections` keep-alive clients for `seconds`; (ok, failed, latencies)."""
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    ok = failed = 0

    async def one() -> None:
        nonlocal ok, failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                body, sig = reports.next()
                t0 = time.perf_counter()
                status, closing = await _post(reader, writer, path, body, sig)
                latencies.append(time.perf_counter() - t0)
                if closing:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                if status == 200:
                    ok += 1
                else:
                    failed += 1
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return ok, failed, latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc), to measure cost under noisy neighbours."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pg_url() -> tuple[str, str, str] | None:
    try:
        import psycopg
    except ImportError:
        return None
    for user in ("postgres", "root"):
        try:
            with psycopg.connect(
                host="127.0.0.1", user=user, dbname="test", connect_timeout=3, autocommit=True
            ) as conn:
                schema = f"ms_bench_{uuid.uuid4().hex[:10]}"
                conn.execute(f'CREATE SCHEMA "{schema}"')
            base = f"postgresql://{user}@127.0.0.1:5432/test"
            url = (
                f"postgresql+psycopg://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
            )
            return url, base, schema
        except Exception:
            continue
    return None


def run_backend(name: str, url: str, args: argparse.Namespace) -> dict[str, float] | None:
    from metersync_manager import ingest
    from metersync_manager.store import Store

    store = Store(url)
    store.migrate()
    token = ingest.new_token()
    now = ingest.utcnow()
    store.add_token(ingest.hash_token(token), now + timedelta(hours=1), now)

    port = free_port()
    cmd = [sys.executable, "-m", "metersync.cli", "manager", "serve", "--bench-noop"]
    proc = subprocess.Popen(
        [*cmd, "--database", url, "--bind", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
            if time.monotonic() > deadline:
                raise RuntimeError("the manager did not start")
        agent_id = str(uuid.uuid4())
        reports = Reports(agent_id, args.devices)
        enrollment = _enrollment(agent_id, token, reports)
        r = httpx.post(
            base + "/v1/enroll",
            content=enrollment,
            headers={
                "Content-Type": MEDIA,
                signing.HEADER: signing.sign(reports.key, enrollment, agent_id),
            },
        )
        assert r.status_code == 200, r.text

        asyncio.run(drive(port, "/v1/reports", reports, 2, args.connections))  # warm-up
        stored_before = store.count("reports")
        results = {}
        for phase, path in (("noop", "/bench/noop"), ("ingest", "/v1/reports")):
            cpu0 = cpu_seconds(proc.pid)
            ok, failed, lat = asyncio.run(
                drive(port, path, reports, args.seconds, args.connections)
            )
            cpu = cpu_seconds(proc.pid) - cpu0
            lat.sort()
            results[phase] = {
                "rps": ok / args.seconds,
                "failed": failed,
                "p50": statistics.median(lat) * 1000,
                "p99": lat[int(len(lat) * 0.99) - 1] * 1000,
                "ok": ok,
                "cpu_ms": cpu / max(ok, 1) * 1000,
                "cpu_share": cpu / args.seconds,
            }
        stored = store.count("reports") - stored_before
        assert stored == results["ingest"]["ok"], (stored, results["ingest"]["ok"])
        noop, ing = results["noop"], results["ingest"]
        print(
            f"{name:10s} no-op   {noop['rps']:8.0f} req/s          "
            f"p50 {noop['p50']:6.1f} ms  p99 {noop['p99']:6.1f} ms  failed {noop['failed']}  "
            f"server CPU {noop['cpu_ms']:.2f} ms/req ({noop['cpu_share']:.0%} of a core)"
        )
        print(
            f"{name:10s} ingest  {ing['rps']:8.0f} reports/s {ing['rps'] * args.devices:7.0f} "
            f"devices/s  p50 {ing['p50']:6.1f} ms  p99 {ing['p99']:6.1f} ms  "
            f"failed {ing['failed']}  ratio to no-op {ing['rps'] / noop['rps']:.2f}  "
            f"(stored {stored}, {len(reports.next()[0]) // 1024} KiB per report)"
        )
        per_core = 1000 / ing["cpu_ms"] * args.devices
        print(
            f"{name:10s} server CPU {ing['cpu_ms']:.2f} ms/report ({ing['cpu_share']:.0%} of a "
            f"core): capacity of one free core ≈ {per_core:.0f} devices/s"
        )
        return {"devices_per_s": ing["rps"] * args.devices}
    finally:
        proc.terminate()
        proc.wait(20)
        store.close()


def _enrollment(agent_id: str, token: str, reports: Reports) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Enrollment xmlns="urn:metersync:v1" version="1.0">'
        f"<messageId>{uuid.uuid4()}</messageId><agentId>{agent_id}</agentId>"
        f"<createdAt>{ts(datetime.now(UTC))}</createdAt><token>{token}</token>"
        "<software><vendor>MeterSync</vendor><product>bench</product><version>0</version>"
        f'</software><publicKey algorithm="ed25519">{signing.public_key_b64(reports.key)}'
        "</publicKey></Enrollment>"
    ).encode()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--devices", type=int, default=10)
    p.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    args = p.parse_args()
    backends = args.backend or ["sqlite", "postgresql"]
    print(
        f"{args.devices} devices per report, {args.connections} connections, "
        f"{args.seconds:g} s per phase, {os.cpu_count()} cores, one Hypercorn worker"
    )
    if "sqlite" in backends:
        with TemporaryDirectory(prefix="metersync-bench-") as tmp:
            run_backend("sqlite", f"sqlite:///{Path(tmp) / 'manager.db'}", args)
    if "postgresql" in backends:
        pg = pg_url()
        if pg is None:
            print("postgresql: unreachable on 127.0.0.1:5432, skipped")
        else:
            url, base, schema = pg
            try:
                run_backend("postgresql", url, args)
            finally:
                import psycopg

                with psycopg.connect(base, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return 0


if __name__ == "__main__":
    sys.exit(main())
