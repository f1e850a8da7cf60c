"""Agent checks of snapshot values against the MIBs' textual conventions, the truth files and
the recordings themselves (what was not recorded must not be reported)."""

from __future__ import annotations

from typing import Any

from metersync_conformance.agent.checks.core import (
    CORE,
    _name,
    _needs_reports,
    _per_device,
    _phase_missing,
    _snapshot_xml,
    observations,
    unapplied,
)
from metersync_conformance.agent.harness import AgentContext, Device
from metersync_conformance.registry import Finding, check, fail, not_tested, ok

# Textual conventions, numbers → names (RFC 2790, RFC 3805).
DEVICE_STATUS = {1: "unknown", 2: "running", 3: "warning", 4: "testing", 5: "down"}
PRINTER_STATUS = {1: "other", 2: "unknown", 3: "idle", 4: "printing", 5: "warmup"}
SUPPLY_CLASS = {1: "other", 3: "supplyThatIsConsumed", 4: "receptacleThatIsFilled"}
SUPPLY_TYPE = dict(
    enumerate(
        [
            "other",
            "unknown",
            "toner",
            "wasteToner",
            "ink",
            "inkCartridge",
            "inkRibbon",
            "wasteInk",
            "opc",
            "developer",
            "fuserOil",
            "solidWax",
            "ribbonWax",
            "wasteWax",
            "fuser",
            "coronaWire",
            "fuserOilWick",
            "cleanerUnit",
            "fuserCleaningPad",
            "transferUnit",
            "tonerCartridge",
            "fuserOiler",
            "water",
            "wasteWater",
            "glueWaterAdditive",
            "wastePaper",
            "bindingSupply",
            "bandingSupply",
            "stitchingWire",
            "shrinkWrap",
            "paperWrap",
            "staples",
            "inserts",
            "covers",
            "matteToner",
            "matteInk",
        ],
        start=1,
    )
)
SUPPLY_UNIT = {
    1: "other",
    2: "unknown",
    3: "tenThousandthsOfInches",
    4: "micrometers",
    7: "impressions",
    8: "sheets",
    11: "hours",
    12: "thousandthsOfOunces",
    13: "tenthsOfGrams",
    14: "hundrethsOfFluidOunces",
    15: "tenthsOfMilliliters",
    16: "feet",
    17: "meters",
    18: "items",
    19: "percent",
}
SEVERITY = {1: "other", 3: "critical", 4: "warning", 5: "warningBinaryChangeEvent"}
TRAINING = {
    1: "other",
    2: "unknown",
    3: "untrained",
    4: "trained",
    5: "fieldService",
    6: "management",
    7: "noInterventionRequired",
}
GROUP = {
    1: "other",
    2: "unknown",
    3: "hostResourcesMIBStorageTable",
    4: "hostResourcesMIBDeviceTable",
    5: "generalPrinter",
    6: "cover",
    7: "localization",
    8: "input",
    9: "output",
    10: "marker",
    11: "markerSupplies",
    12: "markerColorant",
    13: "mediaPath",
    14: "channel",
    15: "interpreter",
    16: "consoleDisplayBuffer",
    17: "consoleLights",
    18: "alert",
    30: "finDevice",
    31: "finSupply",
    32: "finSupplyMediaInput",
    33: "finAttribute",
}
# PrtAlertCodeTC: the codes judged here (others are not judged, never assumed unrecognised).
ALERT_CODE = {
    1: "other",
    2: "unknown",
    3: "coverOpen",
    4: "coverClosed",
    5: "interlockOpen",
    6: "interlockClosed",
    7: "configurationChange",
    8: "jam",
    13: "subunitEmpty",
    501: "doorOpen",
    502: "doorClosed",
    503: "poweredUp",
    504: "poweredDown",
    801: "inputMediaTrayMissing",
    807: "inputMediaSupplyLow",
    808: "inputMediaSupplyEmpty",
    901: "outputMediaTrayMissing",
    902: "outputMediaTrayAlmostFull",
    903: "outputMediaTrayFull",
    1101: "markerTonerEmpty",
    1104: "markerTonerAlmostEmpty",
    1115: "markerTonerCartridgeMissing",
}


def _enum(el: Any, table: dict[int, str], what: str, *, judge_unknown: bool = True) -> str | None:
    if el is None:
        return None
    raw, got = int(el.raw), _name(el.value)
    want = table.get(raw)
    if want is None:
        if not judge_unknown:
            return None
        want = "unrecognised"
    return None if got == want else f"{what} raw {raw}: {got}, the MIB says {want}"


def _enum_problems(snap: Any) -> list[str]:
    out: list[str | None] = []
    st = snap.status
    if st is not None:
        out.append(_enum(st.device_status, DEVICE_STATUS, "deviceStatus"))
        out.append(_enum(st.printer_status, PRINTER_STATUS, "printerStatus"))
    for s in snap.supply:
        out.append(_enum(s.supply_class, SUPPLY_CLASS, f"supply {s.index} supplyClass"))
        out.append(_enum(s.unit, SUPPLY_UNIT, f"supply {s.index} unit"))
        if s.source == "standard":
            out.append(_enum(s.type_value, SUPPLY_TYPE, f"supply {s.index} type"))
    for a in snap.alert:
        out.append(_enum(a.severity, SEVERITY, f"alert {a.index} severity"))
        out.append(_enum(a.training_level, TRAINING, f"alert {a.index} trainingLevel"))
        out.append(_enum(a.group, GROUP, f"alert {a.index} group"))
        out.append(_enum(a.code, ALERT_CODE, f"alert {a.index} code", judge_unknown=False))
    return [p for p in out if p]


@check("MS-DEV-6", classes=CORE, role="agent")
async def enumerations_named_as_the_mib(ctx: AgentContext) -> list[Finding]:
    """Every enumerated value: the number as read in raw, the MIB's name (or unrecognised)."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    n = 0
    for r in ctx.rec.reports():
        for snap in r.obj.device:
            n += 1
            probs = _enum_problems(snap)
            if probs:
                return [
                    fail(
                        f"{snap.identity.device_key}: {probs[0]}",
                        excerpt=_snapshot_xml(r, snap.identity.device_key),
                    )
                ]
    return [ok(f"{n} snapshots: every enumerated name matches its raw number")]


CONSOLE_TEXT = "1.3.6.1.2.1.43.16.5.1.2."  # prtConsoleDisplayBufferText


def _has_recorded(dev: Device, prefix: str) -> bool:
    text = dev.recording.snmprec.read_text(encoding="utf-8", errors="replace")
    return any(line.startswith(prefix) for line in text.splitlines())


@check("MS-DEV-7", "MS-DEV-21", "MS-DEV-20", classes=CORE, role="agent")
async def text_status_trays_as_read(ctx: AgentContext) -> list[Finding]:
    """Decoded texts, status and console, input trays: as the truth files give them."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]

    def text(dev: Device, snap: Any) -> list[tuple[str, str, str]]:
        t = dev.recording.truth
        out = []
        for field, value in t.get("text", {}).items():
            got = getattr(snap.identity, field, None)
            if got != value:
                out.append((f"identity {field}", repr(value), repr(got)))
        descr = {s["index"]: s["description"] for s in t.get("supply", []) if "description" in s}
        for s in snap.supply:
            if s.index in descr and s.description != descr[s.index]:
                out.append((f"supply {s.index} description", descr[s.index], str(s.description)))
        if "alert_descriptions" in t:
            got_a = [a.description for a in snap.alert]
            if got_a != t["alert_descriptions"]:
                out.append(("alert descriptions", str(t["alert_descriptions"]), str(got_a)))
        return out

    def status(dev: Device, snap: Any) -> list[tuple[str, str, str]]:
        t = dev.recording.truth
        st = snap.status
        out = []
        for field, attr in (
            ("device_status", "device_status"),
            ("printer_status", "printer_status"),
        ):
            if field in t:
                got = _name(getattr(st, attr).value) if st and getattr(st, attr) else None
                if got != t[field]:
                    out.append((field, t[field], str(got)))
        if "console" in t:
            got_c = list(st.console_line) if st else []
            if got_c != t["console"]:
                # without prtConsoleDisplayBufferText the truth's text is a vendor object's
                source = None if _has_recorded(dev, CONSOLE_TEXT) else unapplied(dev, snap)
                out.append(("consoleLine", str(t["console"]), str(got_c), source))
        return out

    def trays(dev: Device, snap: Any) -> list[tuple[str, str, str]]:
        if "tray" not in dev.recording.truth:
            return []
        want = sorted(
            (int(x["index"]), int(x["level"]), x["meaning"], int(x["max"]), x["max_meaning"])
            for x in dev.recording.truth["tray"]
        )
        got = sorted(
            (
                int(x.index),
                int(x.level.raw),
                _name(x.level.meaning),
                int(x.max_capacity.raw),
                _name(x.max_capacity.meaning),
            )
            for x in snap.input_tray
        )
        return [] if want == got else [("input trays", str(want), str(got))]

    return (
        _per_device(ctx, "MS-DEV-7", text)
        + _per_device(ctx, "MS-DEV-21", status)
        + _per_device(ctx, "MS-DEV-20", trays)
    )


@check("MS-DEV-32", "MS-DEV-33", classes=CORE, role="agent")
async def output_bins_and_covers_as_read(ctx: AgentContext) -> list[Finding]:
    """prtOutputTable and prtCoverTable rows: as the truth files give them (type by name,
    capacities raw with their meaning; cover status by name and raw)."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]

    def level(x: Any) -> tuple[int, str] | None:
        return None if x is None else (int(x.raw), _name(x.meaning))

    def outputs(dev: Device, snap: Any) -> list[tuple[str, str, str]]:
        if "output" not in dev.recording.truth:
            return []
        want = sorted(
            (int(o["index"]), o["type"], (int(o["remaining"]), o["meaning"]), int(o["max"]),
             o["name"])
            for o in dev.recording.truth["output"]
        )  # fmt: skip
        got = sorted(
            (int(o.index), _name(o.type_value.value) if o.type_value else "",
             level(o.remaining_capacity), int(o.max_capacity.raw) if o.max_capacity else None,
             o.name)
            for o in snap.output_tray
        )  # fmt: skip
        return [] if want == got else [("output bins", str(want), str(got))]

    def covers(dev: Device, snap: Any) -> list[tuple[str, str, str]]:
        if "cover" not in dev.recording.truth:
            return []
        want = sorted(
            (int(c["index"]), c["description"], c["status"], int(c["raw"]))
            for c in dev.recording.truth["cover"]
        )
        got = sorted(
            (int(c.index), c.description, _name(c.status.value), int(c.status.raw))
            for c in snap.cover
        )
        return [] if want == got else [("covers", str(want), str(got))]

    return _per_device(ctx, "MS-DEV-32", outputs) + _per_device(ctx, "MS-DEV-33", covers)


def _recorded(dev: Device) -> dict[str, str]:
    """OID → value text of the recording (variation lines keep their value argument)."""
    out = {}
    for line in dev.recording.snmprec.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) == 3:
            out[parts[0]] = parts[2]
    return out


_SYSTEM = {
    "sys_descr": "1.3.6.1.2.1.1.1.0",
    "contact": "1.3.6.1.2.1.1.4.0",
    "sys_name": "1.3.6.1.2.1.1.5.0",
    "location": "1.3.6.1.2.1.1.6.0",
}


@check("MS-DEV-3", "MS-SNMP-13", classes=CORE, role="agent")
async def nothing_unread_reported(ctx: AgentContext) -> list[Finding]:
    """What the recording lacks is absent from the snapshot, never zero or empty, and an
    absent optional object is no collection error."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]

    def judge(dev: Device, snap: Any) -> list[tuple[str, str, str]]:
        rec = _recorded(dev)
        out = []
        for attr, oid in _SYSTEM.items():
            if oid not in rec and getattr(snap.identity, attr, None) is not None:
                out.append(
                    (f"identity {attr} not recorded", "absent", str(getattr(snap.identity, attr)))
                )
        tables = {
            "inputTray": ("1.3.6.1.2.1.43.8.2.1.", snap.input_tray),
            "alert": ("1.3.6.1.2.1.43.18.1.1.", snap.alert),
        }
        for what, (prefix, got) in tables.items():
            if got and not any(o.startswith(prefix) for o in rec):
                out.append((f"{what} without a recorded table", "none", f"{len(got)}"))
        for e in snap.collection_error:
            if _name(
                e.code
            ) == "no-such-object" and "no-such-object" not in dev.recording.truth.get("errors", []):
                out.append(("no-such-object for an absent object", "no error", str(e.oid)))
        return out

    return _per_device(ctx, "MS-DEV-3", judge) + _per_device(ctx, "MS-SNMP-13", judge)


@check("MS-DEV-18", classes=CORE, role="agent")
async def vendor_supplies_reported(ctx: AgentContext) -> list[Finding]:
    """Vendor supplies a profile defines (drums, fusers, belts…) are reported with their source."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]

    def judge(dev: Device, snap: Any) -> list[tuple[str, str, str]]:
        got = {(int(s.index), s.source) for s in snap.supply}
        want = [
            (int(s["index"]), str(s["source"]))
            for s in dev.recording.supplies()
            if s["source"] != "standard"
        ]
        return [
            (f"vendor supply {i} ({src}) missing", f"supply {i} ({src})", str(sorted(got)), src)
            for i, src in want
            if (i, src) not in got
        ]

    vendor = [
        d
        for d, *_ in observations(ctx)
        if any(s["source"] != "standard" for s in d.recording.supplies())
    ]
    if not vendor:
        return [not_tested("no recording of this run has vendor supplies in its truth")]
    return _per_device(ctx, "MS-DEV-18", judge)


def _failing_oids(dev: Device) -> list[str]:
    """The OIDs a recording makes answer genErr (snmpsim's `error` variation)."""
    text = dev.recording.snmprec.read_text(encoding="utf-8", errors="replace")
    return [line.split("|", 1)[0] for line in text.splitlines() if ":error|" in line]


def _bulk_gen_err(dev: Device, e: Any, excerpt: str) -> Finding:
    """MS-SNMP-17: a genErr inside a GETBULK answer is traced to the failing object (its
    table entry), not to the request's error-index or the start of the walk."""
    where = [o for o in _failing_oids(dev) if e is not None and e.oid]
    entry = {".".join(o.split(".")[:-3]) for o in where}
    near = any(str(e.oid).startswith(p) for p in entry) if e is not None else False
    if near:
        return ok(f"{dev.recording.name}: genErr traced to {e.oid}", "MS-SNMP-17")
    return fail(
        f"{dev.recording.name}: the genErr of a GETBULK answer was not traced to its object",
        "MS-SNMP-17",
        expected=f"a gen-err collectionError inside {sorted(entry) or _failing_oids(dev)}",
        actual=str(e.oid if e is not None else None),
        excerpt=excerpt,
    )


@check("MS-SNMP-8", "MS-SNMP-12", "MS-SNMP-17", "MS-DEV-27", classes=CORE, role="agent")
async def walk_faults_kept_partial(ctx: AgentContext) -> list[Finding]:
    """A looping walk, a genErr and an undecodable value: each a collectionError with its OID;
    everything else read from the device is still reported."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    out: list[Finding] = []
    per = {"walk-loop": "MS-SNMP-8", "gen-err": "MS-SNMP-12", "decode-error": "MS-SNMP-12"}
    seen = False
    for dev, snap, rep, _phase in observations(ctx):
        codes = set(dev.recording.truth.get("errors", [])) & set(per)
        if not codes or snap is None:
            continue
        seen = True
        key = snap.identity.device_key
        got = {_name(e.code): e for e in snap.collection_error}
        for code in sorted(codes):
            e = got.get(code)
            if e is None or not e.oid:
                out.append(
                    fail(
                        f"{dev.recording.name}: no {code} collectionError with an oid",
                        per[code],
                        excerpt=_snapshot_xml(rep, key),
                    )
                )
            else:
                out.append(ok(f"{dev.recording.name}: {code} at {e.oid}", per[code]))
            if code == "gen-err" and str(snap.snmp_version or "") not in ("", "1", "v1"):
                out.append(_bulk_gen_err(dev, e, _snapshot_xml(rep, key)))
        want = {int(s["index"]) for s in dev.recording.supplies()}
        have = {int(s.index) for s in snap.supply}
        out.append(
            ok(f"{dev.recording.name}: supplies {sorted(have)} kept beside the faults", "MS-DEV-27")
            if want <= have
            else fail(
                f"{dev.recording.name}: values read besides the faults were dropped",
                "MS-DEV-27",
                expected=str(sorted(want)),
                actual=str(sorted(have)),
                excerpt=_snapshot_xml(rep, key),
            )
        )
    if not seen:
        return [not_tested("no recording of this run has walk faults in its truth")]
    return out


@check("MS-DEV-24", classes=CORE, role="agent")
async def silent_device_still_reported(ctx: AgentContext) -> list[Finding]:
    """A monitored printer that stops answering is still in the report, under its last identity,
    with unreachable or timeout."""
    if ctx.vanished is None:
        return [not_tested("no printer was switched off in this run")]
    if (f := _phase_missing(ctx, "changes")) is not None:
        return [f]
    dev = ctx.vanished
    key = dev.recording.key
    for r in ctx.reports_in("changes"):
        for d in r.obj.device:
            if d.identity.device_key != key or d.counter:
                continue
            codes = {_name(e.code) for e in d.collection_error}
            if not codes & {"unreachable", "timeout", "auth-failure"}:
                continue
            if d.identity.ip_address != dev.host:
                return [
                    fail(
                        "the silent printer is reported at another address",
                        excerpt=_snapshot_xml(r, key),
                    )
                ]
            serial = str(dev.recording.truth.get("serial", ""))
            if serial and d.identity.serial_number != serial:
                return [
                    fail(
                        "the silent printer's last known identity is missing",
                        expected=serial,
                        actual=str(d.identity.serial_number),
                        excerpt=_snapshot_xml(r, key),
                    )
                ]
            return [ok(f"{key} switched off: reported with {sorted(codes)} at {dev.host}")]
    return [
        fail(
            f"{key} was switched off and not reported with unreachable/timeout",
            excerpt=ctx.agent_log(),
        )
    ]


@check("MS-DEV-1", classes=CORE, role="agent")
async def each_snapshot_a_new_poll(ctx: AgentContext) -> list[Finding]:
    """A device's snapshots in successive reports come from successive polls (polledAt grows)."""
    if (f := _needs_reports(ctx)) is not None:
        return [f]
    seen: dict[str, Any] = {}
    for r in ctx.rec.reports():
        seen.setdefault(r.report_id, r)  # type: ignore[arg-type]
    last: dict[str, Any] = {}
    n = 0
    for r in sorted(seen.values(), key=lambda x: x.sequence or 0):
        for d in r.obj.device:
            key = d.identity.device_key
            t = d.polled_at.to_datetime()
            if key in last and t <= last[key]:
                return [
                    fail(
                        f"{key}: report {r.sequence} carries a snapshot polled at {d.polled_at}, "
                        "not after the previous report's",
                        excerpt=_snapshot_xml(r, key),
                    )
                ]
            last[key] = t
            n += 1
    return [ok(f"{n} snapshots, each from a poll later than the device's previous one")]


@check("MS-SNMP-2", classes=CORE, role="agent")
async def snmpv3_user_that_works(ctx: AgentContext) -> Finding:
    """Printers that know only an SNMPv3 authPriv user (SHA256/AES), provisioned before a
    community: every answering printer is read with version 3, and `snmpv3` is declared."""
    if not ctx.setup.v3:
        return not_tested("no printer in this run was served with an SNMPv3 user")
    if (f := _needs_reports(ctx)) is not None:
        return f
    snaps = [(r, d) for r in ctx.rec.reports() for d in r.obj.device]
    read = [(r, d) for r, d in snaps if d.snmp_version is not None]
    other = [(r, d) for r, d in read if _name(d.snmp_version) != "3"]
    if not read:
        return fail("no snapshot names the SNMP version it was read with")
    if other:
        r, d = other[0]
        return fail(
            f"{d.identity.device_key} read with SNMP {_name(d.snmp_version)}, not 3",
            expected="3",
            actual=_name(d.snmp_version),
            excerpt=_snapshot_xml(r, d.identity.device_key),
        )
    enr = [x for x in ctx.rec.received if x.kind == "Enrollment"]
    caps = {_name(c) for c in enr[0].obj.capability} if enr else set()
    if "snmpv3" not in caps:
        return fail("SNMPv3 used but capability snmpv3 not declared", actual=sorted(caps))
    keys = {d.identity.device_key for _, d in read}
    return ok(f"{len(read)} snapshots of {len(keys)} printers read with SNMPv3; snmpv3 declared")
