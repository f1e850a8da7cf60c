"""`metersync agent run`, `enroll` and `provision`: the agent as a long-lived service.

The pipeline, each stage with one job (STYLE.md): discover → poll → map → outbox → transport.

- The collector discovers printers every discoveryInterval (+ jitter) and polls each known
  device on its own schedule (pollInterval + jitter). Devices due together are polled together
  and go into one report, built and signed inside the outbox transaction that allocates its
  sequence number and keeps the counters it carries, so counter decreases are flagged against
  the last value stored (identity.flag_decreased).
- The sender drains the outbox oldest first and never deletes a report without a receipt;
  waits are the outbox's persisted next-attempt times.
- With a licence in force, at most its maxDevices devices are monitored (MS-UPD-22): those
  monitored already (also before a restart: monitored.json in the state dir) before newly
  discovered ones; a device beyond it is read once, to know its key, and then left alone.
- Before anything, a random delay up to startDelayMax, so a fleet does not call in at once
  after a power cut. SIGTERM/SIGINT stop both loops; a write in progress is finished and the
  database closed. Nothing listens on any port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import metersync_generated.v1 as model
from metersync import updates
from metersync_agent import enrollment, updating
from metersync_agent.channel import ChannelClient, ChannelResources, FreshReadFailed
from metersync_agent.config import ConfigError, Settings, load_config, provisioning_bytes
from metersync_agent.discovery import discover
from metersync_agent.enrollment import AgentIdentity
from metersync_agent.outbox import EnqueueContext, Outbox, OutboxError, ReportBytes
from metersync_agent.poller import poll_device
from metersync_agent.privacy import Masking
from metersync_agent.profiles import load_profiles, only_profiles
from metersync_agent.report import (
    CycleResult,
    admit,
    build_report,
    classify,
    load_monitored,
    one_snapshot_per_key,
    save_monitored,
    status_info,
)
from metersync_agent.scheduling import Scheduler
from metersync_agent.sender import run_sender
from metersync_agent.smtp_fallback import run_fallback
from metersync_agent.snmp import Credential, SnmpClient
from metersync_agent.targets import TargetSet
from metersync_agent.transport_http import HttpTransport, ssl_context
from metersync_agent.transport_smtp import SmtpTransport
from metersync_agent.traps import MAX_PER_SNAPSHOT, TrapReceiver
from metersync_agent.updating import licence_for_report

log = logging.getLogger("metersync.agent")

MAX_DEVICES_PER_REPORT = 500
BATCH_WINDOW = 2.0  # devices due within this many seconds are polled in the same cycle
BATCH_SHARE = 0.05  # ... but never more than this share of the poll interval early (MS-PRV-4)
OUTBOX_FILE = "outbox.sqlite3"

PollFn = Callable[..., Awaitable[model.DeviceSnapshot]]


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "metersync-agent"


# --- the collector --------------------------------------------------------------------------


@dataclass
class DeviceEntry:
    host: str
    port: int
    next_poll: float  # monotonic
    credential: Credential | None = None
    device_key: str | None = None
    last_good: model.DeviceIdentity | None = None
    stale: bool = False  # not found by the last discovery
    unlicensed: bool = False  # beyond the licence's maxDevices: not polled (MS-UPD-22)
    last_snapshot: model.DeviceSnapshot | None = None  # served by the channel (MS-CH-12)


@dataclass
class AgentState:
    devices: dict[tuple[str, int], DeviceEntry] = field(default_factory=dict)
    monitored: dict[str, None] = field(default_factory=dict)  # device keys, first seen first
    last_cycle: CycleResult | None = None
    reports_queued: int = 0


class AgentService:
    def __init__(
        self,
        settings: Settings,
        state_dir: Path,
        *,
        rng: random.Random | None = None,
        poll: PollFn | None = None,
        profile_names: tuple[str, ...] | None = None,
    ) -> None:
        self.settings = settings
        self.profile_names = profile_names  # None: every loaded profile
        self.state_dir = state_dir
        self.rng = rng or random.Random()
        self._poll = poll
        self.state = AgentState()
        self.started_at = time.time()
        self.stop = asyncio.Event()
        self._wake_sender = asyncio.Event()
        self.identity: AgentIdentity | None = None
        self.outbox: Outbox | None = None
        self.http_failing_since: float | None = None  # start of the current failure streak
        self._client: Any = None
        self._profiles: Any = None
        self.channel: Any = None  # the ChannelClient while bidirectional mode is on
        self._senses_init()

    # -- lifecycle --

    async def run(self) -> int:
        s = self.settings
        self.identity = enrollment.load_or_create_identity(self.state_dir)
        self._previous = load_monitored(self.state_dir)
        self.outbox = Outbox(self.state_dir / OUTBOX_FILE, limits=s.retention)
        st = self.outbox.status()
        log.info(
            "agent %s starting: manager %s, state %s, %d report(s) queued",
            self.identity.agent_id,
            s.manager_url,
            self.state_dir,
            st.queued,
        )
        client = SnmpClient(
            timeout=s.snmp_timeout, retries=s.snmp_retries, concurrency=s.snmp_concurrency
        )
        transport = HttpTransport.from_settings(s, self.identity.agent_id, self.state_dir)
        reports, fallback = self._smtp_transports(transport)  # chapter 9; HTTP only: unchanged
        self._client = client
        try:
            delay = self.rng.uniform(0, s.start_delay_max) if s.start_delay_max > 0 else 0.0
            if delay:
                log.info("waiting %.0f s (random start delay) before starting", delay)
                if await self._sleep(delay):
                    return 0
            if s.traps is not None:  # off unless provisioned; faces printers only (MS-TRAP-1)
                self.traps = TrapReceiver(s.traps, self._trap_source_known, self._on_trap)
                await self.traps.start()
            collector = asyncio.create_task(self._collector(client), name="collector")
            sender = asyncio.create_task(self._sender(reports, transport), name="sender")
            tasks = {collector, sender}
            if s.update_mode == "automatic":  # manual mode fetches nothing (MS-UPD-13)
                tasks.add(
                    asyncio.create_task(
                        updating.schedule(
                            s, self.state_dir, self.identity.agent_id, self.stop, self.rng
                        ),
                        name="updater",
                    )
                )
            if fallback is not None:
                tasks.add(asyncio.create_task(fallback, name="smtp-fallback"))
            if s.channel_enabled and s.http_enabled:  # off unless provisioned (MS-CH-1)
                tasks.add(asyncio.create_task(self._channel(), name="channel"))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            self.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in done:
                if t.exception() is not None:
                    log.error("the %s stopped: %r", t.get_name(), t.exception())
                    return 1
            return 0
        finally:
            if self.traps is not None:
                self.traps.close()
            await transport.aclose()
            client.close()
            self.outbox.close()
            log.info("agent stopped; outbox closed")

    def _smtp_transports(self, http: Any) -> tuple[Any, Awaitable[None] | None]:
        """(reports transport, SMTP fallback loop or None). Enrollment always uses HTTP(S).

        SMTP only: reports are mailed and the relay's 250 is the receipt (MS-SMTP-9).
        HTTP and SMTP: HTTP first; reports are also mailed after fallbackAfter s of failure.
        """
        s = self.settings
        if not s.smtp_enabled:
            return http, None
        assert self.identity is not None and self.outbox is not None
        smtp = SmtpTransport.from_settings(s, self.identity.agent_id)
        if not s.http_enabled:
            return smtp, None
        loop = run_fallback(
            self.outbox,
            smtp,
            lambda: self.http_failing_since,
            s.smtp_fallback_after,
            self.stop,
            self.rng,
        )
        return http, loop

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped first; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, seconds))
        return self.stop.is_set()

    async def _until_stopped(self, aw: Awaitable[Any]) -> tuple[bool, Any]:
        """Await `aw` unless stop comes first (then it is cancelled): (stopped, result)."""
        task = asyncio.ensure_future(aw)
        stopper = asyncio.create_task(self.stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            stopper.cancel()
            return False, task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return True, None

    # -- collection --

    def _poll_fn(self) -> PollFn:
        if self._poll is None:
            self._poll = poll_device
        return self._poll

    async def _collector(self, client: Any) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        profiles = load_profiles()
        if self.profile_names is not None:
            profiles = only_profiles(profiles, self.profile_names)
        self._profiles = profiles
        targets = TargetSet.parse(s.targets_include, s.targets_exclude)
        next_discovery = loop.time()
        while not self.stop.is_set():
            now = loop.time()
            if now >= next_discovery:
                problems: list[Any] = []
                stopped, found = await self._until_stopped(
                    discover(
                        client,
                        targets,
                        list(s.credentials),
                        concurrency=s.snmp_concurrency,
                        budget=min(s.device_budget, 10.0),
                        problems=problems,
                    )
                )
                if stopped:
                    return
                for host, port, exc in problems:
                    log.warning("discovery: %s:%d refused our credentials: %s", host, port, exc)
                self._merge_discovered(found, loop.time())
                next_discovery = loop.time() + s.discovery_interval + self._jitter()
                log.info(
                    "discovery: %d printer(s) found, %d device(s) scheduled",
                    len(found),
                    len(self.state.devices),
                )
            now = loop.time()
            window = min(BATCH_WINDOW, BATCH_SHARE * s.poll_interval)
            active = [e for e in self.state.devices.values() if not e.unlicensed]
            due = [e for e in active if e.next_poll <= now + window]
            if due or (not active and self._heartbeat_due(now)):
                if not await self._cycle(client, profiles, due):
                    return
                continue
            wake = min([next_discovery] + [e.next_poll for e in active])
            if not active:
                wake = min(wake, self._heartbeat_at)
            if await self._nap(wake - loop.time()):
                return

    _heartbeat_at: float = 0.0

    def _heartbeat_due(self, now: float) -> bool:
        """With no device known, still report the agent's status once per poll interval."""
        return now >= self._heartbeat_at

    def _jitter(self) -> float:
        j = self.settings.jitter
        return self.rng.uniform(0, j) if j > 0 else 0.0

    def _licensed_devices(self) -> int | None:
        """maxDevices of the licence the agent runs under, when it is in force (MS-UPD-22)."""
        assert self.identity is not None
        info = updates.licence_state(self.state_dir, "agent", self.identity.agent_id)
        return info.max_devices if info.state in ("valid", "expiring") else None

    _previous: dict[str, int] = {}  # monitored before a restart: their rank

    def _admit_all(self, answered: list[tuple[DeviceEntry, Any]], limit: int | None) -> set[int]:
        """Admit a cycle's answering devices (MS-UPD-22); the ids of the entries refused."""
        keys = [snap.identity.device_key for _, snap in answered]
        refused_keys = admit(self.state.monitored, self._previous, keys, limit)
        refused: set[int] = set()
        for e, snap in answered:
            if snap.identity.device_key in refused_keys:
                e.unlicensed = True  # read once to know it; not monitored
                refused.add(id(e))
                log.warning("licence: %s:%d (%s) not monitored, maxDevices %s reached",
                            e.host, e.port, snap.identity.device_key, limit)  # fmt: skip
        return refused

    def _apply_limit(self, limit: int | None) -> None:
        """A licence for fewer devices than monitored: keep the first `limit` monitored."""
        monitored = self.state.monitored
        if limit is None or len(monitored) <= limit:
            return
        dropped = set(list(monitored)[limit:])
        for key in dropped:
            del monitored[key]
        for e in self.state.devices.values():
            if e.device_key in dropped:
                e.unlicensed, e.last_snapshot = True, None
        log.warning("licence: %d device(s) beyond maxDevices %d are no longer polled",
                    len(dropped), limit)  # fmt: skip

    def _merge_discovered(self, found: list[Any], now: float) -> None:
        seen = set()
        limit = self._licensed_devices() if self.identity is not None else None
        if limit is None or len(self.state.monitored) < limit:  # room again: try them anew
            for e in self.state.devices.values():
                e.unlicensed = False
        for dev in found:
            key = (dev.host, dev.port)
            seen.add(key)
            entry = self.state.devices.get(key)
            if entry is None:
                self.state.devices[key] = DeviceEntry(
                    dev.host, dev.port, now + self._jitter(), credential=dev.credential
                )
            else:
                entry.stale = False
                entry.credential = dev.credential
        for key, entry in self.state.devices.items():
            if key not in seen:
                entry.stale = True

    async def _cycle(self, client: Any, profiles: Any, due: list[DeviceEntry]) -> bool:
        """Poll `due` devices, store one report per batch; False when stopped meanwhile."""
        s = self.settings
        loop = asyncio.get_running_loop()
        started, cycle_start = time.time(), loop.time()
        poll = self._poll_fn()

        async def one(e: DeviceEntry) -> model.DeviceSnapshot:
            creds = list(s.credentials)
            if e.credential is not None and e.credential in creds:
                creds.remove(e.credential)
                creds.insert(0, e.credential)
            return await poll(client, e.host, e.port, creds, profiles, s.device_budget)

        stopped, results = await self._until_stopped(
            asyncio.gather(*(one(e) for e in due), return_exceptions=True)
        )
        if stopped:
            return False
        finished = time.time()
        limit = self._licensed_devices()
        self._apply_limit(limit)
        monitored_before = list(self.state.monitored)
        polled: list[tuple[DeviceEntry, model.DeviceSnapshot, bool]] = []  # (…, answered)
        snapshots: list[model.DeviceSnapshot] = []
        failed = partial = 0
        intervals: dict[int, float] = {}
        for e, snap in zip(due, results, strict=True):
            read = None if isinstance(snap, BaseException) or classify(snap) == "failed" else snap
            intervals[id(e)] = self.scheduler.polled((e.host, e.port), read, cycle_start)
            e.next_poll = cycle_start + intervals[id(e)] + self._jitter()
            if isinstance(snap, BaseException):
                log.error("polling %s:%d failed: %r", e.host, e.port, snap)
                failed += 1
                continue
            verdict = classify(snap)
            if verdict == "failed":
                failed += 1
                if e.last_good is None:
                    continue  # never read: no identity to report it under
                snap.identity = dataclasses.replace(
                    e.last_good,
                    ip_address=snap.identity.ip_address,
                    port=snap.identity.port,
                    uptime=None,
                )
                if e.stale:  # gone from discovery and now silent: stop polling this address
                    self.state.devices.pop((e.host, e.port), None)
                    if not any(o.device_key == e.device_key for o in self.state.devices.values()):
                        self.state.monitored.pop(e.device_key or "", None)
                polled.append((e, snap, False))
            else:
                partial += verdict == "partial"
                polled.append((e, snap, True))
        refused = self._admit_all([(e, snap) for e, snap, ok in polled if ok], limit)
        for e, snap, answered in polled:
            if answered:
                if id(e) in refused:
                    continue
                self._moved(e, snap.identity)
            snap = self._finish(e, snap, intervals[id(e)])
            e.last_snapshot = snap
            snapshots.append(snap)
        if list(self.state.monitored) != monitored_before:
            save_monitored(self.state_dir, list(self.state.monitored))
        snapshots, moved = one_snapshot_per_key(snapshots)
        failed -= moved
        self._heartbeat_at = cycle_start + s.poll_interval
        cycle = CycleResult(started, finished, snapshots, failed, partial)
        self.state.last_cycle = cycle
        batches = [
            snapshots[i : i + MAX_DEVICES_PER_REPORT]
            for i in range(0, len(snapshots), MAX_DEVICES_PER_REPORT)
        ] or [[]]
        for batch in batches:
            await self._store(cycle, batch)  # never cancelled: a started write is finished
        log.info(
            "cycle: %d device(s) polled, %d failed, %d partial, %d report(s) queued",
            len(snapshots),
            failed,
            partial,
            len(batches),
        )
        updating.report_healthy()  # started and one cycle done: the supervisor's check
        return not self.stop.is_set()

    def _moved(self, entry: DeviceEntry, ident: model.DeviceIdentity) -> None:
        """Remember who answered; a device key seen at a new address drops the old address."""
        entry.device_key, entry.last_good = ident.device_key, ident
        for key, other in list(self.state.devices.items()):
            if other is not entry and other.device_key == ident.device_key:
                log.info(
                    "device %s moved from %s:%d to %s:%d",
                    ident.device_key,
                    other.host,
                    other.port,
                    entry.host,
                    entry.port,
                )
                del self.state.devices[key]

    async def _store(self, cycle: CycleResult, snapshots: list[model.DeviceSnapshot]) -> None:
        assert self.outbox is not None and self.identity is not None
        identity, settings, started = self.identity, self.settings, self.started_at
        licence = licence_for_report(self.state_dir, identity.agent_id)  # MS-UPD-20
        traps = self.traps.stats() if self.traps is not None else None

        def build(ctx: EnqueueContext) -> ReportBytes:
            return build_report(ctx, identity, settings, started, cycle, snapshots, licence, traps)

        try:
            stored = await asyncio.to_thread(self.outbox.enqueue, build)
        except OutboxError as exc:
            log.error("report NOT stored: %s", exc)
            return
        self.state.reports_queued += 1
        log.debug("stored report %s (sequence %d)", stored.report_id, stored.sequence)
        self._wake_sender.set()

    # -- senses and manners (chapters 19, 20): traps, adaptive intervals, masking --

    def _senses_init(self) -> None:
        s = self.settings
        self.traps: Any = None  # the TrapReceiver while provisioned (MS-TRAP-1)
        self.pending_traps: dict[tuple[str, int], list[model.TrapEvent]] = {}
        self._wake_collector = asyncio.Event()
        self.masking = Masking.load(s.privacy, self.state_dir)
        trap_interval = s.traps.min_interval if s.traps is not None else None
        self.scheduler = Scheduler(s.poll_interval, s.adaptive, trap_interval)

    async def _nap(self, seconds: float) -> bool:
        """Sleep until stopped, woken by a notification, or `seconds`; True when stopped."""
        waiters = {
            asyncio.create_task(self.stop.wait()),
            asyncio.create_task(self._wake_collector.wait()),
        }
        await asyncio.wait(waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
        self._wake_collector.clear()
        return self.stop.is_set()

    def _entries_at(self, ip: str) -> list[DeviceEntry]:
        """The monitored devices polled at this address (a notification's source)."""
        return [
            e
            for e in self.state.devices.values()
            if not e.unlicensed
            and (e.host == ip or (e.last_good is not None and e.last_good.ip_address == ip))
        ]

    def _trap_source_known(self, ip: str) -> bool:
        return bool(self._entries_at(ip))

    def _on_trap(self, ip: str, event: model.TrapEvent) -> None:
        """An accepted notification: kept for the device's next snapshot (MS-TRAP-5) and, when
        the scheduler allows, an immediate read (MS-TRAP-4)."""
        e = self._entries_at(ip)[0]
        key = (e.host, e.port)
        pending = self.pending_traps.setdefault(key, [])
        pending.append(event)
        del pending[:-MAX_PER_SNAPSHOT]
        now = asyncio.get_running_loop().time()
        if self.scheduler.trigger(key, now):
            e.next_poll = now
            self.traps.triggered_reads += 1
            self._wake_collector.set()

    def _finish(
        self, e: DeviceEntry, snap: model.DeviceSnapshot, interval: float
    ) -> model.DeviceSnapshot:
        """The snapshot as stored: its notifications, its interval, masked (MS-PRIV-1)."""
        snap.trap = self.pending_traps.pop((e.host, e.port), [])
        if self.settings.adaptive is not None or interval != self.settings.poll_interval:
            snap.interval = round(interval)  # MS-TRAP-10
        return self.masking.apply(snap)

    # -- the channel (chapter 10): read-only views of the state above --

    @property
    def agent_id(self) -> str:
        assert self.identity is not None
        return self.identity.agent_id

    async def status_info(self) -> model.AgentStatusInfo:
        assert self.outbox is not None
        st = await asyncio.to_thread(self.outbox.status)
        licence = await asyncio.to_thread(licence_for_report, self.state_dir, self.agent_id)
        return status_info(
            self.settings,
            self.started_at,
            st.queued,
            st.oldest_queued_at,
            st.dropped_reports,
            self.state.last_cycle,
            licence,
            self.traps.stats() if self.traps is not None else None,
            st.full_since,  # MS-DEL-20: live, while the disk refuses reports
        )

    def snapshots(self) -> dict[str, model.DeviceSnapshot]:
        found: dict[str, model.DeviceSnapshot] = {}
        for e in self.state.devices.values():
            if e.last_snapshot is not None:
                found[e.last_snapshot.identity.device_key] = e.last_snapshot
        return found

    async def fresh(self, device_key: str) -> model.DeviceSnapshot:
        """A new poll of the device for the channel; changes nothing it holds (MS-CH-19)."""
        s = self.settings
        entry = next(
            (
                e
                for e in self.state.devices.values()
                if e.last_snapshot is not None and e.last_snapshot.identity.device_key == device_key
            ),
            None,
        )
        if entry is None or self._client is None or self._profiles is None:
            raise FreshReadFailed("the device is not known any more")
        creds = list(s.credentials)
        if entry.credential is not None and entry.credential in creds:
            creds.remove(entry.credential)
            creds.insert(0, entry.credential)
        poll = self._poll_fn()
        try:
            snap = await asyncio.wait_for(
                poll(self._client, entry.host, entry.port, creds, self._profiles, s.device_budget),
                s.device_budget + 1.0,
            )
        except TimeoutError:
            raise FreshReadFailed(f"no answer within {s.device_budget:.0f} s") from None
        if classify(snap) == "failed":
            codes = ", ".join(sorted({e.code.value for e in snap.collection_error}))
            raise FreshReadFailed(codes or "nothing was read")
        return self.masking.apply(snap)  # nothing leaves the agent unmasked (MS-PRIV-1)

    async def _channel(self) -> None:
        assert self.identity is not None
        s, identity = self.settings, self.identity
        self.channel = ChannelClient(
            base_url=s.manager_url,
            agent_id=identity.agent_id,
            sign=identity.sign,
            resources=ChannelResources(self, enabled=s.channel_enabled),
            stop=self.stop,
            ready=lambda: enrollment.is_enrolled(self.state_dir, s.manager_url, s.enrollment_token),
            verify=ssl_context(s.ca_bundle, s.client_certificate, self.state_dir),
            proxy=s.proxy,
            timeout=s.http_timeout,
            rng=self.rng,
        )
        await self.channel.run()

    # -- delivery: the send stage (sender.py) --

    async def _sender(self, transport: Any, enroll_transport: Any = None) -> None:
        await run_sender(self, transport, enroll_transport)


# --- command line ---------------------------------------------------------------------------


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise


PROVISIONING_FILE = "provisioning.xml"


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else default_state_dir()


def _load(args: argparse.Namespace) -> Settings | None:
    path = Path(args.config) if args.config else _state_dir(args) / PROVISIONING_FILE
    if not args.config and not path.exists():
        print(f"error: no --config and nothing provisioned in {path.parent}", file=sys.stderr)
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _provision(args: argparse.Namespace) -> int:
    """Check a Provisioning document (XML or TOML) and keep it, as XML, in the state dir."""
    try:
        settings = load_config(args.file)
    except ConfigError as exc:
        print(f"error: {exc}; nothing was applied (MS-PRV-2)", file=sys.stderr)
        return 2
    assert settings.provisioning is not None
    state_dir = _state_dir(args)
    enrollment.prepare_state_dir(state_dir)
    data = Path(args.file).read_bytes()
    if Path(args.file).suffix.lower() == ".toml":
        data = provisioning_bytes(settings)
    # readable by the agent's account only: it holds secrets (MS-PRV-6)
    enrollment.write_atomic(state_dir / PROVISIONING_FILE, data, 0o600)
    again = not enrollment.is_enrolled(state_dir, settings.manager_url, settings.enrollment_token)
    print(
        f"provisioned {state_dir / PROVISIONING_FILE}: manager {settings.manager_url}, "
        f"{len(settings.targets_include)} target(s), {len(settings.credentials)} credential(s)"
        + ("; the agent enrolls at its next start" if again else "; enrollment kept")
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    settings = _load(args)
    if settings is None:
        return 2
    state_dir = _state_dir(args)

    async def main() -> int:
        names = tuple(args.profiles.replace(",", " ").split()) if args.profiles else None
        service = AgentService(settings, state_dir, profile_names=names)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.stop.set)
        return await service.run()

    return asyncio.run(main())


def _enroll(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    settings = _load(args)
    if settings is None:
        return 2
    state_dir = _state_dir(args)

    async def main() -> int:
        identity = enrollment.load_or_create_identity(state_dir)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with HttpTransport.from_settings(settings, identity.agent_id, state_dir) as t:
            result = await enrollment.enroll(
                settings, identity, t, state_dir, stop=stop, max_wait=args.max_wait
            )
        print(f"{result.message} (agent {identity.agent_id}, state {state_dir})")
        return 0 if result.ok else 1

    return asyncio.run(main())


def register_service_commands(sub: Any) -> None:
    """Add `provision`, `run` and `enroll` to the `metersync agent` subcommands."""
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state-dir", help=f"identity, key and outbox (default {default_state_dir()})"
    )
    common = argparse.ArgumentParser(add_help=False, parents=[state])
    common.add_argument(
        "--config",
        help="Provisioning XML (*.xml) or the TOML form (*.toml); "
        "default: the document `provision` stored in the state dir",
    )
    common.add_argument("--log-level", default="info", help="debug, info, warning, error")
    provision = sub.add_parser(
        "provision",
        parents=[state],
        help="check a Provisioning document and store it in the state dir (mode 0600)",
    )
    provision.add_argument("file", help="Provisioning XML (*.xml) or the TOML form (*.toml)")
    provision.set_defaults(func=_provision)
    run = sub.add_parser(
        "run", parents=[common], help="run the agent: discover, poll, store, deliver"
    )
    run.add_argument(
        "--profiles",
        help="apply only these mapping profiles (space or comma separated; `standard` is always "
        "applied): `--profiles standard` reads the standard MIBs only",
    )
    run.set_defaults(func=_run)
    enroll = sub.add_parser(
        "enroll", parents=[common], help="enroll with the manager once, then exit"
    )
    enroll.add_argument(
        "--max-wait",
        type=float,
        default=300.0,
        help="give up after this many seconds of retries (default 300)",
    )
    enroll.set_defaults(func=_enroll)
    updating.register(sub, [common])


def main(argv: list[str] | None = None) -> int:
    """`python -m metersync_agent.service run|enroll …`: the same as `metersync agent …`."""
    parser = argparse.ArgumentParser(prog="metersync-agent")
    register_service_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
