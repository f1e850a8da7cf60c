"""The senses run: traps, adaptive polling and privacy masking (spec chapters 19 and 20).

A short run beside the main scenarios. Two recorded printers, one in an alert state (A:
hp_color_mfp, lowToner with alerts) and one idle (B: lexmark_ms, counters that never move),
served by snmpsim on 127.3.5.x; one agent process per stage, each with its own manager:

- `senses`: traps on at 127.3.4.1 (an ephemeral port: never 162 in a test), adaptive polling
  (pollInterval 12, minInterval 2, maxInterval 18) and every privacy field masked (drop or
  hash). After the first report the harness sends, as the printers would (from their own
  addresses): a trap from an address the agent does not poll and one with a wrong community
  (both must be counted and dropped); then from B a v2c trap and a burst of three more, from A
  an SNMPv1 trap and an SNMPv3 inform (USM, SHA/AES). Each carries its own trapOid, so the
  checks can follow every notification into the reports.
- `budget`: adaptive polling with pduBudget 0 and traps on for printer A at a third address:
  no poll may come earlier than the plain schedule, not even for a trap (MS-TRAP-9).
- `wildcard`: traps/address 0.0.0.0: the agent must refuse the document with 3001.

The listening sockets of each agent are inspected while it runs (agent/sockets.py); the
checks (agent/checks/senses.py) judge the records.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metersync.snmpsim import Endpoint, SnmpSimulator, free_udp_port, install_recording
from metersync_conformance.agent import sockets
from metersync_conformance.agent.harness import AgentProcess, Device, Setup, provisioning
from metersync_conformance.agent.truth import Recording, load, variation_dir
from metersync_conformance.peers.manager import FakeManager
from metersync_conformance.registry import Verdict, run_checks, select

ALERTING, IDLE = "hp_color_mfp", "lexmark_ms"
PRINTER_HOSTS = ("127.3.5.1", "127.3.5.2", "127.3.5.3")  # A, B, A again for the budget stage
STRANGER = "127.3.5.9"  # polled by no agent
TRAP_HOSTS = {"senses": "127.3.4.1", "budget": "127.3.4.2", "wildcard": "0.0.0.0"}
POLL, MIN, MAX, TRAP_MIN = 12, 2, 18, 6
SETUP = Setup(poll_interval=POLL, discovery_interval=600, http_timeout=5, snmp=(1.5, 0, 10))
SENSES_SECONDS, BUDGET_SECONDS, REFUSE_WAIT = 45.0, 36.0, 20.0
AFTER_LAST = MAX + 5.0  # a trap is reported with its device's next poll: at most maxInterval
TRAP_USER = ("msync-trap", "SHA", "trap-auth-2718", "AES", "trap-priv-3141")
TRAP_COMMUNITY = "traps-public"
TRAP_BASE = "1.3.6.1.4.1.99995.0"
PRIVACY = {
    "ipAddress": "hash",
    "macAddress": "hash",
    "hostname": "hash",
    "contact": "drop",
    "location": "hash",
    "consoleText": "drop",
    "alertDescription": "hash",
}
STAGES = ("senses", "budget", "wildcard")


@dataclass
class Sent:
    """One notification the harness sent."""

    at: float  # time.time() when sent
    source: str
    trap_oid: str
    version: str  # 1, 2c, 3
    pdu: str  # trap, inform
    good: bool  # from a polled device with good credentials: must be accepted
    why: str = ""  # for a bad one: unknownSource or badCredentials
    error: str = ""  # pysnmp's error indication (an inform not acknowledged)


@dataclass
class SenseStage:
    name: str
    manager: FakeManager
    trap_port: int = 0
    devices: list[Device] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    exit_code: int | None = None
    log: str = ""
    udp: list[sockets.Listener] = field(default_factory=list)  # unconnected UDP sockets seen
    tcp: list[sockets.Listener] = field(default_factory=list)  # TCP listeners seen
    reached: bool = False


@dataclass
class SensesRun:
    classes: tuple[str, ...]
    recordings: dict[str, Recording] = field(default_factory=dict)
    stages: dict[str, SenseStage] = field(default_factory=dict)

    def stage(self, name: str) -> SenseStage | None:
        return self.stages.get(name)


def is_senses_check(name: str) -> bool:
    """Checks of the senses run judge its records, not the main scenario's."""
    return name.startswith("senses_")


def _traps_xml(stage: str, port: int) -> str:
    user, aproto, akey, pproto, pkey = TRAP_USER
    return (
        f'<traps enabled="true"><address>{TRAP_HOSTS[stage]}</address><port>{port}</port>'
        f'<credentials><v1 community="{TRAP_COMMUNITY}"/><v2c community="{TRAP_COMMUNITY}"/>'
        f'<v3 user="{user}" authProtocol="{aproto}" authKey="{akey}" privProtocol="{pproto}" '
        f'privKey="{pkey}"/></credentials><minInterval>{TRAP_MIN}</minInterval></traps>'
    )


def _document(manager_url: str, stage: SenseStage) -> bytes:
    budget = "<pduBudget>0</pduBudget>" if stage.name == "budget" else ""
    adaptive = (
        f'<adaptivePolling enabled="true"><minInterval>{MIN}</minInterval>'
        f"<maxInterval>{MAX}</maxInterval>{budget}</adaptivePolling>"
    )
    privacy = "<privacy>" + "".join(f"<{k}>{v}</{k}>" for k, v in PRIVACY.items()) + "</privacy>"
    extra = _traps_xml(stage.name, stage.trap_port) + adaptive
    if stage.name == "senses":
        extra += privacy
    if stage.name == "wildcard":
        extra = _traps_xml("wildcard", stage.trap_port)
    doc = provisioning(manager_url, stage.devices, setup=SETUP)
    return doc.replace(b"\n</Provisioning>", ("\n  " + extra + "\n</Provisioning>").encode())


async def send(
    source: str,
    target: tuple[str, int],
    version: str,
    pdu: str,
    trap_oid: str,
    community: str = TRAP_COMMUNITY,
    auth_key: str | None = None,
) -> str:
    """Send one notification from `source` (a printer's address); pysnmp's error or ''."""
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        NotificationType,
        ObjectIdentity,
        OctetString,
        SnmpEngine,
        UdpTransportTarget,
        UsmUserData,
        send_notification,
        usmAesCfb128Protocol,
        usmHMACSHAAuthProtocol,
    )

    engine = SnmpEngine()
    try:
        t = await UdpTransportTarget.create(target, timeout=2, retries=1)
        t.set_local_address((source, 0))
        if version == "3":
            user, _, akey, _, pkey = TRAP_USER
            auth: Any = UsmUserData(
                user,
                auth_key or akey,
                pkey,
                authProtocol=usmHMACSHAAuthProtocol,
                privProtocol=usmAesCfb128Protocol,
            )
        else:
            auth = CommunityData(community, mpModel=0 if version == "1" else 1)
        note = NotificationType(ObjectIdentity(trap_oid)).add_varbinds(
            ("1.3.6.1.2.1.43.18.1.1.8.1.1", OctetString("Paper jam in tray 2, see Jane Doe"))
        )
        if version == "1":  # an SNMPv1 trap's enterprise and specific trap come from the OID
            note = NotificationType(ObjectIdentity(trap_oid))
        err, *_ = await send_notification(engine, auth, t, ContextData(), pdu, note)
        return str(err or "")
    finally:
        engine.close_dispatcher()


def _v1_oid(n: int) -> str:
    return f"{TRAP_BASE}.{n}"  # enterprise 1.3.6.1.4.1.99995, specific trap n (RFC 3584)


async def _notify(
    stage: SenseStage,
    source: str,
    n: int,
    version: str,
    pdu: str,
    good: bool,
    why: str = "",
    **kw: Any,
) -> None:
    oid = _v1_oid(n)
    at = time.time()
    target = (TRAP_HOSTS[stage.name], stage.trap_port)
    # In a thread with its own loop: a pysnmp engine costs ≈ 0.5 s of CPU to make, which must
    # not stall the harness's manager (the agents' reports would time out meanwhile).
    error = await asyncio.to_thread(
        lambda: asyncio.run(send(source, target, version, pdu, oid, **kw))
    )
    stage.sent.append(Sent(at, source, oid, version, pdu, good, why, error))


async def _watch(stage: SenseStage, agent: AgentProcess, stop: asyncio.Event) -> None:
    while not stop.is_set():
        pid = agent.pid
        if pid is not None:
            tree = sockets.process_tree(pid)
            for s in sockets.bound_udp(tree):
                if s not in stage.udp:
                    stage.udp.append(s)
            for s in sockets.listeners(tree):
                if s.proto.startswith("tcp") and s not in stage.tcp:
                    stage.tcp.append(s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def _script(stage: SenseStage) -> None:
    """The notifications of the stage, after the first report with its printers."""
    serials = {str(d.recording.truth.get("serial", "")).lower() for d in stage.devices}
    rec = stage.manager.rec

    def first() -> bool:  # by serial: the key is judged on its own (MS-PRIV-5)
        return any(
            serials <= {(d.identity.serial_number or "").lower() for d in r.obj.device}
            for r in rec.reports()
        )

    stage.reached = await rec.wait_for(first, 30.0, poll=0.5)
    if not stage.reached:
        return
    a, *rest = stage.devices
    if stage.name == "budget":
        await asyncio.sleep(3)
        await _notify(stage, a.host, 9, "2c", "trap", True)
        return
    b = rest[0]
    await asyncio.sleep(2)
    await _notify(stage, STRANGER, 1, "2c", "trap", False, "unknownSource")
    await _notify(stage, b.host, 2, "2c", "trap", False, "badCredentials", community="wrong")
    await _notify(
        stage, a.host, 10, "3", "inform", False, "badCredentials", auth_key="not-the-auth-key"
    )
    await asyncio.sleep(4)
    await _trigger_window(stage, b)
    await _notify(stage, b.host, 3, "2c", "trap", True)
    await asyncio.sleep(0.5)
    for n in (4, 5, 6):
        await _notify(stage, b.host, n, "2c", "trap", True)
    await _notify(stage, a.host, 7, "1", "trap", True)
    await _notify(stage, a.host, 8, "3", "inform", True)


async def _trigger_window(stage: SenseStage, b: Device, timeout: float = 30.0) -> None:
    """Until B was last polled more than traps/minInterval ago and its next poll is at least
    8 s away: a trap then must start a read of its own (MS-TRAP-4), not wait for a poll."""
    serial = str(b.recording.truth.get("serial", "")).lower()
    deadline = time.time() + timeout
    while time.time() < deadline:
        snaps = [
            d
            for r in stage.manager.rec.reports()
            for d in r.obj.device
            if (d.identity.serial_number or "").lower() == serial
        ]
        if snaps:
            last = max(snaps, key=lambda d: d.polled_at.to_datetime())
            since = time.time() - last.polled_at.to_datetime().timestamp()
            if since > TRAP_MIN + 1 and (last.interval or POLL) - since >= 8:
                return
        await asyncio.sleep(0.2)


async def _drive(stage: SenseStage, agent: AgentProcess) -> None:
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(stage, agent, stop))
    stage.started = time.time()
    agent.start()
    try:
        if stage.name == "wildcard":
            deadline = time.monotonic() + REFUSE_WAIT
            while agent.pid is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            stage.reached = agent.pid is None
        else:
            await _script(stage)
            seconds = SENSES_SECONDS if stage.name == "senses" else BUDGET_SECONDS
            last = max((s.at for s in stage.sent), default=0.0)  # room for the last to arrive
            end = max(stage.started + seconds, last + AFTER_LAST)
            await asyncio.sleep(max(0.0, end - time.time()))
    finally:
        stop.set()
        await watcher
        stage.ended = time.time()
        stage.exit_code = await agent.stop()
        stage.log = agent.log.read_text(errors="replace")[-3000:] if agent.log.exists() else ""


async def run_senses(
    command: str,
    classes: list[str],
    *,
    walks: Path | None = None,
    keep: Path | None = None,
    only: str = "",
    progress: Callable[..., None] | None = None,
    stages: tuple[str, ...] = STAGES,
) -> tuple[list[Verdict], float]:
    """Run the stages, then the senses checks (NOT TESTED without the two recordings)."""
    started = time.monotonic()
    run = SensesRun(tuple(classes))
    checks = [c for c in select("agent", classes) if is_senses_check(c.name) and only in c.name]
    recs = {r.name: r for r in load(walks) if r.name in (ALERTING, IDLE)}
    if len(recs) < 2 or not checks:
        return await run_checks(checks, run, progress), time.monotonic() - started
    run.recordings = recs
    tmp = None
    if keep:
        work = keep
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="metersync-conformance-senses-")
        work = Path(tmp.name)
    port = free_udp_port(*PRINTER_HOSTS)
    plan = {
        "senses": [(ALERTING, 0), (IDLE, 1)],
        "budget": [(ALERTING, 2)],
        "wildcard": [(IDLE, 1)],
    }
    endpoints, agents = [], {}
    for i, host in enumerate(PRINTER_HOSTS):
        rec = recs[IDLE if i == 1 else ALERTING]
        data = work / "printers" / host
        install_recording(rec.snmprec, data)
        endpoints.append(Endpoint(host, port, data))
    printers = SnmpSimulator(endpoints=endpoints, variation_modules_dir=variation_dir(walks))
    try:
        await asyncio.to_thread(printers.start)
        for name in stages:
            manager = await FakeManager().start()
            stage = run.stages[name] = SenseStage(name, manager)
            stage.trap_port = free_udp_port(TRAP_HOSTS[name] if name != "wildcard" else "127.0.0.1")
            stage.devices = [
                Device(recs[r], PRINTER_HOSTS[i], port, work / "printers" / PRINTER_HOSTS[i])
                for r, i in plan[name]
            ]
            folder = work / name
            (folder / "state").mkdir(parents=True, exist_ok=True)
            prov = folder / "provisioning.xml"
            prov.write_bytes(_document(manager.url, stage))
            prov.chmod(0o600)
            agents[name] = AgentProcess(command, prov, folder / "state", folder / "agent.log")
        await asyncio.gather(*(_drive(run.stages[n], agents[n]) for n in stages))
    finally:
        for agent in agents.values():
            await agent.stop()
        for stage in run.stages.values():
            await stage.manager.stop()
        await asyncio.to_thread(printers.stop)
    verdicts = await run_checks(checks, run, progress)
    if tmp:
        tmp.cleanup()
    return verdicts, time.monotonic() - started
