"""Ingest benchmark: signed 10-device reports vs a no-op POST, from a fleet of enrolled agents.

    .venv/bin/python bench/ingest.py [--seconds 15] [--connections 16] [--devices 10]
                                     [--agents 1000] [--processes 1 --processes 2]
                                     [--backend sqlite --backend postgresql]

For each backend, enrolls `--agents` agents in a fresh database (each with its own key and its
own `--devices` printers), starts `metersync manager serve --bench-noop` (one worker), and
drives two phases with the same client: POST /bench/noop (reads the body, answers empty) and
POST /v1/reports (verify, validate, store, receipt). The agents take turns, so each stays far
within its rate limit (MS-LIM-5) and the figure is never mixed with 429 answers: every non-200
answer is counted and printed, and a phase with failures is marked NOT A RESULT. Prints
reports/s, devices/s, server CPU per report, the ratio to the no-op, p50/p99 latency, and
checks that every accepted report was stored once. With `--processes 2` (PostgreSQL only; SQLite
has one writer) two `manager serve` processes share the database and the connections, and
the scaling against one process in the same run is printed. The client is a minimal keep-alive
HTTP/1.1 client on asyncio streams (cheaper than httpx); on a 2-core machine it shares the
cores with the server(s), so CPU per report is the figure to compare. PostgreSQL:
127.0.0.1:5432, database `test`, a fresh schema dropped afterwards. Never run by the tests.
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
from typing import Any

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
    """Distinct, signed reports of one agent's printers (the example device), counters rising."""

    def __init__(self, agent_id: str, devices: int, prefix: str) -> None:
        self.key = signing.generate_key()
        self.agent_id = agent_id
        self.devices = devices
        self.prefix = prefix
        self.n = 0
        self.base = datetime.now(UTC) - timedelta(days=1)
        self.head = HEAD.replace("0b7e3f5a-8c21-4d9e-b6a3-2f4c1d8e9a70", agent_id)

    def next(self) -> tuple[bytes, str]:
        self.n += 1
        polled = ts(self.base + timedelta(seconds=self.n))
        devs = []
        for j in range(self.devices):
            devs.append(
                DEVICE.replace("sn:hp:cnb1r2s3t4", f"sn:hp:{self.prefix}d{j:03d}")
                .replace("2026-11-28T08:15:00Z", polled)
                .replace(">48213<", f">{48213 + self.n}<")
                .replace("192.0.2.17", f"192.0.2.{j % 250 + 1}")
            )
        head = self.head.replace("6f1c2a9e-3b7d-4c1e-9a4f-0d2b8e7c5a11", str(uuid.uuid4()))
        head = head.replace("2026-11-28T08:15:02Z", ts(datetime.now(UTC)))
        raw = (head + "".join(devs) + TAIL).encode()
        return raw, signing.sign(self.key, raw, self.agent_id)


class Fleet:
    """The enrolled agents, taking turns: each sends one report in `len(agents)`."""

    def __init__(self, agents: list[Reports]) -> None:
        self.agents = agents
        self.turn = 0

    def next(self) -> tuple[bytes, str]:
        self.turn += 1
        return self.agents[self.turn % len(self.agents)].next()


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
    ports: list[int],
    path: str,
    reports: Fleet,
    seconds: float,
    connections: int,
    until_turn: int | None = None,
) -> tuple[int, dict[int, int], list[float]]:
    """Run `connections` keep-alive clients for `seconds` (or until the fleet's turn reaches
    `until_turn`), spread over the servers' ports; (ok, failures by status, latencies)."""
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    ok = 0
    failed: dict[int, int] = {}

    async def one(port: int) -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop and (until_turn is None or reports.turn < until_turn):
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
                    failed[status] = failed.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(one(ports[i % len(ports)]) for i in range(connections)))
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


def enroll_fleet(store: Any, agents: int, devices: int) -> Fleet:
    """`agents` agents enrolled through the store's own enrollment path, one token each."""
    from metersync_manager import ingest

    fleet = []
    now = ingest.utcnow()
    for i in range(agents):
        agent_id = str(uuid.uuid4())
        reports = Reports(agent_id, devices, f"a{i:05d}")
        token = ingest.new_token()
        store.add_token(ingest.hash_token(token), now + timedelta(hours=1), now)
        enr = ingest.read_enrollment(_enrollment(agent_id, token, reports))
        values = {
            "agent_id": agent_id,
            "public_key": signing.public_key_b64(reports.key),
            "algorithm": "ed25519",
            "software_vendor": "MeterSync",
            "software_product": "bench",
            "software_version": "0",
        }
        decision = store.enroll(
            ingest.hash_token(token),
            values,
            lambda tok, ag, enr=enr: ingest.decide_enrollment(enr, tok, ag, now),
            now,
        )
        assert decision is ingest.Decision.REGISTER, decision
        fleet.append(reports)
    return Fleet(fleet)


def serve(url: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [sys.executable, "-m", "metersync.cli", "manager", "serve", "--bench-noop", *extra]
    proc = subprocess.Popen(
        [*cmd, "--database", url, "--bind", f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the manager did not start")


def phase(
    procs: list[Any], ports: list[int], path: str, fleet: Fleet, args: argparse.Namespace
) -> dict[str, Any]:
    cpu0 = sum(cpu_seconds(p.pid) for p in procs)
    ok, failed, lat = asyncio.run(drive(ports, path, fleet, args.seconds, args.connections))
    cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
    lat.sort()
    return {
        "rps": ok / args.seconds,
        "failed": failed,
        "p50": statistics.median(lat) * 1000 if lat else 0.0,
        "p99": lat[max(int(len(lat) * 0.99) - 1, 0)] * 1000 if lat else 0.0,
        "ok": ok,
        "cpu_ms": cpu / max(ok, 1) * 1000,
        "cpu_share": cpu / args.seconds,
    }


def _failures(r: dict[str, Any]) -> str:
    if not r["failed"]:
        return "failed 0"
    by = ", ".join(f"{n} x {code}" for code, n in sorted(r["failed"].items()))
    return f"failed {sum(r['failed'].values())} ({by}): NOT A RESULT"


def run_backend(name: str, url: str, args: argparse.Namespace) -> dict[int, float]:
    """devices/s per number of processes."""
    from metersync_manager.store import Store

    store = Store(url)
    store.migrate()
    t0 = time.monotonic()
    fleet = enroll_fleet(store, args.agents, args.devices)
    print(f"{name:10s} {args.agents} agents enrolled in {time.monotonic() - t0:.1f} s", flush=True)
    counts = sorted(set(args.processes or [1])) if name != "sqlite" else [1]
    out: dict[int, float] = {}
    try:
        for n in counts:
            servers = [serve(url, ["--no-fleet"] if args.no_fleet else []) for _ in range(n)]
            procs, ports = [p for p, _ in servers], [port for _, port in servers]
            try:
                # warm-up: every agent's printers reported once, so the phases measure the
                # daily work (a new reading of known devices), not first contact
                first = fleet.turn + len(fleet.agents) if n == counts[0] else fleet.turn + 1
                t1 = time.monotonic()
                asyncio.run(drive(ports, "/v1/reports", fleet, 600, args.connections, first))
                if n == counts[0]:
                    print(
                        f"{name:10s} first contact of {len(fleet.agents)} agents' printers: "
                        f"{len(fleet.agents) / (time.monotonic() - t1):.0f} reports/s",
                        flush=True,
                    )
                before = store.count("reports")
                noop = phase(procs, ports, "/bench/noop", fleet, args)
                ing = phase(procs, ports, "/v1/reports", fleet, args)
                stored = store.count("reports") - before
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    try:
                        p.wait(20)
                    except subprocess.TimeoutExpired:
                        print(f"{name:10s} a manager did not stop within 20 s of SIGTERM: killed")
                        p.kill()
                        p.wait()
            tag = f"{name} x{n}"
            print(
                f"{tag:14s} no-op  {noop['rps']:7.0f} req/s               p50 {noop['p50']:6.1f} ms"
                f"  p99 {noop['p99']:6.1f} ms  server CPU {noop['cpu_ms']:.2f} ms/req  "
                + _failures(noop)
            )
            print(
                f"{tag:14s} ingest {ing['rps']:7.0f} reports/s {ing['rps'] * args.devices:7.0f} "
                f"devices/s  p50 {ing['p50']:6.1f} ms  p99 {ing['p99']:6.1f} ms  ratio to no-op "
                f"{ing['rps'] / max(noop['rps'], 1e-9):.2f}  stored {stored} of {ing['ok']}  "
                + _failures(ing)
            )
            per_core = 1000 / max(ing["cpu_ms"], 1e-9) * args.devices
            print(
                f"{tag:14s} server CPU {ing['cpu_ms']:.2f} ms/report ({ing['cpu_share']:.0%} of a "
                f"core; no-op {noop['cpu_ms']:.2f} ms): one core's worth "
                f"≈ {per_core:.0f} devices/s",
                flush=True,
            )
            if stored != ing["ok"]:
                print(f"{tag:14s} STORED {stored} BUT ANSWERED 200 TO {ing['ok']}: NOT A RESULT")
            out[n] = ing["rps"] * args.devices
        if len(out) > 1:
            one = out[min(out)]
            for n, v in sorted(out.items()):
                print(f"{name:10s} {n} process(es): {v:7.0f} devices/s, x{v / max(one, 1e-9):.2f}")
        return out
    finally:
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
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument(
        "--processes", type=int, action="append", help="manager processes (PostgreSQL); repeat"
    )
    p.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    p.add_argument(
        "--no-fleet",
        action="store_true",
        help="serve without the alert evaluator (its share apart)",
    )
    args = p.parse_args()
    backends = args.backend or ["sqlite", "postgresql"]
    print(
        f"{args.devices} devices per report, {args.connections} connections, "
        f"{args.seconds:g} s per phase, {args.agents} agents, {os.cpu_count()} cores, "
        "one Hypercorn worker per process"
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
