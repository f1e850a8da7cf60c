"""Benchmark (issue 9, case 5): the manager's memory under stalled bodies of strangers.

    .venv/bin/python bench/stalled_bodies.py [--connections 100] [--source DIR]

Starts `metersync manager serve` (SQLite, a real process), opens N connections from four
loopback addresses that each send the headers of a report signed in the name of an agent that
was never enrolled and then stall: first a plain "<" (the baseline, measured in the same run),
then 15.5 KB of gzip that inflates to 15 MiB and waits for its end. Prints the manager's
resident memory in each phase and the bytes held per stalled bomb. Then case 4: 256 stalled
plain bodies of strangers from 8 addresses, and what an enrolled agent is answered meanwhile.
`--source DIR` runs the manager from another checkout (for example an export of main) to
compare. Not run by the tests.
"""

from __future__ import annotations

import argparse
import gzip
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_manager_support import MEDIA, TestAgent, free_port  # noqa: E402

from metersync import signing  # noqa: E402

PACKAGES = {"metersync": "metersync", "metersync_spec": "spec", "metersync_generated": "generated",
            "metersync_agent": "reference_agent", "metersync_manager": "reference_manager",
            "metersync_conformance": "conformance"}  # fmt: skip


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def source_path(source: Path, tmp: Path) -> dict[str, str]:
    """PYTHONPATH that imports the packages from `source` before the installed ones."""
    links = tmp / "pkgs"
    links.mkdir()
    for name, folder in PACKAGES.items():
        (links / name).symlink_to(source / folder)
    return {"PYTHONPATH": str(links)}


def hold(
    port: int, n: int, headers: dict[str, str], first: bytes, addresses: int = 4
) -> list[socket.socket]:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"POST /v1/reports HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(first) + 64}"
    socks = []
    for i in range(n):
        s = socket.create_connection(
            ("127.0.0.1", port), source_address=(f"127.0.3.{i % addresses}", 0)
        )
        s.sendall(request.encode() + b"\r\n\r\n" + first)
        socks.append(s)
    return socks


def settle(pid: int) -> int:
    """The RSS once it stops growing (a few seconds at most)."""
    last, same = rss(pid), 0
    while same < 5:
        time.sleep(0.2)
        now = rss(pid)
        same = same + 1 if abs(now - last) < 256 * 1024 else 0
        last = now
    return last


def lockout(url: str, port: int, token: str, sig: dict[str, str]) -> list[int]:
    """Case 4: an enrolled agent's answers while 256 bodies of strangers stall."""
    agent = TestAgent()
    via = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=url, timeout=30, transport=via) as c:
        body = agent.enrollment(token)
        assert c.post("/v1/enroll", content=body, headers=agent.headers(body)).status_code == 200
        time.sleep(2)  # the connections closed above are released
        stalled = hold(port, 256, sig, b"<", addresses=8)
        time.sleep(2)  # every one has reached the manager
        try:
            codes = []
            for _ in range(5):
                raw = agent.report([])
                codes.append(
                    c.post("/v1/reports", content=raw, headers=agent.headers(raw)).status_code
                )
        finally:
            for s in stalled:
                s.close()
    return codes


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--source", type=Path)
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **(source_path(args.source, Path(tmp)) if args.source else {})}
        env["METERSYNC_HOME"] = f"{tmp}/home"
        cli = [sys.executable, "-m", "metersync.cli", "manager"]
        token = subprocess.run([*cli, "token", "create"], env=env, capture_output=True,
                               text=True, check=True).stdout.strip()  # fmt: skip
        cmd = [*cli, "serve", "--bind", f"127.0.0.1:{port}", "--no-access-log"]
        if not args.source:
            cmd += ["--body-timeout", "110"]  # main's bound is 120 s; keep the two alike
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            sig = {signing.HEADER: TestAgent().sign(b"x"), "Content-Type": MEDIA}
            bomb = gzip.compress(b"\0" * (15 * 1024 * 1024), compresslevel=9)[:-64]
            idle = settle(proc.pid)
            plain = hold(port, args.connections, sig, b"<")
            base = settle(proc.pid)
            bombs = hold(port, args.connections, {**sig, "Content-Encoding": "gzip"}, bomb)
            held = settle(proc.pid)
            for s in plain + bombs:
                s.close()
            agent_codes = lockout(f"http://127.0.0.1:{port}", port, token, sig)
        finally:
            proc.terminate()
            proc.wait(30)
    n = args.connections
    print(f"manager {'from ' + str(args.source) if args.source else 'of this checkout'}")
    print(f"idle RSS                          {idle / 2**20:8.1f} MiB")
    print(f"{n} stalled plain bodies (baseline)  {base / 2**20:8.1f} MiB")
    print(f"+ {n} stalled 15 MiB gzip bombs      {held / 2**20:8.1f} MiB "
          f"({len(bomb)} bytes each on the wire)")  # fmt: skip
    print(f"per bomb: {(held - base) / n / 2**20:.2f} MiB (ratio to baseline RSS "
          f"{held / base:.2f})")  # fmt: skip
    print(f"enrolled agent's 5 reports while 256 stranger bodies stall: {agent_codes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
