"""`metersync demo`: a whole MeterSync deployment on this machine, on loopback only.

Starts simulated printers (snmpsim serving the agent's own recordings, one address each, page
counters rising slowly), a manager (`metersync manager serve`, SQLite) and an agent
(`metersync agent run`), prints where to look, and runs until Ctrl-C; then stops everything
and removes its files (unless --keep). Nothing is reachable from outside this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metersync.snmpsim import Endpoint, SimulatorError, SnmpSimulator, free_udp_port

# The project's own recordings that look like an office fleet (no deliberately hostile ones).
FLEET = [
    "brother_hl", "canon_iradv", "epson_wf", "hp_color_mfp", "konica_bizhub", "kyocera_ecosys",
    "lexmark_ms", "oki_c", "ricoh_mpc", "samsung_m", "sharp_mx", "xerox_altalink",
    "supplies_odd",
]  # fmt: skip
TOTAL_COUNTER = re.compile(r"^(1\.3\.6\.1\.2\.1\.43\.10\.2\.1\.4\.1\.1)\|(65|70)\|(\d+)$", re.M)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--port", type=int, default=8470, help="manager port (default 8470)")
    parser.add_argument("--poll-interval", type=int, default=30, help="seconds (default 30)")
    parser.add_argument("--dir", help="keep everything in DIR (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="do not delete the files at the end")
    parser.set_defaults(func=run)


def _recordings() -> Path:
    spec = importlib.util.find_spec("metersync_agent")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "recordings"


def _endpoints(data_dirs: list[Path]) -> list[Endpoint]:
    """One loopback address per printer where the system allows it (Linux), else one port each."""
    hosts = [f"127.0.7.{10 + i}" for i in range(len(data_dirs))]
    try:
        port = free_udp_port(*hosts)
    except OSError:
        return [Endpoint("127.0.0.1", 0, d) for d in data_dirs]
    return [Endpoint(h, port, d) for h, d in zip(hosts, data_dirs, strict=True)]


def _start_printers(base: Path, logs: Path) -> SnmpSimulator:
    rec = _recordings()
    data_dirs = []
    for name in FLEET:
        data = base / "printers" / name
        data.mkdir(parents=True)
        text = (rec / f"{name}.snmprec").read_text(encoding="utf-8")
        # the engine's page counter rises by about one page every 10 s
        text = TOTAL_COUNTER.sub(r"\1|\2:numeric|rate=0.1,initial=\3", text)
        (data / "public.snmprec").write_text(text, encoding="utf-8")
        data_dirs.append(data)
    sim = SnmpSimulator(
        endpoints=_endpoints(data_dirs),
        variation_modules_dir=rec / "variation",
        cache_dir=base / "snmpsim-cache",
        start_timeout=60,
        log_file=logs / "printers.log",
        new_session=True,  # Ctrl-C reaches the demo, which stops everything in order
    )
    try:
        return sim.start()
    except SimulatorError:
        raise SystemExit(
            f"the simulated printers did not start; see {logs / 'printers.log'}"
        ) from None


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the {what} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"the {what} did not answer at {url}")


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def run(args: argparse.Namespace) -> int:
    import httpx

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="metersync-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    logs = base / "logs"
    logs.mkdir(exist_ok=True)
    cli = [sys.executable, "-m", "metersync.cli"]
    url = f"http://127.0.0.1:{args.port}"
    procs: list[subprocess.Popen[bytes]] = []
    printers: SnmpSimulator | None = None
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"MeterSync demo in {base}", flush=True)
        printers = _start_printers(base, logs)
        addrs, printers_proc = printers.endpoints, printers.proc
        assert printers_proc is not None
        print(f"  {len(addrs)} simulated printers on {addrs[0][0]}..{addrs[-1][0]}", flush=True)

        mdir = base / "manager"
        token = subprocess.run(
            [*cli, "manager", "token", "create", "--data-dir", str(mdir)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        api_token = subprocess.run(  # the operator's token for the /api/v1 API (MS-HTTP-18)
            [*cli, "manager", "api-token", "create", "--name", "demo", "--data-dir", str(mdir)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        console_password = subprocess.run(  # a console account (dealer admin) for the browser
            [*cli, "manager", "user", "create", "demo", "--data-dir", str(mdir)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        api = {"Authorization": f"Bearer {api_token}"}
        with (logs / "manager.log").open("wb") as log:
            manager = subprocess.Popen(
                [*cli, "manager", "serve", "--bind", f"127.0.0.1:{args.port}"]
                + ["--data-dir", str(mdir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops them in order
            )
        procs.append(manager)
        _wait_http(url + "/healthz", manager, "manager")

        config = base / "agent.toml"
        targets = ", ".join(f'"{h}:{p}"' for h, p in addrs)
        config.write_text(
            f'[manager]\nurl = "{url}"\nenrollment_token = "{token}"\n'
            f"[http]\ngzip = true\n[targets]\ninclude = [{targets}]\n"
            '[[credentials]]\nversion = "2c"\ncommunity = "public"\n'
            f"[schedule]\npoll_interval = {args.poll_interval}\ndiscovery_interval = 3600\n"
            "[snmp]\ntimeout = 1\nretries = 1\n",
            encoding="utf-8",
        )
        os.chmod(config, 0o600)
        with (logs / "agent.log").open("wb") as log:
            agent = subprocess.Popen(
                [*cli, "agent", "run", "--config", str(config), "--state-dir", str(base / "agent")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops them in order
            )
        procs.append(agent)

        deadline = time.monotonic() + 60
        devices: list[dict[str, str]] = []
        while not stopping and time.monotonic() < deadline and len(devices) < len(addrs):
            if agent.poll() is not None:
                raise SystemExit(f"the agent exited; see {logs / 'agent.log'}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                devices = httpx.get(url + "/api/v1/devices", headers=api, timeout=2).json()["items"]
            time.sleep(0.5)
        print(f"  {len(devices)} devices reported to the manager:", flush=True)
        for d in sorted(devices, key=lambda d: d["currentIp"] or ""):
            print(f"    {d['currentIp']:<12} {d['vendor'] or '?':<15} {d['model'] or '?':<31} "
                  f"{d['deviceKey']}")  # fmt: skip
        today = time.strftime("%Y-%m-%d", time.gmtime())
        print(
            f"""
Open the console in a browser:
  {url}/
  user demo, password {console_password}

Where to look (the read API needs the operator token, MS-HTTP-18):
  export METERSYNC_API_TOKEN={api_token}
  curl -H "Authorization: Bearer $METERSYNC_API_TOKEN" {url}/api/v1/devices
  devices     {url}/api/v1/devices
  agents      {url}/api/v1/agents          (queue depth, dropped reports, last seen)
  one device  {url}/api/v1/devices/<deviceKey>/latest   (/counters, /supplies, /ips)
  alerts      {url}/api/v1/alerts          (open alerts: ?state=active; printers': /printer-alerts)
  meters      {url}/api/v1/meters?from={today}T00:00:00Z&to={today}T23:59:59Z
Files:
  manager     {mdir}  (SQLite)
  agent       {base / "agent"}  (identity, key, outbox.sqlite3); config {config}
  logs        {logs}
The agent polls every {args.poll_interval} s; page counters rise slowly. Ctrl-C stops the demo.""",
            flush=True,
        )
        while not stopping:
            for p, what in ((agent, "agent"), (manager, "manager"), (printers_proc, "printers")):
                if p.poll() is not None:
                    print(f"the {what} exited ({p.returncode}); see {logs}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        print("stopping…", flush=True)
        return 0
    finally:
        for p in reversed(procs):  # agent first: it finishes its write and closes its outbox
            _stop(p)
        if printers is not None:
            printers.stop()
        for s, handler in old.items():
            signal.signal(s, handler)
        if args.dir is None and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        elif printers is not None:
            print(f"files kept in {base}", flush=True)
