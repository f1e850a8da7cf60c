"""LibreNMS as an independent oracle: every recording in ../shared/walks/librenms (third-party,
read only here) is served by snmpsim and polled by the agent; wherever LibreNMS and we read
the same OID, the values must agree or the difference must be listed, with its reason, in
reference_agent/recordings/LIBRENMS-DIFFERENCES.md. A listed difference that no longer occurs
fails too, so the table stays true.

Compared: serial and hardware (our model); each printer supply (description, current, raw
capacity) and input tray (name, raw capacity) LibreNMS found, matched by OID; each page
counter (`count` sensor) by OID. LibreNMS stores a supply's current level as a percentage
(level/capacity, -3 as 50), so "current" agrees when it equals our raw level or our rounded
percentage.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from recorded_polls import poll_recordings

from metersync_agent.poller import snapshot_xml, validate_snapshot_xml

ROOT = Path(__file__).resolve().parents[1]
WALKS = Path(os.environ.get("METERSYNC_WALKS") or ROOT.parent / "shared" / "walks") / "librenms"
TABLE = ROOT / "reference_agent" / "recordings" / "LIBRENMS-DIFFERENCES.md"
NAMES = sorted(p.name.removesuffix(".snmprec") for p in WALKS.glob("*.snmprec"))
BROKEN = {"okilan_9450g", "zebra"}  # a corrupt value stops a walk part-way (by their contributors)
pytestmark = pytest.mark.skipif(not NAMES, reason=f"no LibreNMS recordings at {WALKS}")


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    return poll_recordings(WALKS, NAMES, tmp_path_factory.mktemp("librenms"), timeout=0.5)


def _o(oid: str | None) -> str:
    return (oid or "").lstrip(".")


def compare(name: str, snap, expected: dict) -> tuple[int, list[tuple[str, str, str, str]]]:
    """(fields compared, differences as (field, oid, librenms value, our value))."""
    diffs: list[tuple[str, str, str, str]] = []
    compared = 0

    def check(field: str, oid: str, theirs, ours, equal=None) -> None:
        nonlocal compared
        compared += 1
        same = equal if equal is not None else theirs == ours
        if not same:
            diffs.append((field, oid, str(theirs), str(ours)))

    dev = expected["os"]["discovery"]["devices"][0]
    ident = snap.identity
    if dev.get("serial") is not None or ident.serial_number is not None:
        check("serial", "-", dev.get("serial"), ident.serial_number)
    if dev.get("hardware") is not None:
        check("hardware", "-", dev["hardware"], ident.model)
    supplies = {s.level.oid: s for s in snap.supply if s.level.oid}
    trays = {t.level.oid: t for t in snap.input_tray if t.level and t.level.oid}
    ps = (expected.get("printer-supplies") or {}).get("discovery") or {}
    for s in ps.get("printer_supplies", []):
        oid = _o(s["supply_oid"])
        if s["supply_type"] == "input":
            tray = trays.get(oid)
            if tray is None:
                continue
            check("tray-name", oid, s["supply_descr"], tray.name or tray.description)
            cap = tray.max_capacity.raw if tray.max_capacity else None
            check("tray-capacity", oid, s["supply_capacity"], cap)
            continue
        ours = supplies.get(oid)
        if ours is None or _o(s.get("supply_capacity_oid")) != (ours.max_capacity.oid or ""):
            continue  # not the same OIDs: nothing to compare
        check("supply-descr", oid, s["supply_descr"], ours.description)
        check("supply-capacity", oid, s["supply_capacity"], ours.max_capacity.raw)
        pct = round(ours.percent) if ours.percent is not None else None
        cur = s["supply_current"]
        check(
            "supply-current",
            oid,
            cur,
            f"{ours.level.raw} ({ours.percent}%)",
            equal=cur in (ours.level.raw, pct),
        )
    counters = {}
    for c in snap.counter:
        counters.setdefault(c.oid, c)
    sensors = (expected.get("sensors") or {}).get("discovery") or {}
    for s in sensors.get("sensors", []):
        if s["sensor_class"] != "count":
            continue
        oid = _o(s["sensor_oid"])
        ours = counters.get(oid)
        if ours is not None:
            check("counter", oid, s["sensor_current"], ours.value)
    return compared, diffs


def documented() -> dict[tuple[str, str, str], tuple[str, str]]:
    """(recording, field, oid) -> (librenms, ours) from the table's rows."""
    out = {}
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] and not re.match(r"^(-+|recording)$", cells[0]):
            rec, field, oid, theirs, ours, _why = cells
            out[(rec, field, oid.strip("`"))] = (theirs.strip("`"), ours.strip("`"))
    return out


def test_agreement_with_librenms(snapshots, capsys):
    table = documented()
    total = equal = 0
    seen = set()
    undocumented = []
    for name in NAMES:
        expected = json.loads((WALKS / f"{name}.expected.json").read_text())
        n, diffs = compare(name, snapshots[name], expected)
        total += n
        equal += n - len(diffs)
        for field, oid, theirs, ours in diffs:
            key = (name, field, oid)
            seen.add(key)
            if table.get(key) != (theirs, ours):
                undocumented.append(f"| {name} | {field} | `{oid}` | `{theirs}` | `{ours}` | ? |")
    stale = sorted(set(table) - seen)
    with capsys.disabled():
        print(f"\nLibreNMS oracle: {total} fields compared, {equal} equal, {len(seen)} justified")
    assert not undocumented, "differences not in LIBRENMS-DIFFERENCES.md:\n" + "\n".join(
        undocumented
    )
    assert not stale, f"listed differences that no longer occur: {stale}"
    assert total >= 100 and equal >= total * 0.8


@pytest.mark.parametrize("name", NAMES)
def test_every_recording_gives_a_valid_snapshot(snapshots, name):
    snap = snapshots[name]
    assert validate_snapshot_xml(snapshot_xml(snap)) == []
    assert snap.identity.sys_descr  # the system group was read in every case
    if name in BROKEN:  # the agent survives and keeps what it read before the fault
        assert snap.supply or snap.identity.mac_address
