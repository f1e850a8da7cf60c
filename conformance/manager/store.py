"""Checks of what a manager stores, read back through its JSON read API (MS-HTTP-17).

The harness sends reports with devices of its own (a random serial per check, so checks never
share a device), then reads the manager's devices, snapshots, meters and agents back.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import metersync_generated.v1 as model
from metersync_conformance.manager.core import (
    CORE,
    ManagerContext,
    evidence,
    expect_code,
    expect_receipt,
)
from metersync_conformance.registry import Finding, PeerError, check, fail, ok
from metersync_conformance.wire import SimAgent, now, xml_time

Mutate = Callable[[model.Report], None]


def fresh_serial() -> str:
    return "CT" + uuid.uuid4().hex[:12].upper()


def key_of(serial: str) -> str:
    return f"sn:hp:{serial.lower()}"


def dev_path(key: str, tail: str = "") -> str:
    return f"/api/v1/devices/{quote(key, safe=':')}{tail}"


def complete(rep: model.Report) -> None:
    """Make every snapshot complete (the example has one collectionError)."""
    for d in rep.device:
        d.collection_error = []


def at(polled: datetime, *more: Mutate) -> Mutate:
    def mutate(rep: model.Report) -> None:
        for d in rep.device:
            d.polled_at = xml_time(polled)
        for f in more:
            f(rep)

    return mutate


def set_total(value: int, anomaly_previous: int | None = None) -> Mutate:
    def mutate(rep: model.Report) -> None:
        for d in rep.device:
            for c in d.counter:
                if c.kind == model.CounterKind.TOTAL:
                    c.value = value
                    if anomaly_previous is not None:
                        c.anomaly = model.CounterAnomaly.DECREASED
                        c.previous = anomaly_previous

    return mutate


async def send_ok(
    ctx: ManagerContext, agent: SimAgent, serial: str, *mutations: Mutate, what: str
) -> Finding | None:
    """Send one report; None when accepted, else the FAIL finding (no requirement yet)."""

    def mutate(rep: model.Report) -> None:
        for f in mutations:
            f(rep)

    rid, body = agent.report(serial=serial, mutate=mutate)
    ans = await ctx.send(agent, body, what=what)
    if ans.receipt_status == "accepted":
        return None
    return fail(
        f"{what}: the report was not accepted ({ans.brief()}); nothing to read back",
        expected="Receipt accepted",
        actual=ans.brief(),
        excerpt=evidence(body, ans),
    )


async def read(ctx: ManagerContext, path: str, **params: object) -> Any:
    status, doc = await ctx.get_json(path, **params)
    if status != 200 or not isinstance(doc, dict):
        raise PeerError(f"GET {path} answered HTTP {status}, not a JSON object")
    return doc


# --- identity ------------------------------------------------------------------------------


def _move(ip: str, host: str) -> Mutate:
    def mutate(rep: model.Report) -> None:
        for d in rep.device:
            d.identity.ip_address = ip
            d.identity.hostname = host

    return mutate


@check("MS-ID-7", classes=CORE, role="manager")
async def ip_change_is_an_event(ctx: ManagerContext) -> list[Finding]:
    """A known device key at a new address: one device, its IP history records the change."""
    agent = await ctx.main_agent()
    serial, t = fresh_serial(), now()
    key = key_of(serial)
    for polled, ip, host in (
        (t - timedelta(minutes=20), "192.0.2.17", "mfp-a.example"),
        (t - timedelta(minutes=10), "198.51.100.9", "mfp-b.example"),
    ):
        bad = await send_ok(ctx, agent, serial, at(polled, _move(ip, host)), what=f"at {ip}")
        if bad:
            return [bad]
    dev = await read(ctx, dev_path(key))
    ips = await read(ctx, dev_path(key, "/ips"))
    seen = [x.get("ip") for x in ips.get("items", [])]
    same_serial = []
    for page in range(10):
        found = (await read(ctx, "/api/v1/devices", limit=1000, offset=page * 1000))["items"]
        same_serial += [d["deviceKey"] for d in found if d.get("serialNumber") == serial]
        if len(found) < 1000:
            break
    if (
        dev.get("currentIp") == "198.51.100.9"
        and seen == ["192.0.2.17", "198.51.100.9"]
        and (same_serial == [key])
    ):
        return [ok("one device; currentIp is the new address; the IP history has both events")]
    return [
        fail(
            "an address change did not give one device with two IP events",
            expected=f"one device {key}, currentIp 198.51.100.9, ips [192.0.2.17, 198.51.100.9]",
            actual=f"devices {same_serial}, currentIp {dev.get('currentIp')}, ips {seen}",
        )
    ]


# --- supplies, alerts, partial snapshots, counters -----------------------------------------


@check("MS-DEV-19", classes=CORE, role="manager")
async def levels_presented_by_meaning(ctx: ManagerContext) -> list[Finding]:
    """Supplies without percent have none in the read API; -3/-2 levels keep their meaning."""
    agent = await ctx.main_agent()
    serial = fresh_serial()
    bad = await send_ok(ctx, agent, serial, complete, what="supplies with -3 and -2 levels")
    if bad:
        return [bad]
    doc = await read(ctx, dev_path(key_of(serial), "/supplies"))
    got = {s.get("index"): s for s in doc.get("items", [])}
    want = {1: ("exact", 64, 64), 2: ("someRemaining", -3, None), 5: ("unknown", -2, None)}
    wrong = []
    for idx, (meaning, raw, percent) in want.items():
        s = got.get(idx) or {}
        level = s.get("level") or {}
        p = s.get("percent")
        if (
            level.get("meaning") != meaning
            or level.get("raw") != raw
            or ((p is None) != (percent is None) or (p is not None and Decimal(str(p)) != percent))
        ):
            wrong.append(f"supply {idx}: level {level}, percent {p}")
    if not wrong:
        return [ok("supplies 2 (-3 someRemaining) and 5 (-2 unknown) carry no percent")]
    return [
        fail(
            "a level was presented other than by its meaning: " + "; ".join(wrong),
            expected="supply 1 64 %, supply 2 someRemaining without percent, 5 unknown",
            actual="; ".join(wrong),
        )
    ]


def _no_alerts(rep: model.Report) -> None:
    for d in rep.device:
        d.alert = []


@check("MS-DEV-23", classes=CORE, role="manager")
async def absent_alert_cleared(ctx: ManagerContext) -> list[Finding]:
    """An alert missing from a later complete snapshot is no longer current for the device."""
    agent = await ctx.main_agent()
    serial, t = fresh_serial(), now()
    key = key_of(serial)
    for polled, extra in (
        (t - timedelta(minutes=2), ()),
        (t - timedelta(minutes=1), (_no_alerts,)),
    ):
        bad = await send_ok(ctx, agent, serial, at(polled, complete, *extra), what="alert")
        if bad:
            return [bad]
    latest = await read(ctx, dev_path(key, "/latest"))
    current = await read(
        ctx,
        "/api/v1/printer-alerts",
        deviceKey=key,
        **{"from": (t - timedelta(seconds=90)).isoformat()},
    )
    if latest.get("alerts") == [] and current.get("items") == []:
        return [ok("the alert absent from the later complete snapshot is not current")]
    return [
        fail(
            "an alert absent from a later complete snapshot is still presented as current",
            expected="no alert in the latest snapshot nor since it",
            actual=f"latest {latest.get('alerts')}, since {current.get('items')}",
        )
    ]


def _partial(rep: model.Report) -> None:
    for d in rep.device:
        d.counter = []
        d.supply = []
        d.collection_error = [
            model.CollectionError(
                oid="1.3.6.1.2.1.43.10",
                code=model.CollectionErrorCode.TIMEOUT,
                message="prtMarkerTable: no answer within 2 s",
            )
        ]


def _total_line(doc: dict[str, Any], key: str) -> dict[str, Any] | None:
    for line in doc.get("lines", []):
        if line.get("deviceKey") == key and line.get("kind") == "total":
            return line
    return None


def _period(start: datetime, end: datetime) -> dict[str, str]:
    return {"from": start.isoformat(), "to": end.isoformat()}


@check("MS-DEV-25", "MS-DEL-8", classes=CORE, role="manager")
async def partial_snapshot_no_zeros(ctx: ManagerContext) -> list[Finding]:
    """A partial snapshot without counters: stored as partial, never read as a zero counter."""
    agent = await ctx.main_agent()
    serial, t = fresh_serial(), now()
    key = key_of(serial)
    steps = (
        (t - timedelta(minutes=3), (complete, set_total(1000))),
        (t - timedelta(minutes=2), (_partial,)),
    )
    for polled, muts in steps:
        bad = await send_ok(ctx, agent, serial, at(polled, *muts), what="partial")
        if bad:
            return [bad]
    out: list[Finding] = []
    latest = await read(ctx, dev_path(key, "/latest"))
    if (
        latest.get("complete") is False
        and latest.get("counters") == []
        and latest.get("collectionErrors")
    ):
        out.append(
            ok("right after its receipt the partial snapshot reads back, partial", "MS-DEL-8")
        )
    else:
        out.append(
            fail(
                "the snapshot just acknowledged does not read back as sent",
                "MS-DEL-8",
                actual=str(latest)[:400],
            )
        )
    bad = await send_ok(
        ctx, agent, serial, at(t - timedelta(minutes=1), complete, set_total(1100)), what="after"
    )
    if bad:
        return [bad]
    meters = await read(
        ctx, "/api/v1/meters", deviceKey=key, kind="total", **_period(t - timedelta(minutes=4), t)
    )
    line = _total_line(meters, key)
    if line and line.get("usage") == 100 and not line.get("resets"):
        out.append(ok("usage 100 across the partial snapshot: no zero, no reset", "MS-DEV-25"))
    else:
        out.append(
            fail(
                "the counter absent from a partial snapshot was read as a value",
                "MS-DEV-25",
                expected="total usage 100, no reset",
                actual=str(line)[:400],
            )
        )
    return out


@check("MS-DEV-29", classes=CORE, role="manager")
async def usage_across_decrease(ctx: ManagerContext) -> list[Finding]:
    """Totals 1000, 1500, 200, 300, 250 (flagged), 400: usage 750, never the new value."""
    agent = await ctx.main_agent()
    serial, t = fresh_serial(), now()
    key = key_of(serial)
    reads = ((1000, None), (1500, None), (200, None), (300, None), (250, 300), (400, None))
    for n, (value, prev) in enumerate(reads):
        polled = t - timedelta(minutes=10 - n)
        bad = await send_ok(
            ctx, agent, serial, at(polled, complete, set_total(value, prev)), what=f"total {value}"
        )
        if bad:
            return [bad]
    meters = await read(
        ctx, "/api/v1/meters", deviceKey=key, kind="total", **_period(t - timedelta(minutes=11), t)
    )
    line = _total_line(meters, key)
    if line and line.get("usage") == 750 and len(line.get("resets") or []) == 2:
        return [ok("usage 750 with 2 resets listed: no negative usage, no full new value")]
    return [
        fail(
            "usage across a counter decrease was derived",
            expected="usage 500 + 100 + 150 = 750, 2 resets",
            actual=str(line)[:500],
        )
    ]


def _two_totals(rep: model.Report) -> None:
    for d in rep.device:
        std = next(c for c in d.counter if c.kind == model.CounterKind.TOTAL)
        std.value = 100
        vendor = copy.deepcopy(std)
        vendor.source, vendor.oid, vendor.value = "hp", "1.3.6.1.4.1.11.2.3.9.4.2.1.1.16.0", 105
        vendor.marker, vendor.label = None, "Total Engine Pages"
        d.counter.append(vendor)


@check("MS-DEV-31", classes=CORE, role="manager")
async def counters_keep_provenance(ctx: ManagerContext) -> list[Finding]:
    """A standard and a vendor total of one snapshot are both stored with unit, oid, source."""
    agent = await ctx.main_agent()
    serial = fresh_serial()
    bad = await send_ok(ctx, agent, serial, complete, _two_totals, what="two total counters")
    if bad:
        return [bad]
    latest = await read(ctx, dev_path(key_of(serial), "/latest"))
    got = sorted(
        (c.get("source"), c.get("oid"), c.get("unit"), c.get("value"))
        for c in latest.get("counters", [])
        if c.get("kind") == "total"
    )
    want = [
        ("hp", "1.3.6.1.4.1.11.2.3.9.4.2.1.1.16.0", "impressions", 105),
        ("standard", "1.3.6.1.2.1.43.10.2.1.4.1.1", "impressions", 100),
    ]
    if got == want:
        return [ok("both total counters stored, each with its unit, oid and source")]
    return [
        fail(
            "counters of the same kind were merged or lost their provenance",
            expected=str(want),
            actual=str(got),
        )
    ]


# --- delivery ------------------------------------------------------------------------------


@check("MS-DEL-6", classes=CORE, role="manager")
async def missing_sequences_shown(ctx: ManagerContext) -> list[Finding]:
    """Sequences 2, 3, 6, 8 and 11 received: the agent's missing numbers are 1, 4-5, 7 (a gap
    of one) and 9-10."""
    agent = await ctx.enrolled_agent()
    for seq in (2, 3, 6, 8, 11):
        rid, body = agent.report(sequence=seq)
        ans = await ctx.send(agent, body)
        if ans.receipt_status != "accepted":
            return [
                fail(f"sequence {seq} was not accepted: {ans.brief()}", excerpt=evidence(body, ans))
            ]
    doc = await read(ctx, f"/api/v1/agents/{agent.agent_id}")
    missing: list[int] = []
    for r in doc.get("missingSequences") or []:
        missing.extend(range(int(r["from"]), int(r["to"]) + 1))
    if missing == [1, 4, 5, 7, 9, 10]:
        return [ok("missing sequence numbers shown: 1, 4-5, 7, 9-10")]
    return [
        fail(
            "the agent's missing sequence numbers are not shown",
            expected="missingSequences 1, 4-5, 7, 9-10",
            actual=str(doc.get("missingSequences")),
        )
    ]


def _three_devices(serials: list[str], bad_last: bool) -> Mutate:
    def mutate(rep: model.Report) -> None:
        complete(rep)
        base = rep.device[0]
        rep.device = []
        for n, serial in enumerate(serials):
            d = copy.deepcopy(base)
            d.identity.serial_number = serial
            d.identity.device_key = key_of(serial)
            if bad_last and n == len(serials) - 1:
                d.supply[0].percent = Decimal(50)  # level 64 of 100: 3001
            rep.device.append(d)

    return mutate


@check("MS-DEL-17", classes=CORE, role="manager")
async def report_stored_atomically(ctx: ManagerContext) -> list[Finding]:
    """A 3-device report refused for its last device stores none; an accepted one stores all."""
    agent = await ctx.main_agent()
    serials = [fresh_serial() for _ in range(3)]
    _, body = agent.report(mutate=_three_devices(serials, bad_last=True))
    ans = await ctx.send(agent, body, what="third device breaks MS-DEV-17")
    out = [expect_code("MS-DEL-17", "a report whose third snapshot is invalid", body, ans, 3001)]
    stored = [s for s in serials if (await ctx.get_json(dev_path(key_of(s))))[0] == 200]
    if stored:
        out.append(
            fail(
                f"a refused report left {len(stored)} of its snapshots stored",
                actual=", ".join(stored),
            )
        )
    rid, body2 = agent.report(mutate=_three_devices(serials, bad_last=False))
    ans2 = await ctx.send(agent, body2, what="three valid devices")
    out.append(expect_receipt("MS-DEL-17", "three valid devices", body2, ans2, "accepted", rid))
    got = [(await ctx.get_json(dev_path(key_of(s), "/latest")))[1] for s in serials]
    if all(isinstance(g, dict) and g.get("reportId") == rid for g in got):
        out.append(ok("every snapshot of the accepted report is stored"))
    else:
        out.append(
            fail("not every snapshot of an accepted report was stored", actual=str(got)[:400])
        )
    return out


@check("MS-DEL-19", classes=CORE, role="manager")
async def replay_horizon_kept(ctx: ManagerContext) -> list[Finding]:
    """A report created 399 days ago is accepted; its id with other bytes then gets 2005."""
    agent = await ctx.main_agent()
    old = now() - timedelta(days=399)
    rid, body = agent.report(created_at=old)
    first = await ctx.send(agent, body)
    _, other = agent.report(report_id=rid, created_at=old, total=1)
    replay = await ctx.send(agent, other)
    return [
        expect_receipt("MS-DEL-19", "created 399 days ago", body, first, "accepted", rid),
        expect_code("MS-DEL-19", "the same id with other bytes", other, replay, 2005),
    ]


# --- devices dropping out (MS-DEV-26) ------------------------------------------------------


def unreachable(d: model.DeviceSnapshot) -> None:
    """What an agent reports of a device that did not answer (MS-DEV-24): identity and why."""
    d.status, d.counter, d.supply, d.input_tray, d.alert = None, [], [], [], []
    d.collection_error = [
        model.CollectionError(
            code=model.CollectionErrorCode.UNREACHABLE,
            message="no answer to any credential within 2 s and 1 retry",
        )
    ]


def cycle(created: datetime, fleet: list[tuple[str, bool]]) -> Mutate:
    """One poll cycle's report: the cycle started 10 s before `created`, each device (serial,
    complete?) polled 5 s before it, an incomplete one as unreachable."""

    def mutate(rep: model.Report) -> None:
        base = rep.device[0]
        rep.device = []
        for serial, whole in fleet:
            d = copy.deepcopy(base)
            d.identity.serial_number, d.identity.device_key = serial, key_of(serial)
            d.polled_at = xml_time(created - timedelta(seconds=5))
            if whole:
                d.collection_error = []
            else:
                unreachable(d)
            rep.device.append(d)
        failed = sum(1 for _, whole in fleet if not whole)
        rep.agent_status.last_cycle = model.CycleStats(
            started_at=xml_time(created - timedelta(seconds=10)),
            finished_at=xml_time(created - timedelta(seconds=3)),
            devices_polled=len(fleet),
            devices_failed=failed,
            devices_partial=0,
        )

    return mutate


@check("MS-DEV-26", classes=CORE, role="manager")
async def dropped_devices_flagged(ctx: ManagerContext) -> list[Finding]:
    """Hourly cycles over 4 h: a device gone for 4 h and one always unreachable are flagged."""
    agent = await ctx.enrolled_agent()  # its own poll interval: one cycle an hour
    t = now()
    names = ("steady", "gone", "unreachable", "lately-partial")
    serials = {n: fresh_serial() for n in names}
    # Per hour back from now: which devices the cycle reported, complete or not.
    hours = {
        4: {"steady": True, "gone": True, "unreachable": False, "lately-partial": True},
        3: {"steady": True, "unreachable": False, "lately-partial": True},
        2: {"steady": True, "unreachable": False, "lately-partial": True},
        1: {"steady": True, "unreachable": False, "lately-partial": False},
        0: {"steady": True, "unreachable": False, "lately-partial": False},
    }
    sent = ""
    for back, fleet in hours.items():
        created = t - timedelta(hours=back)
        parts = [(serials[n], whole) for n, whole in fleet.items()]
        _, body = agent.report(created_at=created, mutate=cycle(created, parts))
        ans = await ctx.send(agent, body, what=f"the cycle of {back} h ago")
        sent = evidence(body, ans)
        if ans.receipt_status != "accepted":
            return [
                fail(
                    f"the report of the cycle {back} h ago was not accepted ({ans.brief()})",
                    expected="Receipt accepted",
                    actual=ans.brief(),
                    excerpt=evidence(body, ans),
                )
            ]
    # Poll interval 1 h: a complete snapshot within 3 h keeps a device off the list.
    want = {"steady": False, "gone": True, "unreachable": True, "lately-partial": False}
    docs = {n: await read(ctx, dev_path(key_of(serials[n]))) for n in names}
    got = {n: docs[n].get("stale") for n in names}
    shown = ", ".join(f"{n} {got[n]}" for n in names)
    if got == want:
        return [
            ok(
                "flagged: the device absent for 4 h and the one unreachable in every cycle; not "
                "flagged: those with a complete snapshot in the last 3 h"
            )
        ]
    return [
        fail(
            "with a 1 h poll interval the stale flags are wrong",
            expected="stale: steady False, gone True (last complete 4 h ago), unreachable True "
            "(never complete), lately-partial False (complete 2 h ago)",
            actual=shown,
            excerpt=f"{sent}\n\nread back:\n" + "\n".join(f"{n}: {docs[n]}" for n in names),
        )
    ]
