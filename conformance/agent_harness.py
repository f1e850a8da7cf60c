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

Throughout, the agent's process tree is inspected for listening sockets.

An agent claiming Agent-SMTP without Agent-HTTP is provisioned with SMTP only: it enrolls with
the harness manager over HTTP and mails its reports to the harness relay (fake_relay), and the
scenario is the baseline, then `smtp_transient`: the relay answers 451 to the next two mails,
which must come again, byte for byte, and be accepted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metersync import xml_edge
from metersync_conformance import sockets
from metersync_conformance.fake_manager import FakeManager, Received, Recorder
from metersync_conformance.registry import Verdict, run_checks, select
from metersync_conformance.simulator import Printer, Responder, free_udp_port, install_recording
from metersync_conformance.truth import Recording, load, variation_dir

TOKEN = "conformanceToken0123456789abcdef"
HOST_PREFIX = "127.3.0."
POLL_INTERVAL = 4
OUTAGE_SECONDS = 8.0
RETRY_AFTER = 2
PHASES = ("baseline", "changes", "retry_after", "outage", "restart", "recovery", "update")
SMTP_PHASES = ("baseline", "smtp_transient")
SMTP_FROM = "agent@conformance.invalid"
SMTP_TO = "reports@conformance.invalid"
# "channel" (channel_harness.py) follows them when Agent-Channel is claimed.


@dataclass
class Device:
    """A simulated printer in the scenario: where it is served and what it must report."""

    recording: Recording
    host: str
    port: int
    data_dir: Path
    role: str = "plain"  # plain / mover / moved / swap


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
    mover_responder: Responder | None = None
    moved_responder: Responder | None = None
    update: Any = None  # update_harness.UpdateRun when Agent-Update is claimed
    channel: Any = None  # channel_harness.ChannelRun when the channel phase ran

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


def plan_devices(recordings: list[Recording], root: Path) -> tuple[list[Device], dict[str, Any]]:
    """Addresses and roles: movers and their moved twins, swap pairs, and the rest."""
    by_name = {r.name: r for r in recordings}
    devices: list[Device] = []
    extra: dict[str, Any] = {}
    hosts = [f"{HOST_PREFIX}{10 + i}" for i in range(len(recordings))]
    port = free_udp_port(hosts)
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


def smtp_only_mode(classes: list[str]) -> bool:
    return "Agent-SMTP" in classes and "Agent-HTTP" not in classes


def provisioning(
    manager_url: str,
    devices: list[Device],
    smtp: tuple[str, int] | None = None,
    *,
    mode: str = "manual",
    feed_url: str | None = None,
    trusted_root: str | None = None,
    check_interval: int | None = None,
    channel: bool = False,
) -> bytes:
    from xml.sax.saxutils import escape

    targets = "\n".join(f"    <include>{d.host}:{d.port}</include>" for d in devices)
    transports = '<http enabled="true"><timeout>10</timeout><gzip>false</gzip></http>'
    if smtp is not None:
        transports = (
            '<http enabled="false"/><smtp enabled="true">'
            f"<host>{smtp[0]}</host><port>{smtp[1]}</port><security>none</security>"
            f"<from>{SMTP_FROM}</from><to>{SMTP_TO}</to></smtp>"
        )
    updates = "".join(
        [
            f"<feedUrl>{escape(feed_url)}</feedUrl>" if feed_url else "",
            f"<checkInterval>{check_interval}</checkInterval>" if check_interval else "",
            f"<trustedRoot>{escape(trusted_root)}</trustedRoot>" if trusted_root else "",
        ]
    )
    doc = f"""<?xml version="1.0" encoding="UTF-8"?>
<Provisioning xmlns="urn:metersync:v1" version="1.0">
  <manager>
    <url>{manager_url}</url>
    <enrollmentToken>{TOKEN}</enrollmentToken>
  </manager>
  <transports>
    {transports}
  </transports>
  <targets>
{targets}
  </targets>
  <credentials>
    <v2c community="public"/>
  </credentials>
  <schedule>
    <pollInterval>{POLL_INTERVAL}</pollInterval>
    <discoveryInterval>{POLL_INTERVAL}</discoveryInterval>
    <jitter>0</jitter>
    <startDelayMax>0</startDelayMax>
  </schedule>
  <snmp><timeout>2</timeout><retries>1</retries><deviceBudget>20</deviceBudget><concurrency>16</concurrency></snmp>
  <channel enabled="{"true" if channel else "false"}"/>
  <updates mode="{mode}">{updates}</updates>
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


async def _watch_sockets(ctx: AgentContext, agent: AgentProcess, stop: asyncio.Event) -> None:
    while not stop.is_set():
        pid = agent.pid
        if pid is not None:
            tree = sockets.process_tree(pid)
            ctx.pids_seen.update(tree)
            for found in sockets.listeners(tree):
                if found not in ctx.listening:
                    ctx.listening.append(found)
            ctx.inspected += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def _keys_in(reports: list[Received]) -> set[str]:
    return {d.identity.device_key for r in reports for d in r.obj.device}


async def scenario(ctx: AgentContext, agent: AgentProcess, work: Path, walks: Path | None) -> None:
    rec = ctx.rec
    clock = time.monotonic

    def begin(name: str) -> None:
        ctx.phases[name] = (clock(), None)

    def end(name: str, reached: bool) -> None:
        ctx.phases[name] = (ctx.phases[name][0], clock())
        ctx.reached[name] = reached

    initial = [d for d in ctx.devices if d.role != "moved"]
    want = {d.recording.key for d in initial}
    begin("baseline")
    agent.start()
    ok = await rec.wait_for(lambda: want <= _keys_in(rec.accepted_reports()), 45)
    end("baseline", ok)
    if not rec.accepted_reports():
        return  # delivery cannot be judged when nothing is ever accepted: the checks say so

    if (ctx.move or ctx.swap) and "changes" in ctx.planned:
        begin("changes")
        t0 = clock()
        if ctx.swap:
            install_recording(ctx.swap[1].recording.snmprec, ctx.swap[1].data_dir)
        if ctx.move:
            before, after = ctx.move
            if ctx.mover_responder:
                await asyncio.to_thread(ctx.mover_responder.stop)
            ctx.moved_responder = Responder(
                [Printer(after.host, after.port, after.data_dir)],
                variation_dir=variation_dir(walks),
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
            return done

        end("changes", await rec.wait_for(changed, 40))

    if "smtp_transient" in ctx.planned:
        begin("smtp_transient")
        n0 = len(rec.received)
        rec.unavailable(451, count=2)

        def resent() -> bool:
            later = rec.received[n0:]
            refused = {r.report_id for r in later if r.answer_kind == "unavailable"}
            done = {r.report_id for r in later if r.answer_kind in ("accepted", "duplicate")}
            return bool(refused) and not rec.outages and refused <= done

        end("smtp_transient", await rec.wait_for(resent, 60))
        return

    if "retry_after" not in ctx.planned:
        return
    begin("retry_after")
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

    end("retry_after", await rec.wait_for(retried, 45))

    if "outage" not in ctx.planned:
        return
    begin("outage")
    rec.unavailable(503)
    await asyncio.sleep(OUTAGE_SECONDS)
    end("outage", True)
    begin("restart")
    ctx.exit_codes.append(await agent.stop())
    rec.available()  # the manager is back while the agent is down
    ctx.restart_at = clock()
    agent.start()
    end("restart", True)

    begin("recovery")

    def delivered() -> bool:
        ids = {r.report_id for r in rec.reports()}
        done = {r.report_id for r in rec.reports() if r.answer_kind in ("accepted", "duplicate")}
        after = [r for r in rec.accepted_reports() if r.t > ctx.phases["recovery"][0]]
        return ids <= done and bool(after)

    end("recovery", await rec.wait_for(delivered, 120))


async def update_phase(
    ctx: AgentContext, command: str, prov: Path, state: Path, work: Path
) -> None:
    """Run the update steps against the feed, then wait for a report after them."""
    from metersync_conformance import update_harness

    accepted = ctx.rec.accepted_reports()
    if not accepted:
        ctx.update.error = "no report was accepted, so the agent id is unknown"
        return
    ctx.phases["update"] = (time.monotonic(), None)
    argv = update_harness.command_argv(command, prov, state)
    await update_harness.run_steps(ctx.update, argv, accepted[-1].obj.agent_id, work / "update.log")
    done = time.monotonic()
    ok = await ctx.rec.wait_for(lambda: any(r.t > done for r in ctx.rec.accepted_reports()), 30)
    ctx.phases["update"] = (ctx.phases["update"][0], time.monotonic())
    ctx.reached["update"] = ok


async def run_agent(
    command: str,
    classes: list[str],
    *,
    walks: Path | None = None,
    keep: Path | None = None,
    only: str = "",
    progress: Callable[..., None] | None = None,
    phases: tuple[str, ...] = PHASES,
    update_command: str | None = None,
    update_platform: str = "any",
) -> tuple[list[Verdict], float]:
    started = time.monotonic()
    if "Agent-Channel" in classes and "channel" not in phases:
        phases = (*phases, "channel")  # last: the channel stays off until then (MS-CH-1)
    recordings = load(walks)
    if not recordings:
        raise SystemExit(f"no <name>.snmprec with <name>.truth.toml in {walks}")
    tmp = None
    if keep:
        work = keep
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="metersync-conformance-")
        work = Path(tmp.name)
    devices, extra = plan_devices(recordings, work)
    for d in devices:
        if d.role != "moved":
            install_recording(d.recording.snmprec, d.data_dir)
    if "move" in extra:
        install_recording(extra["move"][1].recording.snmprec, extra["move"][1].data_dir)
    manager = await FakeManager().start()
    relay = None
    if smtp_only_mode(classes):
        from metersync_conformance.fake_relay import FakeRelay

        relay = await FakeRelay(manager.rec).start()
        if phases == PHASES:
            phases = SMTP_PHASES
    ctx = AgentContext(
        rec=manager.rec,
        devices=devices,
        move=extra.get("move"),
        swap=extra.get("swap"),
        planned=phases,
    )
    prov = work / "provisioning.xml"
    feed_kw: dict[str, Any] = {}
    if "Agent-Update" in classes and update_command:
        from metersync_conformance import update_harness

        ctx.update = update_harness.start_feed(work, update_platform)
        feed_kw = {
            "feed_url": ctx.update.server.url,
            "trusted_root": ctx.update.feed.trusted_root().decode("utf-8"),
            "check_interval": 86_400,
        }
    smtp = (relay.host, relay.port) if relay else None
    prov.write_bytes(provisioning(manager.url, devices, smtp, **feed_kw))
    os.chmod(prov, 0o600)
    state = work / "state"
    state.mkdir(exist_ok=True)
    ctx.log_path = work / "agent.log"
    agent = AgentProcess(command, prov, state, ctx.log_path)
    vdir = variation_dir(walks)
    main_printers = [
        Printer(d.host, d.port, d.data_dir) for d in devices if d.role in ("plain", "swap")
    ]
    responders = [Responder(main_printers, variation_dir=vdir)]
    if ctx.move:
        b = ctx.move[0]
        ctx.mover_responder = Responder([Printer(b.host, b.port, b.data_dir)], variation_dir=vdir)
        responders.append(ctx.mover_responder)
    stop = asyncio.Event()
    watcher = None
    try:
        await asyncio.gather(*(asyncio.to_thread(r.start) for r in responders))
        watcher = asyncio.create_task(_watch_sockets(ctx, agent, stop))
        await scenario(ctx, agent, work, walks)
        if ctx.update is not None and "update" in phases:
            await update_phase(ctx, update_command or "", prov, state, work)
        if "channel" in phases:
            from metersync_conformance.channel_harness import run_channel_phase

            ctx.phases["channel"] = (time.monotonic(), None)
            await run_channel_phase(
                ctx,
                agent,
                prov,
                lambda channel: provisioning(manager.url, devices, channel=channel),
                [*responders, ctx.mover_responder, ctx.moved_responder],
            )
            ctx.phases["channel"] = (ctx.phases["channel"][0], time.monotonic())
    finally:
        stop.set()
        if watcher:
            await watcher
        ctx.exit_codes.append(await agent.stop())
        for r in [*responders, ctx.moved_responder]:
            if r is not None:
                await asyncio.to_thread(r.stop)
        await manager.stop()
        if ctx.update is not None:
            from metersync_conformance import update_harness

            update_harness.stop_feed(ctx.update)
        if relay is not None:
            await relay.stop()
    checks = [c for c in select("agent", classes) if only in c.name]
    verdicts = await run_checks(checks, ctx, progress)  # type: ignore[arg-type]
    if tmp:
        tmp.cleanup()
    return verdicts, time.monotonic() - started
