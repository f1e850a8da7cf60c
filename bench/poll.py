"""Benchmark: agent CPU per full printer read vs net-snmp, throughput, memory at 1,000 devices.

    /work/venv/bin/python bench/poll.py [--rounds 20] [--devices 1000] [--profile]

Serves recordings with snmpsim on loopback: our own synthetic printer (written at run time)
and, when ../shared/walks/librenms exists, konica, jetdirect_m252dw, xerox and sharp served
straight from there (never copied). A "full read" walks system, ifPhysAddress, hrDeviceTable,
hrPrinterTable and the Printer-MIB. Agent CPU is time.process_time() in this process only (the
responder is another process); net-snmp CPU is the children's rusage of `snmpbulkwalk` runs
minus the same number of trivial runs (process start). Not run by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metersync.snmpsim import SnmpSimulator, write_snmprec
from metersync_agent.snmp import Credential, SnmpClient, WalkResult, parse_oid

SUBTREES = [
    "1.3.6.1.2.1.1",  # system
    "1.3.6.1.2.1.2.2.1.6",  # ifPhysAddress
    "1.3.6.1.2.1.25.3.2",  # hrDeviceTable
    "1.3.6.1.2.1.25.3.5",  # hrPrinterTable
    "1.3.6.1.2.1.43",  # Printer-MIB
]
LIBRENMS = (
    Path(
        os.environ.get("METERSYNC_WALKS")
        or Path(__file__).resolve().parents[2] / "shared" / "walks"
    )
    / "librenms"
)
REAL = ["konica", "jetdirect_m252dw", "xerox", "sharp"]


def synthetic_printer(serial: int = 1) -> list[str]:
    """A colour MFP: ~170 varbinds in the walked subtrees."""
    s = "1.3.6.1.2.1.1"
    rows = [
        f"{s}.1.0|4|MeterSync Synthetic MFP 9000", f"{s}.2.0|6|1.3.6.1.4.1.99999.1.9000",
        f"{s}.3.0|67|8640000", f"{s}.4.0|4|ops@example.com", f"{s}.5.0|4|mfp-{serial}",
        f"{s}.6.0|4|Floor 2", f"{s}.7.0|2|72",
    ]  # fmt: skip
    for i in (1, 2):
        rows.append(f"1.3.6.1.2.1.2.2.1.6.{i}|4x|0011223344{serial % 256:02x}")
    hr = "1.3.6.1.2.1.25.3.2.1"
    for i, t in ((1, 5), (2, 3), (3, 12)):
        rows += [f"{hr}.1.{i}|2|{i}", f"{hr}.2.{i}|6|1.3.6.1.2.1.25.3.1.{t}",
                 f"{hr}.3.{i}|4|Device {i}", f"{hr}.4.{i}|6|0.0", f"{hr}.5.{i}|2|2",
                 f"{hr}.6.{i}|65|0"]  # fmt: skip
    rows += ["1.3.6.1.2.1.25.3.5.1.1.1|2|3", "1.3.6.1.2.1.25.3.5.1.2.1|4x|00"]
    p = "1.3.6.1.2.1.43"
    rows += [
        f"{p}.5.1.1.1.1|65|1",
        f"{p}.5.1.1.16.1|4|MFP 9000",
        f"{p}.5.1.1.17.1|4|SN{serial:08d}",
    ]
    for m in range(1, 5):  # markers
        rows += [f"{p}.10.2.1.{c}.1.{m}|2|{m + c}" for c in range(2, 4)]
        rows += [f"{p}.10.2.1.4.1.{m}|65|{100000 + m}"]
    for k in range(1, 11):  # supplies: 10 x 9 columns
        rows += [f"{p}.11.1.1.{c}.1.{k}|2|{c}" for c in (2, 3, 4, 5, 7, 8)]
        rows += [f"{p}.11.1.1.6.1.{k}|4|Supply {k}", f"{p}.11.1.1.9.1.{k}|2|{k * 9}",
                 f"{p}.11.1.1.1.1.{k}|2|{k}"]  # fmt: skip
    for t in range(1, 4):  # input trays
        rows += [f"{p}.8.2.1.{c}.1.{t}|2|{c * t}" for c in (2, 3, 8, 9, 10, 11, 12, 13)]
    rows.append("1.3.6.1.4.1.99999.1.1.0|2|1")  # something after the Printer-MIB
    return rows


def big_table(rows: int = 4000) -> list[str]:
    """One long Printer-MIB column: per-varbind cost without process start noise."""
    p = "1.3.6.1.2.1.43.11.1.1.9.1"
    return ["1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.99999.1"] + [
        f"{p}.{i}|2|{i}" for i in range(1, rows + 1)
    ]


async def agent_read(client: SnmpClient, host: str, port: int, community: str) -> WalkResult:
    r = WalkResult()
    session = await client.open_session(host, port, [Credential("2c", community=community)])
    async with session:
        for sub in SUBTREES:
            await session.walk(parse_oid(sub), r)
    return r


async def agent_cpu(addr: tuple[str, int], community: str, rounds: int) -> tuple[float, int, int]:
    """Median CPU seconds per full read, varbinds and PDUs per read."""
    client = SnmpClient(timeout=5, retries=1)
    try:
        r = await agent_read(client, *addr, community)  # warm-up: transport, credential cache
        cpu = []
        for _ in range(rounds):
            t = time.process_time()
            r = await agent_read(client, *addr, community)
            cpu.append(time.process_time() - t)
        return statistics.median(cpu), r.varbinds, r.pdus
    finally:
        client.close()


async def planned_pdus(addr: tuple[str, int], community: str) -> tuple[int, int, int]:
    """PDUs of the agent's full planned read (poll_device): first cycle, next cycle; varbinds."""
    from metersync_agent.poller import poll_device, snapshot_xml
    from metersync_agent.profiles import load_profiles

    profiles = load_profiles()
    client = SnmpClient(timeout=5, retries=1)
    counts = []
    orig = SnmpClient.open_session

    async def counting(self, *a, **kw):  # the poller's own WalkResult counts its PDUs
        session = await orig(self, *a, **kw)
        counts.append(kw["into"])
        return session

    SnmpClient.open_session = counting  # type: ignore[method-assign]
    try:
        for _ in range(2):
            snapshot_xml(await poll_device(client, *addr, [Credential("2c", community=community)],
                                           profiles))  # fmt: skip
    finally:
        SnmpClient.open_session = orig  # type: ignore[method-assign]
        client.close()
    return counts[0].pdus, counts[1].pdus, counts[1].varbinds


def netsnmp_pdus(addr: tuple[str, int], community: str) -> int:
    """PDUs snmpbulkwalk (-Cr25, as snmp_exporter's default max_repetitions) sends for SUBTREES."""
    exe = shutil.which("snmpbulkwalk")
    assert exe
    env = dict(os.environ, MIBS="", MIBDIRS="/nonexistent")
    total = 0
    for sub in SUBTREES:
        args = [exe, "-d", "-v2c", "-c", community, "-Cr25", "-On", "-t", "5", "-r", "1",
                f"{addr[0]}:{addr[1]}", sub]  # fmt: skip
        out = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        total += sum(1 for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Sending"))
    return total


def pdu_table(devices: list[tuple[tuple[str, int], str]]) -> None:
    print(
        "\nPDUs per device: the agent's planned full read vs snmpbulkwalk -Cr25 of the same tables"
    )
    hdr = f"{'device':18} {'agent 1st':>9} {'agent next':>10} {'varbinds':>8}"
    hdr += f" {'net-snmp':>8} {'ratio':>6}"
    print(hdr)
    print("-" * len(hdr))
    for addr, name in devices:
        first, nxt, vb = asyncio.run(planned_pdus(addr, name))
        ns = netsnmp_pdus(addr, name)
        print(f"{name:18} {first:9d} {nxt:10d} {vb:8d} {ns:8d} {nxt / ns:6.2f}")


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def netsnmp_cpu(addr: tuple[str, int], community: str, rounds: int) -> tuple[float, int]:
    """Median CPU seconds per full read by snmpbulkwalk, process start subtracted; varbinds."""
    exe = shutil.which("snmpbulkwalk")
    assert exe
    env = dict(os.environ, MIBS="", MIBDIRS="/nonexistent")
    host = f"{addr[0]}:{addr[1]}"
    base = [exe, "-v2c", "-c", community, "-Cr25", "-On", "-Oq", "-t", "5", "-r", "1", host]

    def run(args: list[str]) -> tuple[float, str]:
        t = children_cpu()
        out = subprocess.run(args, env=env, capture_output=True, text=True, check=False).stdout
        return children_cpu() - t, out

    # process start incl. net-snmp's init: a walk of an empty subtree (one PDU round trip)
    # rusage of short children is tick-sampled: use means over many runs, not medians
    starts = [run([*base, "1.3.6.1.2.1.9999"])[0] for _ in range(rounds * 5)]
    start = statistics.fmean(starts)
    per_read, varbinds = [], 0
    for _ in range(rounds):
        total, varbinds = 0.0, 0
        for sub in SUBTREES:
            cpu, out = run([*base, sub])
            total += cpu - start
            varbinds += sum(
                1 for ln in out.splitlines() if ln.startswith(".") and "No Such" not in ln
            )
        per_read.append(total)
    return statistics.fmean(per_read), varbinds


async def throughput(addr: tuple[str, int], communities: list[str], conc: int) -> float:
    client = SnmpClient(timeout=5, retries=1, concurrency=conc)
    try:
        sem = asyncio.Semaphore(conc)

        async def one(c: str) -> None:
            async with sem:
                await agent_read(client, *addr, c)

        t = time.monotonic()
        await asyncio.gather(*(one(c) for c in communities))
        return len(communities) / (time.monotonic() - t)
    finally:
        client.close()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--profile", action="store_true", help="cProfile the agent reads")
    ap.add_argument("--pdus-only", action="store_true", help="only the PDU table")
    args = ap.parse_args()
    if not shutil.which("snmpbulkwalk"):
        sys.exit("snmpbulkwalk missing: apt-get install -y snmp")

    work = Path(tempfile.mkdtemp(prefix="metersync-bench-"))
    own = work / "own"
    write_snmprec(own / "synthetic.snmprec", synthetic_printer())
    write_snmprec(own / "big.snmprec", big_table())
    many = work / "many"
    rows = None
    for i in range(args.devices):
        rows = synthetic_printer(i)
        write_snmprec(many / f"d{i:04d}.snmprec", rows)

    table = []
    sims = [SnmpSimulator(own)]
    if LIBRENMS.is_dir():
        sims.append(SnmpSimulator(LIBRENMS))  # served in place, never copied
    try:
        for sim in sims:
            sim.start()
        devices = [(sims[0].address, "synthetic"), (sims[0].address, "big")]
        if len(sims) > 1:
            devices += [(sims[1].address, n) for n in REAL if (LIBRENMS / f"{n}.snmprec").exists()]
        pdu_table([d for d in devices if d[1] != "big"])
        if args.pdus_only:
            return
        prof = cProfile.Profile() if args.profile else None
        for addr, name in devices:
            if prof:
                prof.enable()
            a_cpu, a_vb, a_pdu = asyncio.run(agent_cpu(addr, name, args.rounds))
            if prof:
                prof.disable()
            n_cpu, n_vb = netsnmp_cpu(addr, name, args.rounds * 2 if name != "big" else 5)
            table.append((name, a_vb, a_pdu, a_cpu, n_cpu, n_vb))
        if prof:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(18)
            print(out.getvalue())
    finally:
        for sim in sims:
            sim.stop()

    print("\nCPU per full read (system + ifPhysAddress + hrDevice + hrPrinter + Printer-MIB)")
    hdr = f"{'device':18} {'varbinds':>8} {'PDUs':>5} {'agent ms':>9} {'µs/vb':>7}"
    hdr += f" {'net-snmp ms':>11} {'µs/vb':>7} {'ratio/vb':>8}"
    print(hdr)
    print("-" * len(hdr))
    for name, a_vb, a_pdu, a_cpu, n_cpu, n_vb in table:
        a_us, n_us = a_cpu / a_vb * 1e6, n_cpu / max(n_vb, 1) * 1e6
        if n_cpu * 1e3 < 2.0:  # below the noise of subtracting process start-up
            ns = f" {'< 2 (noise)':>11} {'-':>7} {'-':>8}"
        else:
            ns = f" {n_cpu * 1e3:11.2f} {n_us:7.1f} {a_us / n_us:8.1f}x"
        print(f"{name:18} {a_vb:8d} {a_pdu:5d} {a_cpu * 1e3:9.2f} {a_us:7.1f}" + ns)
    print("('big' = one 4,000-row column: the per-varbind ratio without start-up noise)")

    print(f"\nThroughput and memory: {args.devices} synthetic devices on one responder")
    before = rss_mb()
    t = time.monotonic()
    with SnmpSimulator(many, start_timeout=300) as sim:
        start_s = time.monotonic() - t
        names = [f"d{i:04d}" for i in range(args.devices)]
        c1 = asyncio.run(throughput(sim.address, names[:40], 1))
        c50 = asyncio.run(throughput(sim.address, names, 50))
    print(f"  responder start-up            {start_s:8.1f} s")
    print(f"  devices/s, concurrency 1      {c1:8.1f}")
    print(f"  devices/s, concurrency 50     {c50:8.1f}   (one snmpsim process is the limit)")
    print(
        f"  agent peak RSS                {rss_mb():8.1f} MB   (before the 1,000: {before:.1f} MB)"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
