"""Checks of the senses run (agent/senses_run.py): traps, adaptive polling, privacy masking.

Times are the snapshots' polledAt (when a poll started) and the harness's clock when it sent a
notification; both are this machine's clock. TOL absorbs process latency; the batching
allowance of MS-TRAP-7 is 5 % of pollInterval.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from pathlib import Path
from typing import Any

from metersync_conformance.agent.senses_run import (
    ALERTING,
    IDLE,
    MAX,
    MIN,
    POLL,
    PRIVACY,
    TRAP_HOSTS,
    TRAP_MIN,
    SensesRun,
    SenseStage,
)
from metersync_conformance.registry import Finding, check, fail, not_tested, ok

CORE = ("Agent-Core",)
TRAP = ("Agent-Trap",)
TOL = 1.5
ALLOWANCE = 0.05 * POLL
_TEXT = re.compile(r"^h:[0-9a-f]{32}$")


# --- what the stage recorded ----------------------------------------------------------------


def _when(snap: Any) -> float:
    return float(snap.polled_at.to_datetime().timestamp())


def _snaps(stage: SenseStage, serial: str) -> list[Any]:
    """The device's snapshots (found by serial number: the key is judged on its own), by
    polledAt, each poll once."""
    found = [
        d
        for r in stage.manager.rec.reports()
        for d in r.obj.device
        if (d.identity.serial_number or "").strip().lower() == serial.lower()
    ]
    unique = {_when(d): d for d in found}  # a report delivered twice holds the same polls
    return [unique[k] for k in sorted(unique)]


def _serial(run: SensesRun, name: str) -> str:
    return str(run.recordings[name].truth.get("serial", ""))


def _traps_of(snaps: list[Any]) -> list[Any]:
    return [t for d in snaps for t in d.trap]


def _stage(run: SensesRun, name: str) -> tuple[SenseStage | None, Finding | None]:
    stage = run.stage(name)
    if stage is None:
        return None, not_tested(f"the {name} stage did not run (recordings {ALERTING}, {IDLE})")
    if not stage.reached:
        return None, fail(f"{name} stage: the agent never reported its printers", excerpt=stage.log)
    return stage, None


def _raw(run: SensesRun, name: str) -> dict[str, list[str]]:
    """The recording's values of the masked fields, as a device gives them."""
    prefixes = {
        "contact": "1.3.6.1.2.1.1.4.0",
        "hostname": "1.3.6.1.2.1.1.5.0",
        "location": "1.3.6.1.2.1.1.6.0",
        "macAddress": "1.3.6.1.2.1.2.2.1.6.",
        "consoleText": "1.3.6.1.2.1.43.16.5.1.2.",
        "alertDescription": "1.3.6.1.2.1.43.18.1.1.8.",
    }
    out: dict[str, list[str]] = {k: [] for k in prefixes}
    text = Path(run.recordings[name].snmprec).read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        parts = line.split("|", 2)
        if len(parts) != 3:
            continue
        oid, tag, value = parts
        for field_name, prefix in prefixes.items():
            if oid == prefix or (prefix.endswith(".") and oid.startswith(prefix)):
                if field_name == "macAddress":
                    raw = bytes.fromhex(value) if tag == "4x" else value.encode()
                    value = ":".join(f"{b:02x}" for b in raw) if len(raw) == 6 else ""
                elif tag == "4x":
                    value = bytes.fromhex(value).decode("utf-8", "replace")
                if value.strip():
                    out[field_name].append(value.strip())
    return out


def _values(snap: Any) -> dict[str, list[str]]:
    """The snapshot's values of the masked fields."""
    i = snap.identity
    st = snap.status
    return {
        "ipAddress": [i.ip_address],
        "macAddress": list(i.mac_address),
        "hostname": [v for v in (i.hostname, i.sys_name) if v],
        "contact": [i.contact] if i.contact else [],
        "location": [i.location] if i.location else [],
        "consoleText": list(st.console_line) if st else [],
        "alertDescription": [a.description for a in snap.alert if a.description]
        + [v.value for t in snap.trap for v in t.varbind if v.value],
    }


# --- traps (MS-TRAP-1..6) -----------------------------------------------------------------


@check("MS-TRAP-1", classes=CORE, role="agent")
async def senses_trap_receiver_where_provisioned(run: SensesRun) -> list[Finding]:
    """The receiver binds exactly traps/address:port (UDP), nothing listens on TCP, and a
    wildcard traps/address is refused with 3001."""
    out = []
    trapping = "Agent-Trap" in run.classes
    for name in ("senses", "budget"):
        stage = run.stage(name)
        if stage is None:
            out.append(not_tested(f"the {name} stage did not run"))
            continue
        want = (TRAP_HOSTS[name], stage.trap_port)
        on_port = [s for s in stage.udp if s.port == stage.trap_port]
        wrong = [s for s in on_port if s.address != want[0]]
        if stage.tcp or wrong:
            out.append(
                fail(
                    f"{name}: listening beyond the provisioned receiver: "
                    + ", ".join(map(str, stage.tcp + wrong)),
                    expected=f"udp {want[0]}:{want[1]} only",
                )
            )
        elif trapping and not on_port:
            out.append(fail(f"{name}: no UDP socket at {want[0]}:{want[1]}", excerpt=stage.log))
        else:
            out.append(ok(f"{name}: udp {want[0]}:{want[1]} only, no TCP listener"))
    w = run.stage("wildcard")
    if w is None or not trapping:
        out.append(not_tested("a wildcard traps/address is judged with Agent-Trap"))
    elif not w.reached or w.exit_code in (None, 0) or "3001" not in w.log:
        out.append(
            fail(
                "traps/address 0.0.0.0 was not refused with 3001",
                actual=f"exit {w.exit_code}",
                excerpt=w.log,
            )
        )
    else:
        out.append(ok(f"traps/address 0.0.0.0 refused (exit {w.exit_code}, 3001)"))
    return out


@check("MS-TRAP-2", classes=TRAP, role="agent")
async def senses_traps_accepted(run: SensesRun) -> Finding:
    """v1 trap, v2c trap and v3 inform from polled printers are accepted (reported), and the
    inform acknowledged."""
    stage, finding = _stage(run, "senses")
    if stage is None:
        return finding  # type: ignore[return-value]
    reported = {
        t.trap_oid for d in stage.manager.rec.reports() for s in d.obj.device for t in s.trap
    }
    good = [s for s in stage.sent if s.good]
    missing = [f"v{s.version} {s.pdu} {s.trap_oid}" for s in good if s.trap_oid not in reported]
    unacked = [s.trap_oid for s in good if s.pdu == "inform" and s.error]
    if missing or unacked:
        return fail(
            "accepted notifications missing: "
            + ", ".join(missing)
            + (f"; informs not acknowledged: {unacked}" if unacked else ""),
            excerpt=stage.log,
        )
    return ok(f"{len(good)} notifications (v1 trap, v2c traps, v3 inform) reported; inform acked")


@check("MS-TRAP-3", classes=TRAP, role="agent")
async def senses_bad_traps_dropped(run: SensesRun) -> Finding:
    """A trap from an unpolled address and ones with wrong credentials: counted, not reported,
    no read, the bad inform not acknowledged."""
    stage, finding = _stage(run, "senses")
    if stage is None:
        return finding  # type: ignore[return-value]
    bad = [s for s in stage.sent if not s.good]
    reported = {
        t.trap_oid for r in stage.manager.rec.reports() for d in r.obj.device for t in d.trap
    }
    leaked = [s.trap_oid for s in bad if s.trap_oid in reported]
    acked = [s.trap_oid for s in bad if s.pdu == "inform" and not s.error]
    stats = _last_stats(stage)
    problems = []
    if leaked:
        problems.append(f"reported: {leaked}")
    if acked:
        problems.append(f"bad inform acknowledged: {acked}")
    if stats is not None:  # the counts are reported in agentStatus/traps (MS-TRAP-6)
        want_unknown = sum(s.why == "unknownSource" for s in bad)
        want_bad = sum(s.why == "badCredentials" for s in bad)
        if stats.unknown_source < want_unknown or stats.bad_credentials < want_bad:
            problems.append(
                f"counted unknownSource {stats.unknown_source} (sent {want_unknown}), "
                f"badCredentials {stats.bad_credentials} (sent {want_bad})"
            )
    b = [s for s in bad if s.why == "badCredentials" and s.version == "2c"]
    if b and (early := _early(_snaps(stage, _serial(run, IDLE)), b[0].at, 5.0)):
        problems.append(f"a read {early:.1f} s after the bad-community trap, off its schedule")
    if problems:
        return fail("; ".join(problems), excerpt=stage.log)
    return ok(f"{len(bad)} bad notifications counted and dropped")


def _early(snaps: list[Any], since: float, within: float) -> float | None:
    """Seconds after `since` of a poll started off the device's schedule (None: none)."""
    for prev, nxt in zip(snaps, snaps[1:], strict=False):
        t = _when(nxt)
        if since - 0.5 <= t <= since + within:
            due = _when(prev) + (prev.interval or POLL) - ALLOWANCE - TOL
            if t < due:
                return t - since
    return None


def _last_stats(stage: SenseStage) -> Any:
    reports = sorted(stage.manager.rec.reports(), key=lambda r: r.obj.sequence)
    return reports[-1].obj.agent_status.traps if reports else None


@check("MS-TRAP-4", classes=TRAP, role="agent")
async def senses_trap_triggers_one_read(run: SensesRun) -> Finding:
    """A trap from the idle printer starts a read within 5 s; the burst after it within
    traps/minInterval starts no other."""
    stage, finding = _stage(run, "senses")
    if stage is None:
        return finding  # type: ignore[return-value]
    b_traps = [s for s in stage.sent if s.good and s.source == stage.devices[1].host]
    if not b_traps:
        return not_tested("no trap was sent from the idle printer")
    first = b_traps[0].at
    snaps = _snaps(stage, _serial(run, IDLE))
    started = [_when(d) - first for d in snaps if first - 0.5 <= _when(d) <= first + 5 + TOL]
    window = [d for d in snaps if first - 0.5 <= _when(d) < first + TRAP_MIN - TOL]
    extra = [
        _when(d) - first
        for prev, d in zip(snaps, snaps[1:], strict=False)
        if d in window[1:] and _when(d) < _when(prev) + (prev.interval or POLL) - ALLOWANCE - TOL
    ]
    if not started:
        return fail(
            "no read of the idle printer within 5 s of its trap",
            expected="polledAt ≤ trap + 5 s",
            excerpt=stage.log,
        )
    if extra:
        return fail(
            f"{len(extra)} more reads within traps/minInterval ({TRAP_MIN} s) of the "
            f"first trap, at +{', +'.join(f'{x:.1f}' for x in extra)} s"
        )
    return ok(f"read {started[0]:.1f} s after the trap; the burst after it triggered none")


@check("MS-TRAP-5", classes=TRAP, role="agent")
async def senses_traps_reported_once(run: SensesRun) -> Finding:
    """Every accepted notification is reported once, in its device's snapshot, as sent."""
    stage, finding = _stage(run, "senses")
    if stage is None:
        return finding  # type: ignore[return-value]
    by_host = {stage.devices[0].host: ALERTING, stage.devices[1].host: IDLE}
    problems = []
    seen = 0
    for s in stage.sent:
        if not s.good:
            continue
        here = [
            t
            for t in _traps_of(_snaps(stage, _serial(run, by_host[s.source])))
            if t.trap_oid == s.trap_oid
        ]
        seen += bool(here)
        if len(here) > 1:
            problems.append(f"{s.trap_oid} reported {len(here)} times")
        for t in here[:1]:
            got = (t.snmp_version.value, t.pdu.value)
            if got != (s.version, s.pdu):
                problems.append(f"{s.trap_oid}: {got}, sent as {(s.version, s.pdu)}")
    stats = _last_stats(stage)
    reported = sum(len(_traps_of(_snaps(stage, _serial(run, n)))) for n in (ALERTING, IDLE))
    if stats is not None and stats.accepted > reported:
        problems.append(f"{stats.accepted} accepted but {reported} reported")
    if not seen:
        problems.append("no notification reported")
    if problems:
        return fail("; ".join(problems), excerpt=stage.log)
    return ok(f"{seen} notifications, each once, with version and PDU as sent")


@check("MS-TRAP-6", classes=TRAP, role="agent")
async def senses_trap_stats(run: SensesRun) -> Finding:
    """Every report carries agentStatus/traps: the provisioned address and port, counts that
    never go down, and the reads triggered."""
    stage, finding = _stage(run, "senses")
    if stage is None:
        return finding  # type: ignore[return-value]
    reports = sorted(stage.manager.rec.reports(), key=lambda r: r.obj.sequence)
    want = (TRAP_HOSTS["senses"], stage.trap_port)
    last: tuple[int, ...] = (0, 0, 0, 0)
    for r in reports:
        st = r.obj.agent_status.traps
        if st is None:
            return fail(f"report {r.obj.sequence} has no agentStatus/traps")
        if (st.address, st.port) != want:
            return fail(
                "agentStatus/traps names another address",
                expected=f"{want[0]}:{want[1]}",
                actual=f"{st.address}:{st.port}",
            )
        now = (st.accepted, st.unknown_source, st.bad_credentials, st.triggered_reads)
        if any(a < b for a, b in zip(now, last, strict=True)):
            return fail(f"counts went down in report {r.obj.sequence}: {last} → {now}")
        last = now
    if last[0] < 1 or last[3] < 1:
        return fail(f"final counts {last}: nothing accepted, or no triggered read")
    return ok(f"{len(reports)} reports; final accepted/unknown/bad/reads {last}")


# --- adaptive polling (MS-TRAP-7..11) -----------------------------------------------------


def _gaps(snaps: list[Any]) -> list[tuple[Any, float]]:
    return [(a, _when(b) - _when(a)) for a, b in zip(snaps, snaps[1:], strict=False)]


@check("MS-TRAP-7", classes=CORE, role="agent")
async def senses_min_interval(run: SensesRun) -> list[Finding]:
    """No device polled again sooner than adaptivePolling/minInterval (less the batching
    allowance)."""
    out = []
    for name in ("senses", "budget"):
        stage, finding = _stage(run, name)
        if stage is None:
            out.append(finding)
            continue
        for d in stage.devices:
            gaps = [g for _, g in _gaps(_snaps(stage, str(d.recording.truth.get("serial"))))]
            short = [g for g in gaps if g < MIN - ALLOWANCE - 0.3]
            if short:
                out.append(
                    fail(
                        f"{name}: {d.recording.name} polled again after {min(short):.2f} s",
                        expected=f"≥ {MIN} s",
                    )
                )
            else:
                out.append(
                    ok(
                        f"{name}: {d.recording.name}: {len(gaps)} gaps, shortest "
                        f"{min(gaps, default=0):.1f} s"
                    )
                )
    return out


@check("MS-TRAP-8", classes=CORE, role="agent")
async def senses_max_interval(run: SensesRun) -> Finding:
    """Every device polled at least once per adaptivePolling/maxInterval, to the stage's end."""
    stage, finding = _stage(run, "senses")
    if stage is None:
        return finding  # type: ignore[return-value]
    worst = 0.0
    for d in stage.devices:
        snaps = _snaps(stage, str(d.recording.truth.get("serial")))
        gaps = [g for _, g in _gaps(snaps)]
        tail = stage.ended - _when(snaps[-1]) - 3.0 if snaps else 0.0  # its report's way
        worst = max([worst, tail, *gaps])
        if max([tail, *gaps]) > MAX + TOL + 1.0:
            return fail(
                f"{d.recording.name}: {max([tail, *gaps]):.1f} s without a poll",
                expected=f"≤ maxInterval {MAX} s",
            )
    return ok(f"longest time without a poll {worst:.1f} s (maxInterval {MAX} s)")


@check("MS-TRAP-9", classes=CORE, role="agent")
async def senses_pdu_budget(run: SensesRun) -> Finding:
    """With pduBudget 0 nothing is read earlier than pollInterval: no adaptive poll of the
    alerting printer, no read for its trap."""
    stage, finding = _stage(run, "budget")
    if stage is None:
        return finding  # type: ignore[return-value]
    snaps = _snaps(stage, _serial(run, ALERTING))
    gaps = [g for _, g in _gaps(snaps)]
    if len(gaps) < 2:
        return fail(
            f"{len(snaps)} snapshots in {stage.ended - stage.started:.0f} s", excerpt=stage.log
        )
    short = [g for g in gaps if g < POLL - ALLOWANCE - TOL]
    if short:
        return fail(
            f"polled {len(short)} times earlier than pollInterval with pduBudget 0, "
            f"after {min(short):.1f} s",
            expected=f"≥ {POLL} s",
        )
    return ok(f"{len(gaps)} gaps, shortest {min(gaps):.1f} s: nothing early with pduBudget 0")


@check("MS-TRAP-10", classes=CORE, role="agent")
async def senses_interval_truthful(run: SensesRun) -> Finding:
    """Each snapshot's interval (or pollInterval, absent) is when the next poll came, at the
    latest; a device polled off pollInterval says so."""
    stage, finding = _stage(run, "senses")
    if stage is None:
        return finding  # type: ignore[return-value]
    traps = [s.at for s in stage.sent if s.good]
    for d in stage.devices:
        snaps = _snaps(stage, str(d.recording.truth.get("serial")))
        for prev, gap in _gaps(snaps):
            stated = prev.interval or POLL
            if gap > stated + TOL + 1.0:
                return fail(
                    f"{d.recording.name}: next poll after {gap:.1f} s",
                    expected=f"≤ interval {stated} s (+ jitter 0)",
                )
            triggered = any(_when(prev) < t <= _when(prev) + gap + 0.5 for t in traps)
            if prev.interval is None and gap < POLL - ALLOWANCE - TOL and not triggered:
                return fail(
                    f"{d.recording.name}: polled after {gap:.1f} s without an interval "
                    f"attribute (pollInterval {POLL} s)"
                )
    return ok("every next poll came within the interval its snapshot stated")


@check("MS-TRAP-11", classes=CORE, role="agent")
async def senses_adaptive(run: SensesRun) -> Finding:
    """The alerting printer is polled more often than pollInterval, the idle one less often."""
    stage, finding = _stage(run, "senses")
    if stage is None:
        return finding  # type: ignore[return-value]
    a = [g for _, g in _gaps(_snaps(stage, _serial(run, ALERTING)))]
    b = _snaps(stage, _serial(run, IDLE))
    faster = bool(a) and sorted(a)[len(a) // 2] < POLL - ALLOWANCE - TOL
    slower = any(g > POLL + TOL for _, g in _gaps(b))
    if not (faster and slower):
        return fail(
            f"alerting printer's median gap {sorted(a)[len(a) // 2] if a else 0:.1f} s, "
            f"idle printer's longest gap {max((g for _, g in _gaps(b)), default=0):.1f} s",
            expected=f"< {POLL} s and > {POLL} s",
        )
    return ok(f"alerting printer every ≈{sorted(a)[len(a) // 2]:.1f} s; idle one slower")


# --- privacy (MS-PRIV-1..7) ---------------------------------------------------------------


def _privacy_stage(run: SensesRun) -> tuple[SenseStage | None, Finding | None]:
    return _stage(run, "senses")


@check("MS-PRIV-1", "MS-PRIV-2", classes=CORE, role="agent")
async def senses_nothing_unmasked(run: SensesRun) -> Finding:
    """No report holds a value as read of a masked field; dropped fields are absent."""
    stage, finding = _privacy_stage(run)
    if stage is None:
        return finding  # type: ignore[return-value]
    leaks = []
    for d in stage.devices:
        raw = _raw(run, d.recording.name)
        raw["ipAddress"] = [d.host]
        raw["alertDescription"].append("Jane Doe")
        for snap in _snaps(stage, str(d.recording.truth.get("serial"))):
            vals = _values(snap)
            for name, values in raw.items():
                for v in values:
                    if any(v in got for got in vals[name]):
                        leaks.append(f"{name} {v!r}")
            for name, mode in PRIVACY.items():
                if mode == "drop" and name != "ipAddress" and vals[name]:
                    leaks.append(f"{name} present though dropped")
    if leaks:
        return fail("masked values in reports: " + ", ".join(sorted(set(leaks))[:6]))
    return ok("no value of a masked field as read; dropped fields absent")


def _unkeyed(name: str, value: str) -> set[str]:
    """The chapter 20 forms of unkeyed hashes of the value (an empty key, plain SHA-256)."""
    msg = name.encode() + b"\x00" + value.encode()
    digests = [
        hmac.new(b"", msg, hashlib.sha256).digest(),
        hashlib.sha256(msg).digest(),
        hashlib.sha256(value.encode()).digest(),
    ]
    out = set()
    for d in digests:
        mac = bytes([(d[0] & 0xFE) | 0x02]) + d[1:6]
        out |= {
            "h:" + d[:16].hex(),
            str(ipaddress.IPv6Address(b"\xfd" + d[:15])),
            ":".join(f"{b:02x}" for b in mac),
        }
    return out


def _form_ok(name: str, value: str) -> bool:
    if name == "ipAddress":
        try:
            return ipaddress.ip_address(value) in ipaddress.ip_network("fd00::/8")
        except ValueError:
            return False
    if name == "macAddress":
        return (
            bool(re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", value))
            and (int(value[:2], 16) & 3) == 2
        )
    return bool(_TEXT.match(value))


@check("MS-PRIV-3", classes=CORE, role="agent")
async def senses_hash_keyed(run: SensesRun) -> Finding:
    """Hashed fields: in the chapter 20 form, the same in every snapshot, and no unkeyed hash."""
    stage, finding = _privacy_stage(run)
    if stage is None:
        return finding  # type: ignore[return-value]
    hashed = [n for n, m in PRIVACY.items() if m == "hash" and n != "alertDescription"]
    for d in stage.devices:
        raw = _raw(run, d.recording.name)
        raw["ipAddress"] = [d.host]
        snaps = _snaps(stage, str(d.recording.truth.get("serial")))
        for name in hashed:
            seen = {tuple(_values(s)[name]) for s in snaps}
            if len(seen) > 1:
                return fail(f"{d.recording.name}: {name} changed between snapshots: {seen}")
            for v in next(iter(seen), ()):
                if not _form_ok(name, v):
                    return fail(f"{d.recording.name}: {name} {v!r} is not in the hash's form")
                if any(v in _unkeyed(name, r) for r in raw.get(name, [])):
                    return fail(f"{d.recording.name}: {name} is an unkeyed hash of the value")
    return ok(f"{', '.join(hashed)}: keyed, stable, in form")


@check("MS-PRIV-5", classes=CORE, role="agent")
async def senses_key_unmasked(run: SensesRun) -> Finding:
    """The device key under masking is the key of the values as read (the truth's)."""
    stage, finding = _privacy_stage(run)
    if stage is None:
        return finding  # type: ignore[return-value]
    for d in stage.devices:
        keys = {s.identity.device_key for s in _snaps(stage, str(d.recording.truth["serial"]))}
        if keys != {d.recording.key}:
            return fail(
                f"{d.recording.name}: keys {sorted(keys)} under masking", expected=d.recording.key
            )
    return ok("device keys as without masking")


@check("MS-PRIV-6", classes=CORE, role="agent")
async def senses_masked_listed(run: SensesRun) -> Finding:
    """`masked` lists exactly the fields masked in the snapshot, with their modes."""
    stage, finding = _privacy_stage(run)
    if stage is None:
        return finding  # type: ignore[return-value]
    for d in stage.devices:
        raw = _raw(run, d.recording.name)
        for snap in _snaps(stage, str(d.recording.truth["serial"])):
            has = {n for n, v in raw.items() if v} | {"ipAddress"}
            if any(v.value for t in snap.trap for v in t.varbind if v.type_value.value != "oid"):
                has.add("alertDescription")
            want = {f"{n}:{PRIVACY[n]}" for n in has}
            got = set(snap.masked)
            if got != want:
                return fail(f"{d.recording.name}: masked {sorted(got)}", expected=sorted(want))
    return ok("every snapshot lists its masked fields")


@check("MS-PRIV-7", classes=CORE, role="agent")
async def senses_readings_kept(run: SensesRun) -> Finding:
    """Counters and supplies under masking are as read (the truth's)."""
    stage, finding = _privacy_stage(run)
    if stage is None:
        return finding  # type: ignore[return-value]
    for d in stage.devices:
        snaps = _snaps(stage, str(d.recording.truth["serial"]))
        if not snaps:
            return fail(f"{d.recording.name} never reported")
        s = snaps[0]
        want_c = {(c["oid"], int(c["value"])) for c in d.recording.counters()}
        got_c = {(c.oid, c.value) for c in s.counter}
        want_s = {(int(x["index"]), int(x["level"]), int(x["max"])) for x in d.recording.supplies()}
        got_s = {(x.index, x.level.raw, x.max_capacity.raw) for x in s.supply}
        if not want_c <= got_c or not want_s <= got_s:
            return fail(
                f"{d.recording.name}: readings changed under masking",
                expected=f"counters {sorted(want_c)}, supplies {sorted(want_s)}",
                actual=f"counters {sorted(got_c)}, supplies {sorted(got_s)}",
            )
    return ok("counters and supplies as read")
