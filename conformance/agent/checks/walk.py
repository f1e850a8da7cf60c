"""Agent check of the walk cap (MS-SNMP-10), judged on the WALK_CAP run (peers/walk_cap.py): the
printer with 6,000 ifPhysAddress rows is reported with a `walk-cap` collection error, with
what was read before the cap (its MAC address, row 1) and the other subtrees, and the relay in
front of it saw no walk ask for far more than 5,000 rows of that column."""

from __future__ import annotations

from metersync_conformance.agent.checks.core import CORE, _name, _needs_reports, _snapshot_xml
from metersync_conformance.agent.harness import AgentContext
from metersync_conformance.peers import walk_cap
from metersync_conformance.peers.snmp_relay import rows_per_walk
from metersync_conformance.registry import Finding, check, fail, not_tested, ok


def _lost(dev: object) -> list[str]:
    """What of the printer's other values a snapshot lacks (empty: all there)."""
    ident = dev.identity  # type: ignore[attr-defined]
    lost = []
    if ident.serial_number != walk_cap.SERIAL:
        lost.append(f"serialNumber {ident.serial_number!r}")
    if walk_cap.MAC not in ident.mac_address:
        lost.append(f"macAddress {walk_cap.MAC} (row 1 of the capped walk)")
    totals = {c.value for c in dev.counter if _name(c.kind) == "total"}  # type: ignore[attr-defined]
    if walk_cap.TOTAL not in totals:
        lost.append(f"the total counter {walk_cap.TOTAL}")
    levels = {(s.level.raw, s.max_capacity.raw) for s in dev.supply}  # type: ignore[attr-defined]
    if (walk_cap.LEVEL, walk_cap.MAX_CAPACITY) not in levels:
        lost.append(f"the supply at {walk_cap.LEVEL} of {walk_cap.MAX_CAPACITY}")
    return lost


@check("MS-SNMP-10", classes=CORE, role="agent")
async def walk_stopped_at_the_cap(ctx: AgentContext) -> Finding:
    """A 6,000-row column: walk stopped near 5,000 rows, `walk-cap` error, the rest kept."""
    if ctx.walk_cap is None:
        return not_tested("this run served no printer with a table longer than the walk cap")
    if (f := _needs_reports(ctx)) is not None:
        return f
    found = [
        (r, d)
        for r in ctx.rec.reports()
        for d in r.obj.device
        if d.identity.device_key == walk_cap.KEY
    ]
    if not found:
        return fail(
            f"the printer with {walk_cap.ROWS} interface rows was never reported",
            expected=walk_cap.KEY,
            excerpt=ctx.agent_log(),
        )
    walks = rows_per_walk(ctx.walk_cap.relay.seen.walk_log, walk_cap.SUBTREE)
    asked = f"walks asked for {walks[:4]} rows" if walks else "walks not seen (SNMPv3)"
    capped = [
        (r, d) for r, d in found if any(_name(e.code) == "walk-cap" for e in d.collection_error)
    ]
    if not capped:
        r, d = found[0]
        codes = sorted({_name(e.code) for e in d.collection_error})
        return fail(
            f"{len(found)} snapshots of the printer, none with a walk-cap collectionError; "
            + asked,
            expected="collectionError code walk-cap",
            actual=", ".join(codes) or "no collectionError",
            excerpt=_snapshot_xml(r, walk_cap.KEY),
        )
    r, d = capped[0]
    if lost := _lost(d):
        return fail(
            "the capped snapshot lost values read: " + "; ".join(lost),
            excerpt=_snapshot_xml(r, walk_cap.KEY),
        )
    most = max(walks, default=0)
    if most > walk_cap.CAP + walk_cap.SLACK:
        return fail(
            f"a walk of ifPhysAddress asked for {most} rows of {walk_cap.ROWS}",
            expected=f"at most {walk_cap.CAP} rows (+{walk_cap.SLACK} of GETBULK overshoot)",
            actual=str(most),
        )
    return ok(f"walk-cap reported; serial, MAC, counter and supply kept; {asked}")
