"""End to end: simulated printers, `metersync manager serve` and `metersync agent run` as
separate processes, on loopback.

The agent enrolls, discovers five printers served by snmpsim from the project's recordings,
polls and delivers; the manager's JSON API shows every device with the values of the
recordings' truth files. Then the manager is stopped for a while and restarted, the agent is
killed with SIGKILL while it delivers the backlog and restarted, and in the end the manager
holds every report the agent created exactly once, and every device's reading of each of them.
Parametrised over SQLite and PostgreSQL (127.0.0.1:5432, trust auth, database `test`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from metersync import xml_edge
from metersync.snmpsim import Endpoint, SnmpSimulator, free_udp_port
from metersync_agent.config import settings_from_toml_text

RECORDINGS = Path(__file__).resolve().parents[1] / "reference_agent" / "recordings"
DEVICES = ["kyocera_ecosys", "canon_iradv", "ricoh_mpc", "xerox_altalink", "lexmark_ms"]
HOSTS = [f"127.0.5.{20 + i}" for i in range(len(DEVICES))]
CLI = [sys.executable, "-m", "metersync.cli"]

pytestmark = pytest.mark.slow


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(
    what: str, cond: Callable[[], Any], timeout: float, proc: Any = None, logs: str = ""
) -> Any:
    """cond()'s first true value, polled every 0.1 s; fails on the timeout or when `proc`
    exits (`logs`: where to look, said in the failure)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, sqlite3.Error):
            value = cond()
            if value:
                return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; {logs}")
        time.sleep(0.1)


@contextlib.contextmanager
def simulated_printers(root: Path, hosts: list[str], devices: list[str]) -> Iterator[int]:
    """Our recordings served by one snmpsim, one printer per address, all on one port."""
    port = free_udp_port(*hosts)
    eps = []
    for host, name in zip(hosts, devices, strict=True):
        d = root / name
        d.mkdir()
        shutil.copy(RECORDINGS / f"{name}.snmprec", d / "public.snmprec")
        eps.append(Endpoint(host, port, data_dir=d))
    with SnmpSimulator(root / devices[0], endpoints=eps):
        yield port


@pytest.fixture(scope="module")
def printers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """Five printers, one per loopback address, each answering community `public`."""
    with simulated_printers(tmp_path_factory.mktemp("printers"), HOSTS, DEVICES) as port:
        yield f"{HOSTS[0]}-{HOSTS[-1]}:{port}", port


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    if request.param == "sqlite":
        yield ["--data-dir", str(tmp_path / "manager")]
        return
    from test_manager_support import pg_schema

    with pg_schema() as url:
        yield ["--database", url]


class Manager:
    def __init__(self, db_args: list[str], log: Path) -> None:
        self.db_args, self.log = db_args, log
        self.port = _free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def token(self) -> str:
        out = subprocess.run(
            [*CLI, "manager", "token", "create", "--expires", "1h", *self.db_args],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*CLI, "manager", "serve", "--bind", f"127.0.0.1:{self.port}", *self.db_args],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait("manager up", lambda: self.get("/healthz")["status"] == "ok", 30, self.proc)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        assert self.proc.wait(20) == 0
        self.proc = None

    @functools.cached_property
    def api_headers(self) -> dict[str, str]:
        """An operator token for the /api/v1 API (MS-HTTP-18)."""
        out = subprocess.run(
            [*CLI, "manager", "api-token", "create", *self.db_args],
            capture_output=True,
            text=True,
            check=True,
        )
        return {"Authorization": f"Bearer {out.stdout.strip()}"}

    def get(self, path: str) -> Any:
        r = httpx.get(self.url + path, timeout=5, headers=self.api_headers)
        r.raise_for_status()
        return r.json()

    def reports(self) -> int:
        items = self.get("/api/v1/agents")["items"]
        return items[0]["reports"] if items else 0


class Agent:
    def __init__(self, config: Path, state: Path, log: Path) -> None:
        self.config, self.state, self.log = config, state, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*CLI, "agent", "run", "--config", str(self.config)]
                + ["--state-dir", str(self.state), "--log-level", "info"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def outbox(self) -> tuple[int, int, int]:
        """(reports created, queued, refused) read from the outbox file (WAL: readers are fine)."""
        with contextlib.closing(sqlite3.connect(self.state / "outbox.sqlite3", timeout=5)) as db:
            created = db.execute("SELECT value FROM meta WHERE key='next_sequence'").fetchone()
            queued = db.execute("SELECT COUNT(*) FROM report WHERE state='queued'").fetchone()
            refused = db.execute("SELECT COUNT(*) FROM report WHERE state='refused'").fetchone()
        return created[0] - 1, queued[0], refused[0]


def _truth(name: str) -> dict[str, Any]:
    return tomllib.loads((RECORDINGS / f"{name}.truth.toml").read_text())


def _key_url(key: str, tail: str = "") -> str:
    return "/api/v1/devices/" + urllib.parse.quote(key, safe="") + tail


def test_agent_and_manager_processes_deliver_every_reading_once(
    tmp_path: Path, printers: tuple[str, int], database: list[str]
) -> None:
    target, _ = printers
    manager = Manager(database, tmp_path / "manager.log")
    token = manager.token()
    config_toml = f"""
[manager]
url = "{manager.url}"
enrollment_token = "{token}"
[http]
timeout = 10
gzip = true
[targets]
include = ["{target}"]
[[credentials]]
version = "2c"
community = "public"
[schedule]
poll_interval = 2
discovery_interval = 3600
[snmp]
timeout = 1
retries = 1
"""
    # the agent gets the spec's Provisioning XML, written from the friendlier TOML form
    settings = settings_from_toml_text(config_toml)
    assert settings.provisioning is not None
    config = tmp_path / "agent.xml"
    config.write_bytes(xml_edge.to_bytes(settings.provisioning, pretty=True))
    os.chmod(config, 0o600)
    agent = Agent(config, tmp_path / "agent-state", tmp_path / "agent.log")
    logs = f"manager log {manager.log}, agent log {agent.log}"
    t0 = time.monotonic()
    manager.start()
    agent.start()
    try:
        # 1. enrolled, every printer delivered with the values of its recording
        _wait(
            "five devices at the manager",
            lambda: len(manager.get("/api/v1/devices")["items"]) == 5 and manager.reports() >= 2,
            30,
            agent.proc,
        )
        devices = {d["deviceKey"]: d for d in manager.get("/api/v1/devices")["items"]}
        for host, name in zip(HOSTS, DEVICES, strict=True):
            truth = _truth(name)
            dev = devices[truth["key"]]
            assert (dev["vendor"], dev["model"]) == (truth["vendor"], truth["model"]), logs
            assert dev["serialNumber"] == truth["serial"] and dev["currentIp"] == host
            latest = manager.get(_key_url(truth["key"], "/latest"))
            got = sorted((c["kind"], c["oid"], c["value"]) for c in latest["counters"])
            want = sorted((c["kind"], c["oid"], c["value"]) for c in truth["counter"])
            assert got == want, name

        # 2. the manager goes away; the agent keeps polling into its outbox
        manager.stop()
        before_outage = agent.outbox()[0]
        _wait("reports queued while the manager is down", lambda: agent.outbox()[1] >= 2, 20)
        manager.start()

        # 3. kill -9 the agent while it delivers the backlog, then start it again
        at_restart = manager.reports()
        _wait("backlog delivery started", lambda: manager.reports() > at_restart, 30, agent.proc)
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGKILL)
        assert agent.proc.wait(10) == -signal.SIGKILL
        created_before_kill = agent.outbox()[0]
        assert created_before_kill > before_outage
        agent.start()
        _wait("a new report after the restart", lambda: agent.outbox()[0] > created_before_kill, 20)

        # 4. stop the agent gracefully once everything it created is at the manager
        _wait(
            "outbox drained",
            lambda: agent.outbox()[1] == 0 and manager.reports() == agent.outbox()[0],
            40,
            agent.proc,
        )
        agent.proc.terminate()
        assert agent.proc.wait(20) == 0, logs
        created, queued, refused = agent.outbox()
        assert (queued, refused) == (0, 0)
        assert manager.reports() == created, logs

        # 5. every report exactly once, every device's reading in every report exactly once
        agents = manager.get("/api/v1/agents")["items"]
        assert len(agents) == 1 and agents[0]["droppedReports"] == 0
        for name in DEVICES:
            truth = _truth(name)
            totals = sorted(c["oid"] for c in truth["counter"] if c["kind"] == "total")
            items = manager.get(_key_url(truth["key"], "/counters?kind=total&limit=1000"))["items"]
            per_report: dict[str, list[str]] = {}
            for i in items:
                per_report.setdefault(i["reportId"], []).append(i["oid"])
            assert len(per_report) == created, f"{name}: {len(per_report)} of {created} readings"
            for oids in per_report.values():  # each reading once: its total counters once each
                assert sorted(oids) == totals, f"{name}: {oids}"
        print(f"\ne2e ({database[0]}): {created} reports in {time.monotonic() - t0:.1f} s")
    finally:
        for p in (agent.proc, manager.proc):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)


def test_demo_starts_everything_and_cleans_up(tmp_path: Path) -> None:
    port = _free_tcp_port()
    work = tmp_path / "demo"
    proc = subprocess.Popen(
        [*CLI, "demo", "--port", str(port), "--poll-interval", "2", "--dir", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C stops the demo" in line:
                break
        text = "".join(lines)
        assert "13 devices reported to the manager" in text, text
        assert f"http://127.0.0.1:{port}/api/v1/devices" in text
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/api/v1/devices").status_code == 401  # no operator token
        m = re.search(r"METERSYNC_API_TOKEN=(\S+)", text)
        assert m, text
        api = {"Authorization": f"Bearer {m.group(1)}"}
        assert len(httpx.get(url + "/api/v1/devices", headers=api).json()["items"]) == 13
        login = re.search(r"user demo, password (\S+)", text)  # the console's demo login
        assert login and f"{url}/\n" in text, text
        with httpx.Client(base_url=url) as browser:
            form = browser.get("/console/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form)
            assert csrf, form
            data = {"username": "demo", "password": login.group(1), "csrf": csrf.group(1)}
            assert browser.post("/console/login", data=data).status_code == 302
            assert browser.get("/console/").text.count("<tr data-key=") == 13
        _wait("a second report", lambda: httpx.get(url + "/api/v1/agents", headers=api).json()[
            "items"][0]["reports"] >= 2, 20)  # fmt: skip
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, out
    assert "stopping" in out and "files kept" in out
    with pytest.raises(httpx.HTTPError):  # the manager is gone
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert "agent stopped; outbox closed" in (work / "logs" / "agent.log").read_text()
