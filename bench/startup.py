"""Benchmark: CPU of the agent's CLI start-up, and of serialising a snapshot.

    .venv/bin/python bench/startup.py [--rounds 5] [--profile]

Serves konica, jetdirect_m252dw, xerox and sharp from ../shared/walks/librenms (in place) with
snmpsim. Prints, per command, the median CPU (user + system, children's rusage) of a whole
`metersync agent …` process next to `python -c pass` (the interpreter's own start) in the
same run; and, in process, `snapshot_xml` (cached serializer) against a serializer made per
call (what the agent did before), with the ratio, checking the bytes are the same.
`--profile` prints where a v2c `agent poll` spends its CPU (cProfile, imports included).
Not run by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from metersync.snmpsim import SnmpSimulator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from poll import LIBRENMS, REAL  # noqa: E402

METERSYNC = str(Path(sys.executable).with_name("metersync"))


def cpu_of(cmd: list[str], rounds: int) -> float:
    """Median CPU seconds of one run of cmd."""
    runs = []
    for _ in range(rounds):
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        before = ru.ru_utime + ru.ru_stime
        rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        if rc not in (0, 5):  # 5: read, with collection errors (the recordings have some)
            raise SystemExit(f"{' '.join(cmd)} failed with exit code {rc}")
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        runs.append(ru.ru_utime + ru.ru_stime - before)
    return statistics.median(runs)


def xml_cpu(addr: tuple[str, int], name: str, rounds: int) -> tuple[float, float]:
    """ms per snapshot_xml call: (serializer per call, cached)."""
    from xsdata.formats.dataclass.serializers import XmlSerializer
    from xsdata.formats.dataclass.serializers.config import SerializerConfig

    from metersync_agent.poller import NS, Device, poll_device, snapshot_xml
    from metersync_agent.profiles import load_profiles
    from metersync_agent.snmp import Credential, SnmpClient

    async def read():
        client = SnmpClient(timeout=2.0, retries=1)
        try:
            creds = [Credential("2c", community=name)]
            return await poll_device(client, *addr, creds, load_profiles(), 30.0)
        finally:
            client.close()

    snap = asyncio.run(read())
    if not (snap.counter or snap.supply):
        raise SystemExit(f"{name}: the in-process read found no counters or supplies")
    config = SerializerConfig(indent="  ", xml_declaration=True, encoding="UTF-8")

    def fresh() -> bytes:
        doc = Device(**{f.name: getattr(snap, f.name) for f in dataclasses.fields(snap)})
        return XmlSerializer(config=config).render(doc, ns_map={None: NS}).encode("utf-8")

    assert fresh() == snapshot_xml(snap), name
    out = []
    for fn in (fresh, lambda: snapshot_xml(snap)):
        t = time.process_time()
        for _ in range(rounds):
            fn()
        out.append((time.process_time() - t) / rounds * 1000)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if not LIBRENMS.is_dir():
        raise SystemExit(f"{LIBRENMS} not found: set METERSYNC_WALKS")
    with SnmpSimulator(LIBRENMS) as sim:  # served in place, never copied
        host, port = sim.address
        base = cpu_of([sys.executable, "-c", "pass"], args.rounds)
        print(f"python -c pass: {base:.3f} s CPU (interpreter start, for scale)")
        help_cpu = cpu_of([METERSYNC, "agent", "--help"], args.rounds)
        print(f"metersync agent --help: {help_cpu:.3f} s CPU")
        print("recording          agent poll (s CPU)  snapshot_xml ms: per-call  cached  ratio")
        for name in REAL:
            cmd = [METERSYNC, "agent", "poll", f"{host}:{port}", "--community", name]
            poll_cpu = cpu_of(cmd, args.rounds)
            per_call, cached = xml_cpu((host, port), name, 20 * args.rounds)
            print(
                f"{name:18} {poll_cpu:18.3f}  {per_call:16.2f}  {cached:6.2f}  "
                f"{cached / per_call:5.2f}"
            )
        if args.profile:  # a fresh process, so that imports are in the profile
            cmd = [sys.executable, "-m", "cProfile", "-s", "cumulative", METERSYNC, "agent"]
            cmd += ["poll", f"{host}:{port}", "--community", REAL[0]]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
            print(out[out.index("function calls") :][:4000], file=sys.stderr)


if __name__ == "__main__":
    main()
