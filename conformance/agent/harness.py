"""Running an agent under test: printers, a manager, a provisioning file, and a scenario.

The harness plays every other party. It serves each recording of a walks directory with snmpsim
on its own loopback address (one port for all), plays the manager (fake_manager), writes the
Provisioning document pointing the agent at them with short intervals, starts the vendor's
command and drives a scenario, recording everything; the agent checks judge the records after:

1. baseline: every printer reported at least once (values compared with the truth files);
2. changes: a printer moves to a new address (`<name>_moved` recording), another is swapped
   (`<prefix>_before` → `<prefix>_after` at the same address: its counter goes down);
3. Retry-After: the next two report posts get 503 with `Retry-After: 2`;
4. outage: every report post gets 503 without Retry-After for a while (backoff is measured),
   then the agent is stopped, the manager comes back and the agent is started again: every
   report queued must arrive, under its first id, with its first bytes.

A second kind of run (`Setup(fringe=True)`, phases `answers`, `limits`) plays the manager's
and the network's hard cases on a few printers: credentials in an order where an SNMPv3 user
with a wrong key and a wrong community come first, targets given as a range with an excluded
address (a UDP listener there must never hear a packet), a device that is no printer, a printer
slow enough to spend its device budget, then scripted answers to report posts (peers/answers.py),
then a re-provisioning with a tiny outbox during an outage (retention limits).

Throughout, the agent's process tree is inspected for listening sockets.

An agent claiming Agent-SMTP without Agent-HTTP is provisioned with SMTP only: it enrolls with
the harness manager over HTTP and mails its reports to the harness relay (fake_relay), and the
scenario is the baseline, then `smtp_transient`: the relay answers 451 to the next two mails,
which must come again, byte for byte, and be accepted once; then `smtp_refusals`: the relay
plays 5xx replies to the end of the data (with a MeterSync code that means a refusal, without a
code, with a code that means retry) and to MAIL and RCPT (fake_relay.SCRIPT, MS-SMTP-13).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metersync import xml_edge
from metersync.snmpsim import (
    Endpoint,
    SnmpSimulator,
    V3User,
    free_udp_port,
    install_recording,
)
from metersync_conformance.agent import sockets
from metersync_conformance.agent.truth import Recording, load, variation_dir
from metersync_conformance.peers import answers
from metersync_conformance.peers.manager import FakeManager, Received, Recorder
from metersync_conformance.peers.proxy import Proxy
from metersync_conformance.peers.snmp_relay import Relay, trap
from metersync_conformance.registry import Verdict, run_checks, select

TOKEN = "conformanceToken0123456789abcdef"
HOST_PREFIX = "127.3.0."
POLL_INTERVAL = 4
OUTAGE_SECONDS = 8.0
LIMITS_SECONDS = 4.0  # the shortest outage of the fringe run's limits phase
RETRY_AFTER = 2
PHASES = (
    "baseline",
    "changes",
    "retry_after",
    "outage",
    "restart",
    "recovery",
    "update",
    "licence_limit",
    "automatic",
)
SMTP_PHASES = ("baseline", "smtp_transient", "smtp_refusals")
SMTP_FROM = "agent@conformance.invalid"
SMTP_TO = "reports@conformance.invalid"
# "channel" (agent/channel_phase.py) follows them when Agent-Channel is claimed.
FRINGE_PHASES = ("baseline", "answers", "limits", "recovery")
LIMIT_REPORTS = 1  # outbox/maxReports of the limits phase
V3_WRONG = ("simulator", "wrong-auth-key-31337", "wrong-priv-key-73313")
DECOY_COMMUNITY = "decoy-community-4711"
V3_GOOD = ("metersync-v3", "SHA256", "auth-key-v3-5150", "AES", "priv-key-v3-6160")
PROXY_LOGIN = ("agent", "proxy-pass-2718")

# A device that answers SNMP but is no printer (a router): discovery must not report it.
NOT_A_PRINTER = """1.3.6.1.2.1.1.1.0|4|Conformance edge router
1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.9.1.1
1.3.6.1.2.1.1.3.0|67|99
1.3.6.1.2.1.1.5.0|4|router
1.3.6.1.2.1.2.2.1.6.1|4x|020000c0ffee
1.3.6.1.2.1.25.3.2.1.1.1|2|1
1.3.6.1.2.1.25.3.2.1.2.1|6|1.3.6.1.2.1.25.3.1.3
1.3.6.1.2.1.25.3.2.1.3.1|4|CPU
"""

# A printer whose tables each answer after 1.2 s (snmpsim's delay module, below the SNMP
# timeout): its poll spends the device budget; what was read before must still be reported. It
# is switched on only for the limits phase (a restart, so a new discovery), because every cycle
# waits for its slowest device.
SLOW_PRINTER = """1.3.6.1.2.1.1.1.0|4|Slow printer
1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.99997.1
1.3.6.1.2.1.1.3.0|67|77
1.3.6.1.2.1.1.5.0|4|slow
1.3.6.1.2.1.2.2.1.6.1|4x|020000511077
1.3.6.1.2.1.25.3.2.1.1.1|2|1
1.3.6.1.2.1.25.3.2.1.2.1|6|1.3.6.1.2.1.25.3.1.5
1.3.6.1.2.1.25.3.2.1.3.1|4|Slow printer
1.3.6.1.2.1.25.3.2.1.5.1|2|2
1.3.6.1.2.1.25.3.5.1.1.1|2|3
1.3.6.1.2.1.43.5.1.1.17.1|4|SLOW0001
1.3.6.1.2.1.43.8.2.1.9.1.1|2:delay|value=500,wait=1200
1.3.6.1.2.1.43.10.2.1.4.1.1|65:delay|value=42,wait=1200
1.3.6.1.2.1.43.11.1.1.9.1.1|2:delay|value=50,wait=1200
1.3.6.1.2.1.43.16.5.1.2.1.1|4:delay|value=READY,wait=1200
1.3.6.1.2.1.43.18.1.1.7.1.1|2:delay|value=8,wait=1200
"""
SLOW_KEY = "sn:ent99997:slow0001"

# With an update command: a printer that appears after the agent got a licence whose maxDevices
# is the number of printers it monitors (MS-UPD-22). Its address sorts before the others, so
# an agent keeping "the first N" by address or key drops a device it already monitored. Until
# then the address answers as a router (NOT_A_PRINTER), so discovery never waits for it.
EXTRA_HOST = f"{HOST_PREFIX}9"
EXTRA_PRINTER = """1.3.6.1.2.1.1.1.0|4|Extra printer
1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.99996.1
1.3.6.1.2.1.1.3.0|67|88
1.3.6.1.2.1.1.5.0|4|extra
1.3.6.1.2.1.2.2.1.6.1|4x|020000e7a001
1.3.6.1.2.1.25.3.2.1.1.1|2|1
1.3.6.1.2.1.25.3.2.1.2.1|6|1.3.6.1.2.1.25.3.1.5
1.3.6.1.2.1.25.3.2.1.3.1|4|Extra printer
1.3.6.1.2.1.25.3.2.1.5.1|2|2
1.3.6.1.2.1.25.3.5.1.1.1|2|3
1.3.6.1.2.1.43.5.1.1.17.1|4|EXTRA0001
1.3.6.1.2.1.43.10.2.1.4.1.1|65|1000
"""
EXTRA_KEY = "sn:ent99996:extra0001"
# In the limits phase the text printer is replaced by another one at the same address: another
# serial number, a lower counter (MS-ID-5: a new device, no counter carried over).
REPLACED = ("text_latin1", "TX-0001", "TX-0002", "1234", "5")
REPLACED_KEY = "sn:ent99998:tx-0002"


@dataclass(frozen=True)
class Setup:
    """What a run serves and provisions (the defaults: the full scenario on every recording)."""

    recordings: tuple[str, ...] | None = None  # recording names; None: all of the walks
    poll_interval: int = POLL_INTERVAL
    discovery_interval: int = POLL_INTERVAL
    http_timeout: int = 10
    gzip: bool = True
    snmp: tuple[float, int, int] = (2, 1, 20)  # timeout, retries, deviceBudget
    fringe: bool = False  # wrong credentials first, a range with an exclusion, odd devices
    vanish: str | None = None  # a recording served alone and switched off in phase changes
    script: tuple[str, ...] | None = None  # answers played in phase answers; None: all
    relay: str | None = None  # a recording whose SNMP requests are watched (peers/snmp_relay.py)
    proxy: bool = False  # the manager is reached through the harness's HTTP proxy (peers/proxy.py)
    refusals: bool = True  # with fringe: first start the agent with bad Provisioning documents
    v3: bool = False  # printers know only the SNMPv3 user V3_GOOD; provisioned first (MS-SNMP-2)
    walk_cap: bool = False  # a printer whose table passes the walk cap (peers/walk_cap.py)


# A short run of its own: one plain printer and the one with the long table, baseline only.
WALK_CAP = Setup(recordings=("lexmark_ms",), walk_cap=True)
WALK_CAP_PHASES = ("baseline",)
# A short run of its own: one printer that knows only an SNMPv3 user (MS-SNMP-2, a SHOULD).
SNMPV3 = Setup(recordings=("lexmark_ms",), v3=True)
SNMPV3_PHASES = ("baseline",)

FRINGE = Setup(
    recordings=("brother_hl", "text_latin1"),
    relay="brother_hl",
    proxy=True,
    poll_interval=2,
    discovery_interval=600,
    http_timeout=4,
    snmp=(1.5, 0, 3),
    fringe=True,
)


@dataclass
class Device:
    """A simulated printer in the scenario: where it is served and what it must report."""

    recording: Recording
    host: str
    port: int
    data_dir: Path
    role: str = "plain"  # plain / mover / moved / swap


@dataclass
class LicenceLimit:
    """Phase licence_limit: the licence allows the `kept` devices; `extra` appears at `t_on`."""

    t_on: float
    settled: float  # by then the agent had a discovery and a poll cycle with the extra printer
    kept: set[str]
    extra: str
    max_devices: int


@dataclass
class AgentContext:
    """Everything observed during the run, for the checks to judge."""

    rec: Recorder
    devices: list[Device]
    token: str = TOKEN
    phases: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    planned: tuple[str, ...] = PHASES
    reached: dict[str, bool] = field(default_factory=dict)
    move: tuple[Device, Device] | None = None  # (before, after)
    swap: tuple[Device, Device] | None = None
    listening: list[sockets.Listener] = field(default_factory=list)
    inspected: int = 0  # how many times the process tree was inspected
    pids_seen: set[int] = field(default_factory=set)
    restart_at: float | None = None
    log_path: Path | None = None
    exit_codes: list[int | None] = field(default_factory=list)
    mover_responder: SnmpSimulator | None = None
    moved_responder: SnmpSimulator | None = None
    update: Any = None  # update_harness.UpdateRun when Agent-Update is claimed
    channel: Any = None  # channel_harness.ChannelRun when the channel phase ran
    setup: Setup = field(default_factory=Setup)
    classes: tuple[str, ...] = ()
    provisioned: list[bytes] = field(default_factory=list)  # every document given, in order
    secrets: tuple[str, ...] = ()  # what must never appear in a report or a log
    excluded: tuple[str, int] | None = None  # an excluded target (a silent UDP listener)
    excluded_hits: int = 0  # datagrams the excluded address received
    not_printer: str | None = None  # host of the device that is no printer
    slow: str | None = None  # host of the printer that spends its budget
    twin: tuple[str, Device] | None = None  # a second address serving that device (MS-ID-8)
    vanished: Device | None = None
    vanish_responder: SnmpSimulator | None = None
    replaced: str | None = None  # host where REPLACED took place
    relay: Relay | None = None
    walk_cap: Any = None  # walk_cap.WalkCapPrinter when setup.walk_cap
    mail_relay: Any = None  # fake_relay.FakeRelay in SMTP-only mode
    proxy: Proxy | None = None
    trap_payload: bytes = b""  # sent in a trap to UDP 162 during the baseline (MS-SNMP-3)
    refusals: list[tuple[str, str, int | None, str, int]] = field(default_factory=list)
    # (bad document, expected code, exit code, output, requests the manager got meanwhile)
    licence_limit: LicenceLimit | None = None  # phase licence_limit (MS-UPD-22)

    def begin(self, name: str) -> None:
        """A scenario phase starts now."""
        self.phases[name] = (time.monotonic(), None)

    def end(self, name: str, reached: bool | None = None, at: float | None = None) -> None:
        """The phase ends now (or `at`); `reached`: whether its goal was reached."""
        self.phases[name] = (self.phases[name][0], time.monotonic() if at is None else at)
        if reached is not None:
            self.reached[name] = reached

    def phase(self, name: str) -> tuple[float, float]:
        t0, t1 = self.phases.get(name, (0.0, None))
        return t0, t1 if t1 is not None else float("inf")

    def reports_in(self, name: str) -> list[Received]:
        t0, t1 = self.phase(name)
        return [r for r in self.rec.reports() if t0 <= r.t < t1]

    def agent_log(self, tail: int = 1500) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-tail:]
        return ""


def plan_devices(
    recordings: list[Recording], root: Path, fringe: int = 0, spare: int = 0
) -> tuple[list[Device], dict[str, Any]]:
    """Addresses and roles: movers and their moved twins, swap pairs, and the rest; `fringe`
    more addresses (excluded, not a printer, slow) in the middle of the range; `spare` more
    at its end."""
    by_name = {r.name: r for r in recordings}
    devices: list[Device] = []
    extra: dict[str, Any] = {}
    twin = 1 if fringe else 0  # one more address, last: a second interface of a printer
    hosts = [f"{HOST_PREFIX}{10 + i}" for i in range(len(recordings) + fringe + twin + spare)]
    port = free_udp_port(*hosts)
    extra["spare"] = [hosts.pop() for _ in range(spare)]
    if fringe:
        extra["twin"] = hosts.pop()
        extra["fringe"] = tuple(hosts.pop(1) for _ in range(fringe))
    taken = iter(hosts)

    def add(rec: Recording, role: str, host: str | None = None) -> Device:
        h = host or next(taken)
        d = Device(rec, h, port, root / "printers" / rec.name, role)
        devices.append(d)
        return d

    for rec in recordings:
        name = rec.name
        if name.endswith("_moved") or name.endswith("_after"):
            continue
        if f"{name}_moved" in by_name:
            before = add(rec, "mover")
            after = add(by_name[f"{name}_moved"], "moved")
            extra["move"] = (before, after)
        elif name.endswith("_before") and f"{name[:-7]}_after" in by_name:
            before = add(rec, "swap")
            after = Device(
                by_name[f"{name[:-7]}_after"], before.host, port, before.data_dir, "swap"
            )
            extra["swap"] = (before, after)
        else:
            add(rec, "plain")
    return devices, extra


def is_tls_check(name: str) -> bool:
    """Checks of the TLS run (agent/tls_run.py) judge its records, not this scenario's."""
    return name.startswith("tls_")


def smtp_only_mode(classes: list[str]) -> bool:
    return "Agent-SMTP" in classes and "Agent-HTTP" not in classes


def provisioning(
    manager_url: str,
    devices: list[Device],
    smtp: tuple[str, int] | None = None,
    *,
    setup: Setup | None = None,
    targets: str | None = None,
    outbox: str = "",
    proxy: str = "",
    mode: str = "manual",
    feed_url: str | None = None,
    trusted_root: str | None = None,
    check_interval: int | None = None,
    channel: bool = False,
    manager_extra: str = "",
    transports_xml: str | None = None,
) -> bytes:
    """The Provisioning document of a run; `manager_extra` goes into <manager> after the token
    (caBundle, clientCertificate), `transports_xml` replaces the transports' content."""
    from xml.sax.saxutils import escape

    setup = setup or Setup()
    if targets is None:
        targets = "\n".join(f"    <include>{d.host}:{d.port}</include>" for d in devices)
    http = f"<timeout>{setup.http_timeout}</timeout><gzip>{str(setup.gzip).lower()}</gzip>"
    transports = f'<http enabled="true">{http}</http>'
    if smtp is not None:
        transports = (
            '<http enabled="false"/><smtp enabled="true">'
            f"<host>{smtp[0]}</host><port>{smtp[1]}</port><security>none</security>"
            f"<from>{SMTP_FROM}</from><to>{SMTP_TO}</to></smtp>"
        )
    if transports_xml is not None:
        transports = transports_xml
    updates = "".join(
        [
            f"<feedUrl>{escape(feed_url)}</feedUrl>" if feed_url else "",
            f"<checkInterval>{check_interval}</checkInterval>" if check_interval else "",
            f"<trustedRoot>{escape(trusted_root)}</trustedRoot>" if trusted_root else "",
        ]
    )
    if setup.fringe:
        user, auth, priv = V3_WRONG
        creds = (
            f'<v3 user="{user}" authProtocol="MD5" authKey="{auth}" privProtocol="DES" '
            f'privKey="{priv}"/>\n    <v2c community="{DECOY_COMMUNITY}"/>\n'
            '    <v1 community="public"/>'
        )
    elif setup.v3:
        user, aproto, akey, pproto, pkey = V3_GOOD
        creds = (
            f'<v3 user="{user}" authProtocol="{aproto}" authKey="{akey}" privProtocol="{pproto}" '
            f'privKey="{pkey}" context="public"/>\n    <v2c community="public"/>'
        )
    else:
        creds = '<v2c community="public"/>'
    timeout, retries, budget = setup.snmp
    proxy_xml = f"<proxy>{proxy}</proxy>" if proxy else ""
    doc = f"""<?xml version="1.0" encoding="UTF-8"?>
<Provisioning xmlns="urn:metersync:v1" version="1.0">
  <manager>
    <url>{manager_url}</url>
    <enrollmentToken>{TOKEN}</enrollmentToken>{manager_extra}{proxy_xml}
  </manager>
  <transports>
    {transports}
  </transports>
  <targets>
{targets}
  </targets>
  <credentials>
    {creds}
  </credentials>
  <schedule>
    <pollInterval>{setup.poll_interval}</pollInterval>
    <discoveryInterval>{setup.discovery_interval}</discoveryInterval>
    <jitter>0</jitter>
    <startDelayMax>0</startDelayMax>
  </schedule>
  <snmp><timeout>{timeout}</timeout><retries>{retries}</retries><deviceBudget>{budget}</deviceBudget><concurrency>16</concurrency></snmp>
  <channel enabled="{"true" if channel else "false"}"/>
  <updates mode="{mode}">{updates}</updates>{outbox}
</Provisioning>
"""
    data = doc.encode("utf-8")
    xml_edge.parse_message(data, expect=("Provisioning",))  # the harness's own document is valid
    return data


class AgentProcess:
    """The vendor's command, started in its own session so its whole tree can be signalled."""

    def __init__(self, command: str, provisioning: Path, state_dir: Path, log: Path) -> None:
        text = command.replace("{provisioning}", shlex.quote(str(provisioning)))
        text = text.replace("{state_dir}", shlex.quote(str(state_dir)))
        text = text.replace("{python}", shlex.quote(sys.executable))
        self.command = command
        self.argv = shlex.split(text)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    async def stop(self, timeout: float = 10.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait, 5)
        return proc.returncode


def _inspect_sockets(ctx: AgentContext, agent: AgentProcess) -> None:
    pid = agent.pid
    if pid is not None:
        tree = sockets.process_tree(pid)
        ctx.pids_seen.update(tree)
        for found in sockets.listeners(tree):
            if found not in ctx.listening:
                ctx.listening.append(found)
        ctx.inspected += 1


async def _watch_sockets(ctx: AgentContext, agent: AgentProcess, stop: asyncio.Event) -> None:
    """Inspect the agent's tree every 0.25 s while it starts, then every second, and once more
    when the run ends (before the agent is stopped): a short run is inspected while it works."""
    started = time.monotonic()
    while not stop.is_set():
        _inspect_sockets(ctx, agent)
        pause = 0.25 if time.monotonic() - started < 5 else 1.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)
    _inspect_sockets(ctx, agent)


def _keys_in(reports: list[Received]) -> set[str]:
    return {d.identity.device_key for r in reports for d in r.obj.device}


async def scenario(ctx: AgentContext, agent: AgentProcess, work: Path, walks: Path | None) -> None:
    rec = ctx.rec

    initial = [d for d in ctx.devices if d.role != "moved"]
    want = {d.recording.key for d in initial}
    if ctx.walk_cap is not None:
        from metersync_conformance.peers import walk_cap

        want.add(walk_cap.KEY)
    ctx.begin("baseline")
    agent.start()
    ok = await rec.wait_for(lambda: want <= _keys_in(rec.accepted_reports()), 45)
    ctx.end("baseline", ok)
    if not rec.accepted_reports():
        return  # delivery cannot be judged when nothing is ever accepted: the checks say so

    if (ctx.move or ctx.swap or ctx.vanished) and "changes" in ctx.planned:
        ctx.begin("changes")
        t0 = time.monotonic()
        if ctx.vanish_responder:
            await asyncio.to_thread(ctx.vanish_responder.stop)
        if ctx.swap:
            install_recording(ctx.swap[1].recording.snmprec, ctx.swap[1].data_dir)
        if ctx.move:
            before, after = ctx.move
            if ctx.mover_responder:
                await asyncio.to_thread(ctx.mover_responder.stop)
            ctx.moved_responder = SnmpSimulator(
                endpoints=[Endpoint(after.host, after.port, after.data_dir)],
                variation_modules_dir=variation_dir(walks),
            )
            await asyncio.to_thread(ctx.moved_responder.start)

        def changed() -> bool:
            recent = [r for r in rec.accepted_reports() if r.t > t0]
            snaps = [d for r in recent for d in r.obj.device]
            done = True
            if ctx.move:
                done &= any(d.identity.ip_address == ctx.move[1].host for d in snaps)
            if ctx.swap:
                key = ctx.swap[1].recording.key
                totals = {c.value for d in snaps if d.identity.device_key == key for c in d.counter}
                wanted = {int(c["value"]) for c in ctx.swap[1].recording.counters()}
                done &= bool(wanted & totals)
            if ctx.vanished:
                key = ctx.vanished.recording.key
                done &= any(
                    d.identity.device_key == key and d.collection_error and not d.counter
                    for d in snaps
                )
            return done

        ctx.end("changes", await rec.wait_for(changed, 40))

    if "smtp_transient" in ctx.planned:
        ctx.begin("smtp_transient")
        n0 = len(rec.received)
        rec.unavailable(451, count=2)

        def resent() -> bool:
            later = rec.received[n0:]
            refused = {r.report_id for r in later if r.answer_kind == "unavailable"}
            done = {r.report_id for r in later if r.answer_kind in ("accepted", "duplicate")}
            return bool(refused) and not rec.outages and refused <= done

        ctx.end("smtp_transient", await rec.wait_for(resent, 60))

    if "smtp_refusals" in ctx.planned and ctx.mail_relay is not None:
        ctx.begin("smtp_refusals")
        ctx.end("smtp_refusals", await smtp_refusals(ctx))
    if ctx.mail_relay is not None:
        return

    if "retry_after" not in ctx.planned:
        return
    ctx.begin("retry_after")
    n0 = len(rec.received)
    rec.unavailable(503, retry_after=RETRY_AFTER, count=2)

    def retried() -> bool:
        refused = {r.report_id for r in rec.received[n0:] if r.answer_kind == "unavailable"}
        return (
            len(refused) > 0
            and not rec.outages
            and any(
                r.report_id in refused and r.answer_kind in ("accepted", "duplicate")
                for r in rec.received[n0:]
            )
        )

    ctx.end("retry_after", await rec.wait_for(retried, 45))

    if "outage" not in ctx.planned:
        return
    ctx.begin("outage")
    rec.unavailable(503)
    await asyncio.sleep(OUTAGE_SECONDS)
    ctx.end("outage", True)
    ctx.begin("restart")
    ctx.exit_codes.append(await agent.stop())
    rec.available()  # the manager is back while the agent is down
    ctx.restart_at = time.monotonic()
    agent.start()
    ctx.end("restart", True)

    ctx.begin("recovery")

    def delivered() -> bool:
        ids = {r.report_id for r in rec.reports()}
        done = {r.report_id for r in rec.reports() if r.answer_kind in ("accepted", "duplicate")}
        after = [r for r in rec.accepted_reports() if r.t > ctx.phases["recovery"][0]]
        return ids <= done and bool(after)

    ctx.end("recovery", await rec.wait_for(delivered, 120))


async def smtp_refusals(ctx: AgentContext) -> bool:
    """Play the relay's 5xx script; done when it is played, every mail refused with a "retry"
    reply came again and was accepted, and the sequence numbers mailed have no gap (a report
    refused at MAIL or RCPT was never seen: only its resend fills the gap)."""
    from metersync_conformance.peers.mail_relay import SCRIPT

    rec, script = ctx.rec, ctx.mail_relay.script
    n0 = len(rec.received)
    ctx.mail_relay.play()

    def settled() -> bool:
        if script.pending:
            return False
        later = [r for r in rec.received[n0:] if r.kind == "Report"]
        retry = {r.report_id for r in later if r.script and SCRIPT[r.script][2] == "retry"}
        done = {r.report_id for r in later if r.answer_kind in ("accepted", "duplicate")}
        return retry <= done and not sequence_gaps(rec.reports())

    return await rec.wait_for(settled, 90)


def sequence_gaps(reports: list[Received]) -> list[int]:
    """Sequence numbers below the highest seen that were never seen."""
    seen = {r.sequence for r in reports if r.sequence is not None}
    return sorted(set(range(min(seen), max(seen) + 1)) - seen) if seen else []


async def update_phase(
    ctx: AgentContext, command: str, prov: Path, state: Path, work: Path
) -> None:
    """Run the update steps against the feed, then wait for a report after them."""
    from metersync_conformance.peers import feed as update_harness

    accepted = ctx.rec.accepted_reports()
    if not accepted:
        ctx.update.error = "no report was accepted, so the agent id is unknown"
        return
    ctx.begin("update")
    argv = update_harness.command_argv(command, prov, state)
    # The valid licence allows exactly the devices monitored now (phase licence_limit).
    ctx.update.max_devices = max(1, len(_keys_in(accepted[-1:])))
    await update_harness.run_steps(ctx.update, argv, accepted[-1].obj.agent_id, work / "update.log")
    done = time.monotonic()
    ok = await ctx.rec.wait_for(lambda: any(r.t > done for r in ctx.rec.accepted_reports()), 30)
    ctx.end("update", ok)


async def licence_limit_phase(ctx: AgentContext, recording: Path) -> None:
    """A printer appears while the licence allows only the devices monitored (MS-UPD-22)."""
    accepted = ctx.rec.accepted_reports()
    kept = _keys_in(accepted[-1:])
    ctx.begin("licence_limit")
    # The router at EXTRA_HOST becomes a printer: snmpsim re-reads a recording whose mtime
    # changed (in whole seconds), so the new one is dated a little ahead.
    tmp = recording.with_suffix(".tmp")
    tmp.write_text(EXTRA_PRINTER, encoding="utf-8")
    ahead = time.time() + 2
    os.utime(tmp, (ahead, ahead))
    os.replace(tmp, recording)
    t_on = time.monotonic()
    s = ctx.setup
    settled = t_on + s.discovery_interval + s.poll_interval + s.snmp[0] * (s.snmp[1] + 1)
    limit = LicenceLimit(t_on, settled, kept, EXTRA_KEY, ctx.update.max_devices)
    ctx.licence_limit = limit

    def two_after() -> bool:
        return sum(r.t > settled for r in ctx.rec.accepted_reports()) >= 2

    ok = await ctx.rec.wait_for(two_after, settled - t_on + 30)
    ctx.end("licence_limit", ok)


async def automatic_phase(
    ctx: AgentContext, agent: AgentProcess, prov: Path, remake: Callable[..., bytes]
) -> None:
    """Restart the agent in automatic mode with a short checkInterval and newer software and a
    licence in the feed; watch the feed until it checked CHECKS_WANTED times (MS-UPD-14)."""
    from metersync_conformance.peers import feed as uh

    run = ctx.update
    ctx.exit_codes.append(await agent.stop())
    run.targets.update(uh.publish_automatic(run.feed, "agent", run.agent_id))
    prov.write_bytes(remake(mode="automatic", check_interval=uh.CHECK_INTERVAL))
    ctx.provisioned.append(prov.read_bytes())
    n0 = len(run.server.log)
    ctx.begin("automatic")
    run.auto_started = time.monotonic()
    agent.start()

    def checked() -> bool:
        return len(uh.checks_in(run.server.log[n0:])) >= uh.CHECKS_WANTED

    ok = await ctx.rec.wait_for(checked, (uh.CHECKS_WANTED + 2) * uh.CHECK_INTERVAL * 1.1 + 10)
    done = time.monotonic()
    # A report after the last check shows what the agent runs under now.
    await ctx.rec.wait_for(lambda: any(r.t > done for r in ctx.rec.accepted_reports()), 15)
    run.auto_log = list(run.server.log[n0:])
    run.auto_ended = time.monotonic()
    ctx.end("automatic", ok, at=run.auto_ended)


async def scenario_fringe(
    ctx: AgentContext,
    agent: AgentProcess,
    prov: Path,
    remake: Callable[[str], bytes],
    slow: SnmpSimulator | None,
) -> None:
    """Hard cases on a few printers: see the module docstring."""
    rec = ctx.rec

    want = {d.recording.key for d in ctx.devices}
    if ctx.setup.refusals:
        await refusals(ctx, agent, prov)
    ctx.begin("baseline")
    agent.start()
    ok = await rec.wait_for(lambda: bool(rec.accepted_reports()), 30)
    if ok:  # the agent runs: a trap from a printer must change nothing it reports
        ctx.trap_payload = b"trap-payload-" + os.urandom(4).hex().encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((ctx.devices[0].host, 0))
            s.sendto(trap(ctx.trap_payload), ("127.0.0.1", 162))
    ctx.end("baseline", await rec.wait_for(lambda: want <= _keys_in(rec.accepted_reports()), 45))
    if not rec.accepted_reports() or "answers" not in ctx.planned:
        return
    ctx.begin("answers")
    n0 = len(rec.received)
    script = answers.script(ctx.setup.script)
    rec.play(script)
    idle: list[float] = []

    def answered() -> bool:
        if rec.scripts:
            return False
        idle[:1] = idle[:1] or [time.monotonic()]
        posts = [r for r in rec.received[n0:] if r.kind == "Report"]
        retry = {r.report_id for r in posts if answers.EXPECT.get(r.script or "") == "retry"}
        done = {r.report_id for r in posts if r.answer_kind in ("accepted", "duplicate")}
        return retry <= done or time.monotonic() - idle[0] > 15  # an agent that never resends

    ctx.end("answers", await rec.wait_for(answered, 100))
    if "limits" not in ctx.planned:
        return
    ctx.begin("limits")
    ctx.exit_codes.append(await agent.stop())
    rec.unavailable(503)
    if slow is not None:
        await asyncio.to_thread(slow.start)
    for d in ctx.devices:
        if d.recording.name == REPLACED[0]:
            name, old, new, v_old, v_new = REPLACED
            text = d.recording.snmprec.read_text(encoding="utf-8")
            text = text.replace(old.encode().hex(), new.encode().hex())
            text = text.replace(f"|65|{v_old}", f"|65|{v_new}")
            other = prov.parent / f"{name}_replaced.snmprec"
            other.write_text(text, encoding="utf-8")
            install_recording(other, d.data_dir)
            ctx.replaced = d.host
    limits = f"\n  <outbox><maxReports>{LIMIT_REPORTS}</maxReports></outbox>"
    prov.write_bytes(remake(limits))
    ctx.provisioned.append(prov.read_bytes())
    ctx.restart_at = time.monotonic()
    top = max((r.sequence or 0 for r in rec.reports()), default=0)
    agent.start()
    await asyncio.sleep(LIMITS_SECONDS)

    def overflowed() -> bool:  # enough new reports for the limit to bite (seen as posts)
        return max((r.sequence or 0 for r in rec.reports()), default=0) >= top + 2 + LIMIT_REPORTS

    ctx.end("limits", await rec.wait_for(overflowed, 25))
    ctx.begin("recovery")
    rec.available()

    def drained() -> bool:
        t0 = ctx.phases["recovery"][0]
        return any(
            r.t > t0 and int(r.obj.agent_status.queue_depth) == 0 for r in rec.accepted_reports()
        )

    ctx.end("recovery", await rec.wait_for(drained, 60))


BAD_DOCUMENTS = {
    # name: (change to the valid document, the error code the refusal must name)
    "no-transport": (('<http enabled="true">', '<http enabled="false">'), "3001"),
    "plain-http-remote": (("http://127.0.0.1:", "http://mps.conformance.invalid:"), "3001"),
    "not-valid": (("<credentials>", "<credentials><v9/>"), "1008"),
}


async def refusals(ctx: AgentContext, agent: AgentProcess, prov: Path) -> None:
    """Start the agent with each bad document: it must refuse it, name the code, and send
    nothing (MS-PRV-2, MS-PRV-7, MS-HTTP-11)."""
    good = prov.read_text(encoding="utf-8")

    async def one(name: str, old_new: tuple[str, str], code: str) -> None:
        bad = prov.parent / f"bad-{name}.xml"
        bad.write_text(good.replace(*old_new), encoding="utf-8")
        state = prov.parent / f"state-{name}"
        state.mkdir(exist_ok=True)
        log = prov.parent / f"bad-{name}.log"
        proc = AgentProcess(agent.command, bad, state, log)
        n0 = len(ctx.rec.received)
        proc.start()
        deadline = time.monotonic() + 15
        while proc.pid is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        still = proc.pid is not None
        rc = await proc.stop()
        out = log.read_text(errors="replace") if log.exists() else ""
        got = len(ctx.rec.received) - n0
        ctx.refusals.append((name, code, None if still else rc, out[-600:], got))

    await asyncio.gather(*(one(n, c, code) for n, (c, code) in BAD_DOCUMENTS.items()))


def _sniff(sock: socket.socket) -> int:
    """Datagrams waiting on a socket nobody answered from."""
    sock.setblocking(False)
    n = 0
    with contextlib.suppress(BlockingIOError, OSError):
        while True:
            sock.recv(65535)
            n += 1
    return n


async def run_agent(
    command: str,
    classes: list[str],
    *,
    walks: Path | None = None,
    keep: Path | None = None,
    only: str = "",
    progress: Callable[..., None] | None = None,
    phases: tuple[str, ...] | None = None,
    setup: Setup | None = None,
    update_command: str | None = None,
    update_platform: str = "any",
) -> tuple[list[Verdict], float]:
    started = time.monotonic()
    setup = setup or Setup()
    explicit = phases is not None
    phases = phases or (FRINGE_PHASES if setup.fringe else PHASES)
    short = setup.fringe or setup.walk_cap
    if "Agent-Channel" in classes and "channel" not in phases and not short:
        phases = (*phases, "channel")  # last: the channel stays off until then (MS-CH-1)
    recordings = load(walks)
    if setup.recordings is not None:
        recordings = [r for r in recordings if r.name in setup.recordings]
    if not recordings:
        raise SystemExit(f"no <name>.snmprec with <name>.truth.toml in {walks}")
    tmp = None
    if keep:
        work = keep
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="metersync-conformance-")
        work = Path(tmp.name)
    devices, extra = plan_devices(
        recordings, work, fringe=3 if setup.fringe else 0, spare=int(setup.walk_cap)
    )
    for d in devices:
        if d.role != "moved":
            install_recording(d.recording.snmprec, d.data_dir)
    if "move" in extra:
        install_recording(extra["move"][1].recording.snmprec, extra["move"][1].data_dir)
    manager = await FakeManager().start()
    relay = None
    if smtp_only_mode(classes):
        from metersync_conformance.peers.mail_relay import FakeRelay

        relay = await FakeRelay(manager.rec).start()
        if not explicit and not setup.fringe:
            phases = SMTP_PHASES
    ctx = AgentContext(
        mail_relay=relay,
        rec=manager.rec,
        devices=devices,
        move=extra.get("move"),
        swap=extra.get("swap"),
        planned=phases,
        setup=setup,
        classes=tuple(classes),
        secrets=(TOKEN, *V3_WRONG[1:], DECOY_COMMUNITY)
        if setup.fringe
        else (TOKEN, V3_GOOD[2], V3_GOOD[4])
        if setup.v3
        else (TOKEN,),
    )
    port = devices[0].port
    targets = None
    sniffer: socket.socket | None = None
    vdir = variation_dir(walks)
    fringe_printers: list[Endpoint] = []
    slow_printers: list[Endpoint] = []
    twin_printers: list[Endpoint] = []  # own process: the main responder's load stays as it was
    if setup.fringe:
        excluded, odd, slow = extra["fringe"]
        ctx.excluded, ctx.not_printer, ctx.slow = (excluded, port), odd, slow
        sniffer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sniffer.bind(ctx.excluded)
        for host, text, into in ((odd, NOT_A_PRINTER, fringe_printers),
                                 (slow, SLOW_PRINTER, slow_printers)):  # fmt: skip
            ddir = work / "printers" / host
            ddir.mkdir(parents=True, exist_ok=True)
            (ddir / "public.snmprec").write_text(text, encoding="utf-8")
            into.append(Endpoint(host, port, ddir))
        twin_of = next(d for d in devices if d.recording.name != setup.relay)
        ctx.twin = (extra["twin"], twin_of)
        twin_printers.append(Endpoint(extra["twin"], port, twin_of.data_dir))
        hosts = sorted(
            [d.host for d in devices] + [excluded, odd, slow, extra["twin"]],
            key=lambda h: int(h.split(".")[-1]),
        )
        targets = (
            f"    <include>{hosts[0]}-{hosts[-1].split('.')[-1]}:{port}</include>\n"
            f"    <exclude>{excluded}:{port}</exclude>"
        )
    if setup.walk_cap:
        targets = "\n".join(
            f"    <include>{h}:{port}</include>" for h in [d.host for d in devices] + extra["spare"]
        )
    prov = work / "provisioning.xml"
    if setup.proxy:
        ctx.proxy = await Proxy().start()

    feed_kw: dict[str, Any] = {}
    unlicensed: Endpoint | None = None  # a router that becomes a printer (MS-UPD-22)
    # The update command installs licences too: the Agent-Core licence rules need it.
    if update_command and "update" in phases:
        from metersync_conformance.peers import feed as update_harness

        ctx.update = update_harness.start_feed(work, update_platform)
        feed_kw = {
            "feed_url": ctx.update.server.url,
            "trusted_root": ctx.update.feed.trusted_root().decode("utf-8"),
            "check_interval": 86_400,
        }
        if "licence_limit" in phases and not setup.fringe:
            ddir = work / "printers" / "extra"
            ddir.mkdir(parents=True, exist_ok=True)
            (ddir / "public.snmprec").write_text(NOT_A_PRINTER, encoding="utf-8")
            unlicensed = Endpoint(EXTRA_HOST, free_udp_port(EXTRA_HOST), ddir)
            targets = "\n".join(
                f"    <include>{h}:{p}</include>"
                for h, p in [(unlicensed.host, unlicensed.port)]
                + [(d.host, d.port) for d in devices]
            )
    smtp = (relay.host, relay.port) if relay else None

    def remake(outbox: str = "", **updates: Any) -> bytes:
        # Until the limits phase the slow printer's address is excluded too (it is silent and
        # would only slow the first discovery down); the second document includes it.
        t = targets
        if t is not None and not outbox and setup.fringe:
            t += f"\n    <exclude>{ctx.slow}:{port}</exclude>"
        via = ctx.proxy.url(*PROXY_LOGIN) if ctx.proxy else ""
        kw = {**feed_kw, **updates}
        return provisioning(
            manager.url, devices, smtp, setup=setup, targets=t, outbox=outbox, proxy=via, **kw
        )

    prov.write_bytes(remake())
    ctx.provisioned.append(prov.read_bytes())
    os.chmod(prov, 0o600)
    state = work / "state"
    state.mkdir(exist_ok=True)
    ctx.log_path = work / "agent.log"
    agent = AgentProcess(command, prov, state, ctx.log_path)
    alone = {setup.vanish} if setup.vanish else set()
    relayed = {d.recording.name: d for d in devices if d.recording.name == setup.relay}
    behind = free_udp_port(*(d.host for d in relayed.values())) if relayed else 0
    main_printers = [
        Endpoint(d.host, behind if d.recording.name in relayed else d.port, d.data_dir)
        for d in devices
        if d.role in ("plain", "swap") and d.recording.name not in alone
    ] + fringe_printers
    if unlicensed is not None:
        main_printers.append(unlicensed)
    v3 = [V3User(V3_GOOD[0], auth_key=V3_GOOD[2], priv_key=V3_GOOD[4], auth_proto=V3_GOOD[1],
                 priv_proto=V3_GOOD[3])] if setup.v3 else []  # fmt: skip
    responders = [SnmpSimulator(endpoints=main_printers, variation_modules_dir=vdir, v3_users=v3)]
    slow_responder = (
        SnmpSimulator(endpoints=slow_printers, variation_modules_dir=vdir)
        if slow_printers
        else None
    )
    if twin_printers:
        responders.append(SnmpSimulator(endpoints=twin_printers, variation_modules_dir=vdir))
    for d in devices:
        if d.recording.name in alone:
            ctx.vanished = d
            ctx.vanish_responder = SnmpSimulator(endpoints=[Endpoint(d.host, d.port, d.data_dir)])
            responders.append(ctx.vanish_responder)
    if ctx.move:
        b = ctx.move[0]
        ctx.mover_responder = SnmpSimulator(
            endpoints=[Endpoint(b.host, b.port, b.data_dir)], variation_modules_dir=vdir
        )
        responders.append(ctx.mover_responder)
    stop = asyncio.Event()
    watcher = None
    try:
        await asyncio.gather(*(asyncio.to_thread(r.start) for r in responders))
        for d in relayed.values():
            watch = Relay((d.host, d.port), (d.host, behind), timeout=float(setup.snmp[0]))
            ctx.relay = await watch.start()
        if setup.walk_cap:
            from metersync_conformance.peers import walk_cap

            host = extra["spare"][0]
            ctx.walk_cap = await walk_cap.start(work, host, port, float(setup.snmp[0]))
        watcher = asyncio.create_task(_watch_sockets(ctx, agent, stop))
        if setup.fringe:
            await scenario_fringe(ctx, agent, prov, remake, slow_responder)
        else:
            await scenario(ctx, agent, work, walks)
        if ctx.update is not None and "update" in phases:
            await update_phase(ctx, update_command or "", prov, state, work)
            if unlicensed is not None:
                await licence_limit_phase(ctx, unlicensed.data_dir / "public.snmprec")
            if "Agent-Update" in classes and "automatic" in phases:
                await automatic_phase(ctx, agent, prov, remake)
        if "channel" in phases:
            from metersync_conformance.agent.channel_phase import run_channel_phase

            ctx.begin("channel")
            await run_channel_phase(
                ctx,
                agent,
                prov,
                lambda channel: provisioning(manager.url, devices, setup=setup, channel=channel),
                [*responders, ctx.mover_responder, ctx.moved_responder],
            )
            ctx.end("channel")
    finally:
        stop.set()
        if watcher:
            await watcher
        ctx.exit_codes.append(await agent.stop())
        for r in [*responders, ctx.moved_responder, slow_responder]:
            if r is not None:
                await asyncio.to_thread(r.stop)
        await manager.stop()
        if ctx.relay is not None:
            ctx.relay.close()
        if ctx.walk_cap is not None:
            await ctx.walk_cap.stop()
        if ctx.proxy is not None:
            await ctx.proxy.close()
        if ctx.update is not None:
            from metersync_conformance.peers import feed as update_harness

            update_harness.stop_feed(ctx.update)
        if relay is not None:
            await relay.stop()
        if sniffer is not None:
            ctx.excluded_hits = _sniff(sniffer)
            sniffer.close()
    from metersync_conformance.agent.senses_run import is_senses_check

    checks = [
        c
        for c in select("agent", classes)
        if only in c.name and not is_tls_check(c.name) and not is_senses_check(c.name)
    ]
    verdicts = await run_checks(checks, ctx, progress)  # type: ignore[arg-type]
    if tmp:
        tmp.cleanup()
    SOFTWARE.update(_software(ctx))
    return verdicts, time.monotonic() - started


# vendor, product, version of the agent under test, as its Enrollment named them (the report
# header's defaults, when --vendor/--product/--version are not given)
SOFTWARE: dict[str, str] = {}


def _software(ctx: AgentContext) -> dict[str, str]:
    enr = next((r for r in ctx.rec.received if r.kind == "Enrollment"), None)
    sw = getattr(enr.obj, "software", None) if enr is not None else None
    if sw is None:
        return {}
    fields = {k: getattr(sw, k, None) for k in ("vendor", "product", "version")}
    return {k: str(v) for k, v in fields.items() if v}


def _labelled(progress: Callable[..., None] | None, label: str) -> Callable[..., None] | None:
    """Progress lines of one scenario carry its name (when the callback takes a label)."""
    if progress is None or not getattr(progress, "labelled", False):
        return progress
    return lambda chk, verdicts: progress(chk, verdicts, label=label)


async def run_all(
    command: str,
    classes: list[str],
    *,
    walks: Path | None = None,
    keep: Path | None = None,
    only: str = "",
    progress: Callable[..., None] | None = None,
    update_command: str | None = None,
    update_platform: str = "any",
) -> tuple[list[Verdict], float]:
    """The scenarios at once, as a certification run does: the full scenario on every
    recording, the hard cases (FRINGE) on two of them, the short walk-cap (WALK_CAP) and
    SNMPv3 (SNMPV3) runs, the TLS run (agent/tls_run.py) and the senses run
    (agent/senses_run.py); the verdicts of all together."""
    started = time.monotonic()
    names = [r.name for r in load(walks)]
    main = Setup(
        vanish="oki_c" if "oki_c" in names else None,
        relay="lexmark_ms" if "lexmark_ms" in names else None,
    )
    from metersync_conformance.agent.tls_run import run_tls

    def sub(name: str) -> dict[str, Any]:  # what every run of this certification shares
        shown = _labelled(progress, name)
        return {"walks": walks, "keep": keep and keep / name, "only": only, "progress": shown}

    runs = [
        run_agent(command, classes, setup=main, update_command=update_command,
                  update_platform=update_platform, **sub("main"))
    ]  # fmt: skip
    if all(n in names for n in FRINGE.recordings or ()):
        runs.append(run_agent(command, classes, setup=FRINGE, **sub("fringe")))
    if all(n in names for n in WALK_CAP.recordings or ()):
        runs.append(
            run_agent(command, classes, setup=WALK_CAP, phases=WALK_CAP_PHASES, **sub("walk-cap"))
        )
    if all(n in names for n in SNMPV3.recordings or ()):
        runs.append(
            run_agent(command, classes, setup=SNMPV3, phases=SNMPV3_PHASES, **sub("snmpv3"))
        )
    runs.append(run_tls(command, classes, **sub("tls")))

    results = await asyncio.gather(*runs)
    from metersync_conformance.agent.senses_run import run_senses

    # After the others: its timing rules (intervals, trap reads) are judged on a quieter machine
    # and its load does not disturb the fringe run's tight budgets.
    results.append(await run_senses(command, classes, **sub("senses")))
    return [v for verdicts, _ in results for v in verdicts], time.monotonic() - started
