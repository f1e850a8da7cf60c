"""Manager checks of chapter 21: device ownership and counter series (MS-OWN, MS-BILL).

Every agent of the harness enrolls with a token of the vendor's token command, so they all
belong to one customer: these checks prove that a second agent of that customer cannot change
a device's state or bill while its owner reports it, that snapshots newer than their report
or older than the owner's last are never applied, and that counter series never merge.
"""

from __future__ import annotations

from datetime import timedelta

import metersync_generated.v1 as model
from metersync_conformance.manager.core import CORE, ManagerContext, evidence, expect_code
from metersync_conformance.manager.store import (
    _period,
    _total_line,
    at,
    complete,
    dev_path,
    fresh_serial,
    key_of,
    read,
    send_ok,
    set_total,
)
from metersync_conformance.registry import Finding, check, fail, ok
from metersync_conformance.wire import now, xml_time

BROTHER_RECORD = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5.10.0"


@check("MS-OWN-1", "MS-OWN-2", classes=CORE, role="manager")
async def non_owner_changes_nothing(ctx: ManagerContext) -> list[Finding]:
    """Owner: totals 100, 200. Another agent: 5,000,000 in between, then 0 later. Usage 100,
    latest total 200, the device still the owner's."""
    owner, other = await ctx.enrolled_agent(), await ctx.enrolled_agent()
    serial, t = fresh_serial(), now()
    key = key_of(serial)
    steps = (
        (owner, 10, 100),
        (other, 8, 5_000_000),
        (owner, 6, 200),
        (other, 4, 0),
    )
    for agent, minutes, value in steps:
        bad = await send_ok(
            ctx, agent, serial, at(t - timedelta(minutes=minutes), complete, set_total(value)),
            what=f"total {value}",
        )  # fmt: skip
        if bad:
            return [bad]
    meters = await read(
        ctx, "/api/v1/meters", deviceKey=key, kind="total", **_period(t - timedelta(minutes=11), t)
    )
    line = _total_line(meters, key)
    latest = await read(ctx, dev_path(key, "/latest"))
    totals = [c.get("value") for c in latest.get("counters", []) if c.get("kind") == "total"]
    device = await read(ctx, dev_path(key))
    out = []
    if line and line.get("usage") == 100 and not line.get("resets"):
        out.append(ok("usage 100: the other agent's 5,000,000 and 0 changed no bill", "MS-OWN-2"))
    else:
        out.append(
            fail(
                "a snapshot from an agent that does not own the device changed its bill",
                "MS-OWN-2",
                expected="usage 100 from the owner's 100 and 200, no reset",
                actual=str(line)[:400],
            )
        )
    if totals == [200] and device.get("agentId") == owner.agent_id:
        out.append(ok("the device's state is the owner's: latest total 200", "MS-OWN-1"))
    else:
        out.append(
            fail(
                "the device's current state came from an agent that does not own it",
                "MS-OWN-1",
                expected=f"latest total [200], agentId {owner.agent_id}",
                actual=f"totals {totals}, agentId {device.get('agentId')}",
            )
        )
    return out


@check("MS-OWN-4", classes=CORE, role="manager")
async def snapshot_times_bounded(ctx: ManagerContext) -> list[Finding]:
    """A snapshot polled an hour after its report's createdAt is 3001; a backdated snapshot
    (read 0 before the owner's last read) is stored but changes no bill."""
    agent = await ctx.enrolled_agent()
    serial, t = fresh_serial(), now()
    key = key_of(serial)
    out: list[Finding] = []

    def future(rep: model.Report) -> None:
        for d in rep.device:
            d.polled_at = xml_time(t + timedelta(hours=1))

    _rid, body = agent.report(serial=fresh_serial(), mutate=lambda r: (complete(r), future(r)))
    ans = await ctx.send(agent, body, what="snapshot polled after its report")
    out.append(expect_code("MS-OWN-4", "a snapshot polled 1 h after createdAt", body, ans, 3001))
    for minutes, value in ((10, 100), (5, 300), (8, 0)):
        bad = await send_ok(
            ctx, agent, serial, at(t - timedelta(minutes=minutes), complete, set_total(value)),
            what=f"total {value}",
        )  # fmt: skip
        if bad:
            return [*out, bad]
    meters = await read(
        ctx, "/api/v1/meters", deviceKey=key, kind="total", **_period(t - timedelta(minutes=11), t)
    )
    line = _total_line(meters, key)
    if line and line.get("usage") == 200 and not line.get("resets"):
        out.append(ok("the backdated read of 0 changed no bill: usage 200", "MS-OWN-4"))
    else:
        out.append(
            fail(
                "a snapshot older than the owner's last one was applied",
                "MS-OWN-4",
                expected="usage 200 from 100 and 300, no reset",
                actual=str(line)[:400],
            )
        )
    return out


def _record_counters(black: int, cyan: int, same_label: bool = False):  # type: ignore[no-untyped-def]
    def mutate(rep: model.Report) -> None:
        for d in rep.device:
            for label, value in (("black counter", black), ("cyan counter", cyan)):
                d.counter.append(
                    model.Counter(
                        value=value,
                        kind=model.CounterKind.OTHER,
                        unit=model.CounterUnit.IMPRESSIONS,
                        oid=BROTHER_RECORD,
                        source="brother",
                        label="black counter" if same_label else label,
                    )
                )

    return mutate


@check("MS-BILL-1", "MS-BILL-2", classes=CORE, role="manager")
async def counter_series_never_merge(ctx: ManagerContext) -> list[Finding]:
    """Two `other` counters of one OID told apart by label are two series; two counters of
    one identity in a snapshot are 3001."""
    agent = await ctx.enrolled_agent()
    serial, t = fresh_serial(), now()
    key = key_of(serial)
    out: list[Finding] = []
    _rid, body = agent.report(
        serial=fresh_serial(), mutate=lambda r: (complete(r), _record_counters(1, 2, True)(r))
    )
    ans = await ctx.send(agent, body, what="two counters of one identity")
    out.append(expect_code("MS-BILL-2", "two counters of one identity", body, ans, 3001))
    for minutes, (black, cyan) in ((10, (9000, 510)), (5, (9010, 515))):
        bad = await send_ok(
            ctx, agent, serial,
            at(t - timedelta(minutes=minutes), complete, _record_counters(black, cyan)),
            what="two record counters",
        )  # fmt: skip
        if bad:
            return [*out, bad]
    meters = await read(
        ctx, "/api/v1/meters", deviceKey=key, kind="other", **_period(t - timedelta(minutes=11), t)
    )
    got = sorted(
        (x.get("label"), x.get("usage"), len(x.get("resets") or []))
        for x in meters.get("lines", [])
        if x.get("deviceKey") == key and x.get("oid") == BROTHER_RECORD
    )
    want = [("black counter", 10, 0), ("cyan counter", 5, 0)]
    if got == want:
        out.append(ok("black and cyan counters of one OID billed apart: 10 and 5", "MS-BILL-1"))
    else:
        out.append(
            fail(
                "two counters of one OID, told apart by label, were merged into one series",
                "MS-BILL-1",
                expected=str(want),
                actual=str(got)[:400],
                excerpt=evidence(body, ans),
            )
        )
    return out
