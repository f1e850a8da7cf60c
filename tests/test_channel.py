"""Bidirectional mode end to end: `metersync manager serve`, `metersync agent run` and snmpsim.

Three agents, one process each, against two managers on loopback:

- agent A, channel enabled, manager 1 (WebSocket allowed): the manager's operator API reads
  /status, /devices, a device and a fresh read over the WebSocket;
- agent B, channel enabled, manager 2 started with `--no-channel-websocket` (as behind a proxy
  that blocks WebSocket): the same reads arrive over long-poll;
- agent C, channel not enabled (the default), manager 1: it delivers reports but never opens a
  channel, and never logs a channel attempt.

Then a POST sent over a real channel (ChannelResources, the agent's request handler) is
refused with 5001 without touching anything, and the manager refuses unsigned, replayed and
skewed upgrades.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_end_to_end import _free_tcp_port, _wait, simulated_printers

from metersync import signing, xml_edge
from metersync_agent.config import settings_from_toml_text

RECORDINGS = Path(__file__).resolve().parents[1] / "reference_agent" / "recordings"
DEVICES = ["kyocera_ecosys", "brother_hl"]
HOSTS = [f"127.0.6.{20 + i}" for i in range(len(DEVICES))]
CLI = [sys.executable, "-m", "metersync.cli"]
NS = "{urn:metersync:v1}"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def printers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with simulated_printers(tmp_path_factory.mktemp("channel-printers"), HOSTS, DEVICES) as port:
        yield f"{HOSTS[0]}-{HOSTS[-1]}:{port}"


class Proc:
    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Manager(Proc):
    def __init__(self, data: Path, log: Path, *extra: str) -> None:
        self.data = data
        self.port = _free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [*CLI, "manager", "serve", "--bind", f"127.0.0.1:{self.port}"]
            + ["--data-dir", str(data), "--channel-hold", "2", *extra],
            log,
        )

    def token(self) -> str:
        out = subprocess.run(
            [*CLI, "manager", "token", "create", "--data-dir", str(self.data)],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    @functools.cached_property
    def api_headers(self) -> dict[str, str]:
        """An operator token for the /api/v1 API (MS-HTTP-18)."""
        out = subprocess.run(
            [*CLI, "manager", "api-token", "create", "--data-dir", str(self.data)],
            capture_output=True,
            text=True,
            check=True,
        )
        return {"Authorization": f"Bearer {out.stdout.strip()}"}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=60, headers=self.api_headers, **kw)


def _agent(tmp: Path, name: str, manager: Manager, token: str, target: str, on: bool) -> Proc:
    channel = "[channel]\nenabled = true\n" if on else ""
    settings = settings_from_toml_text(
        f"""
[manager]
url = "{manager.url}"
enrollment_token = "{token}"
[http]
timeout = 10
[targets]
include = ["{target}"]
[[credentials]]
version = "2c"
community = "public"
[schedule]
poll_interval = 60
discovery_interval = 3600
[snmp]
timeout = 1
retries = 1
device_budget = 10
{channel}"""
    )
    assert settings.channel_enabled is on
    assert settings.provisioning is not None
    config = tmp / f"{name}.xml"
    config.write_bytes(xml_edge.to_bytes(settings.provisioning))
    os.chmod(config, 0o600)
    return Proc(
        [*CLI, "agent", "run", "--config", str(config), "--state-dir", str(tmp / name)],
        tmp / f"{name}.log",
    )


def _agent_id(tmp: Path, name: str) -> str:
    return (tmp / name / "agent-id").read_text().strip()


def _root(body: bytes) -> Any:
    return xml_edge.parse_tree(body)


def _read_everything(m: Manager, agent_id: str, transport: str, logs: str) -> None:
    base = f"/api/v1/agents/{agent_id}/channel"
    r = m.get(base, params={"path": "/status"})
    assert r.status_code == 200, (r.text, logs)
    assert r.headers["MeterSync-Channel-Transport"] == transport
    root = _root(r.content)
    assert root.tag == f"{NS}AgentStatus" and root.get("agentId") == agent_id
    assert root.findtext(f"{NS}channelEnabled") == "true"

    # /devices lists both printers, once each poll cycle has seen them
    def listed() -> dict[str, Any]:
        got = _root(m.get(base, params={"path": "/devices"}).content)
        keys = {d.findtext(f"{NS}deviceKey"): d for d in got.iter(f"{NS}device")}
        return keys if len(keys) == len(DEVICES) else {}

    keys = _wait("both printers in /devices", listed, 20, logs=logs)
    key = sorted(keys)[0]
    ip = keys[key].findtext(f"{NS}ipAddress")
    assert ip in HOSTS

    r = m.get(base, params={"path": f"/devices/{key}"})
    assert r.status_code == 200, r.text
    held = _root(r.content)
    assert held.tag == f"{NS}Device"
    assert held.findtext(f"{NS}identity/{NS}deviceKey") == key

    r = m.get(base, params={"path": f"/devices/{key}/fresh"})
    assert r.status_code == 200, (r.text, logs)
    fresh = _root(r.content)
    assert fresh.findtext(f"{NS}identity/{NS}deviceKey") == key
    assert fresh.get("polledAt") > held.get("polledAt")  # a new poll, made for the request

    r = m.get(base, params={"path": "/devices/sn:nobody:nothing"})
    assert r.status_code == 404 and _root(r.content).findtext(f"{NS}code") == "5002"
    # the operator API refuses what is not a resource of Table 10-1 before sending anything
    assert m.get(base, params={"path": "/config"}).status_code == 400


def test_channel_websocket_longpoll_and_off_by_default(printers: str, tmp_path: Path) -> None:
    m1 = Manager(tmp_path / "m1", tmp_path / "m1.log")
    m2 = Manager(tmp_path / "m2", tmp_path / "m2.log", "--no-channel-websocket")
    procs: list[Proc] = [m1, m2]
    logs = f"logs in {tmp_path}"
    try:
        tokens = [m1.token(), m1.token(), m2.token()]
        for m in (m1, m2):
            _wait("manager up", lambda m=m: m.get("/healthz").status_code == 200, 30)
        procs.append(_agent(tmp_path, "a", m1, tokens[0], printers, True))
        procs.append(_agent(tmp_path, "c", m1, tokens[1], printers, False))
        procs.append(_agent(tmp_path, "b", m2, tokens[2], printers, True))
        # An agent not yet connected: the operator is told so, nothing is sent.
        _wait("agent a enrolled", lambda: (tmp_path / "a" / "enrolled").exists(), 20, logs=logs)
        a_id = _agent_id(tmp_path, "a")
        channels = {}
        for m, want in ((m1, "websocket"), (m2, "longpoll")):

            def connected(m: Manager = m) -> list[Any]:
                return m.get("/api/v1/channels").json()["items"]

            items = _wait(f"a channel at {m.url}", connected, 20, logs=logs)
            assert [i["transport"] for i in items] == [want], items
            channels[want] = items[0]["agentId"]
        assert channels["websocket"] == a_id
        b_id = _agent_id(tmp_path, "b")
        assert channels["longpoll"] == b_id

        _read_everything(m1, a_id, "websocket", logs)
        _read_everything(m2, b_id, "longpoll", logs)

        # Agent C (channel not enabled) delivered reports but never opened a channel.
        c_id = _agent_id(tmp_path, "c")
        _wait("agent c reported", lambda: m1.get(f"/api/v1/agents/{c_id}").json()["reports"], 20)
        assert [i["agentId"] for i in m1.get("/api/v1/channels").json()["items"]] == [a_id]
        r = m1.get(f"/api/v1/agents/{c_id}/channel", params={"path": "/status"})
        assert r.status_code == 409, r.text
        assert "metersync.agent.channel" not in (tmp_path / "c.log").read_text()
        assert "channel open (WebSocket)" in (tmp_path / "a.log").read_text()
        assert "channel open (long-poll)" in (tmp_path / "b.log").read_text()

        for p in procs[2:]:  # the agents: the rest needs only the managers
            p.stop()
        asyncio.run(_upgrade_refusals(m1, tmp_path))
        _manager_conformance(m1)
    finally:
        for p in reversed(procs):
            p.stop()


async def _upgrade_refusals(m: Manager, tmp: Path) -> None:
    """The manager authenticates the upgrade: unsigned 2001, replayed 2005, skewed 2004."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    from metersync_agent.enrollment import load_or_create_identity

    ident = load_or_create_identity(tmp / "a")
    url = m.url.replace("http:", "ws:") + "/v1/channel"

    def headers(when: float) -> dict[str, str]:
        date = signing.format_date(when)
        sig = ident.sign(signing.bodyless_bytes("GET", "/v1/channel", date))
        return {signing.DATE_HEADER: date, signing.HEADER: sig}

    async def code(extra: dict[str, str]) -> str | None:
        try:
            ws = await connect(
                url, subprotocols=["metersync.v1"], additional_headers=extra, proxy=None
            )  # type: ignore[list-item]
        except InvalidStatus as exc:
            return _root(exc.response.body).findtext(f"{NS}code")
        await ws.close()
        return None

    assert await code({}) == "2001"
    good = headers(time.time())
    assert await code(good) is None  # accepted
    assert await code(good) == "2005"
    assert await code(headers(time.time() - 900)) == "2004"


# --- the agent's request handler without a server (sans-IO) ----------------------------------


class _View:
    """An agent state with one device; counts fresh reads so refusals can prove no action."""

    agent_id = "9b2f6c1e-4d7a-4e8b-9c3d-2f1a0b9c8d7e"

    def __init__(self, snap: Any) -> None:
        self.snap = snap
        self.fresh_reads = 0
        self.release = asyncio.Event()

    async def status_info(self) -> Any:
        raise AssertionError("not used here")

    def snapshots(self) -> dict[str, Any]:
        return {self.snap.identity.device_key: self.snap}

    async def fresh(self, key: str) -> Any:
        self.fresh_reads += 1
        await self.release.wait()
        return self.snap


def _request(method: str, path: str, rid: str) -> bytes:
    return (
        f'<ChannelRequest xmlns="urn:metersync:v1" version="1.0"><requestId>{rid}</requestId>'
        f"<method>{method}</method><path>{path}</path>"
        "<createdAt>2026-11-28T08:15:02Z</createdAt></ChannelRequest>"
    ).encode()


def _answer(data: bytes | None) -> tuple[int, str, str | None]:
    assert data is not None
    resp = xml_edge.parse_message(data, expect=("ChannelResponse",)).obj
    err = resp.body.error
    return resp.status, resp.request_id, None if err is None else str(err.code)


def test_channel_requests_refused_by_the_agent() -> None:
    from metersync_agent.channel import ChannelResources

    device = xml_edge.parse_message(
        (Path(__file__).resolve().parents[1] / "spec/examples/valid/device.xml").read_bytes()
    ).obj
    view = _View(device)
    key = device.identity.device_key
    res = ChannelResources(view)
    rid = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(8)]

    async def scenario() -> None:
        # POST, PUT, DELETE: 405 with 5001, and no fresh read happened (MS-CH-7)
        for i, method in enumerate(("POST", "PUT", "DELETE")):
            got = await res.answer(_request(method, f"/devices/{key}/fresh", rid[i]))
            assert _answer(got) == (405, rid[i], "5001")
        assert view.fresh_reads == 0
        # unknown paths, queries, unknown devices: 404 with 5002 (MS-CH-9)
        for path in ("/config", "/status?x=1", "/devices/sn:nobody:x", "/devices/sn:x/fresh"):
            assert _answer(await res.answer(_request("GET", path, rid[3])))[2] == "5002", path
        # a second fresh read of the same device while one runs: 429 with 5005 (MS-CH-14)
        first = asyncio.ensure_future(res.answer(_request("GET", f"/devices/{key}/fresh", rid[4])))
        await asyncio.sleep(0.05)
        busy = await res.answer(_request("GET", f"/devices/{key}/fresh", rid[5]))
        assert _answer(busy) == (429, rid[5], "5005")
        view.release.set()
        assert _answer(await first) == (200, rid[4], None)
        # invalid request: answered by requestId when readable, ignored otherwise (MS-CH-15)
        bad = _request("GET", "/status", rid[6]).replace(b"<createdAt>", b"<createdAt>x")
        assert _answer(await res.answer(bad)) == (400, rid[6], "1008")
        assert await res.answer(b"<nonsense") is None
        # switched off: 403 with 5003 (MS-CH-1)
        off = ChannelResources(view, enabled=False)
        assert _answer(await off.answer(_request("GET", "/devices", rid[7])))[2] == "5003"

    asyncio.run(scenario())


def _manager_conformance(m: Manager) -> None:
    """The suite's Manager-Channel checks, the harness playing an agent, pass the reference."""
    from metersync_conformance.cli import run_manager
    from metersync_conformance.registry import Status

    cli = f"{sys.executable} -m metersync.cli manager"
    token = f"{cli} token create --data-dir {m.data}"
    api_token = f"{cli} api-token create --data-dir {m.data}"
    verdicts, _ = asyncio.run(
        run_manager(m.url, token, ["Manager-Channel"], api_token_command=api_token)
    )
    shown = "\n".join(f"{v.requirement} {v.status} {v.summary}" for v in verdicts)
    assert {v.requirement for v in verdicts if v.status is Status.PASS} == {
        "MS-CH-3", "MS-CH-4", "MS-CH-5", "MS-CH-8", "MS-CH-14", "MS-CH-17", "MS-MSG-8",
        "MS-CH-20", "MS-MSG-4", "MS-DEL-1", "MS-CH-18", "MS-ERR-3",
    }, shown  # fmt: skip
    assert all(v.status is Status.PASS for v in verdicts), shown
