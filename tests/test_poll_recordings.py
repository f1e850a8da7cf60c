"""Every project recording, served by one real snmpsim responder, polled by the agent: the
snapshot validates against device.xsd and equals the recording's hand-written truth file."""

from __future__ import annotations

import asyncio
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from metersync.snmpsim import Endpoint, SnmpSimulator
from metersync_agent.identity import flag_decreased, previous_counters
from metersync_agent.poller import poll_device, snapshot_xml, validate_snapshot_xml
from metersync_agent.profiles import load_profiles
from metersync_agent.snmp import Credential, SnmpClient

RECORDINGS = Path(__file__).resolve().parents[1] / "reference_agent" / "recordings"
NAMES = sorted(p.name.removesuffix(".snmprec") for p in RECORDINGS.glob("*.snmprec"))
PROFILES = load_profiles()
MOVED_HOST = "127.0.0.3"


@pytest.fixture(scope="module")
def sim():
    eps = [Endpoint("127.0.0.1", data_dir=RECORDINGS), Endpoint(MOVED_HOST, data_dir=RECORDINGS)]
    with SnmpSimulator(
        RECORDINGS, endpoints=eps, variation_modules_dir=RECORDINGS / "variation"
    ) as s:
        yield s


def poll(host: str, port: int, name: str, budget: float = 10.0):
    async def run():
        client = SnmpClient(timeout=1.0, retries=0)
        try:
            creds = [Credential("2c", community=name)]
            return await poll_device(client, host, port, creds, PROFILES, budget)
        finally:
            client.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def snapshots(sim):
    host, port = sim.endpoints[0]
    return {name: poll(host, port, name) for name in NAMES}


def test_every_recording_has_a_truth_file():
    assert len(NAMES) >= 17
    for name in NAMES:
        assert (RECORDINGS / f"{name}.truth.toml").exists(), name


@pytest.mark.parametrize("name", NAMES)
def test_snapshot_validates_and_matches_truth(snapshots, name):
    snap = snapshots[name]
    errors = validate_snapshot_xml(snapshot_xml(snap))
    assert errors == []
    truth = tomllib.loads((RECORDINGS / f"{name}.truth.toml").read_text())
    ident = snap.identity
    assert ident.device_key == truth["key"]
    assert snap.profiles == truth["profiles"]
    for field, attr in (("vendor", "vendor"), ("serial", "serial_number"), ("model", "model")):
        if field in truth:
            assert getattr(ident, attr) == truth[field], field
    if "firmware" in truth:
        assert ident.firmware == truth["firmware"]
    flags = [f.value for f in snap.status.detected_error_state.flag] if snap.status else []
    assert flags == truth["flags"]
    assert [a.code.raw for a in snap.alert] == truth["alert_codes"]
    if "console" in truth:
        assert snap.status is not None and snap.status.console_line == truth["console"]
    assert {e.code.value for e in snap.collection_error} == set(truth["errors"])
    for field, attr in (("sys_descr", "sys_descr"), ("sys_name", "sys_name"),
                        ("location", "location"), ("contact", "contact")):  # fmt: skip
        if field in truth.get("text", {}):
            assert getattr(ident, attr) == truth["text"][field], field
    if "device_status" in truth:
        assert snap.status.device_status.value.value == truth["device_status"]
        assert snap.status.printer_status.value.value == truth["printer_status"]
    if "alert_descriptions" in truth:
        assert [a.description for a in snap.alert] == truth["alert_descriptions"]
    descr = {s["index"]: s["description"] for s in truth.get("supply", []) if "description" in s}
    for s in snap.supply:
        if s.index in descr:
            assert s.description == descr[s.index]
    trays = sorted(
        (t.index, t.level.raw, t.level.meaning.value, t.max_capacity.raw) for t in snap.input_tray
    )
    if "tray" in truth:
        want_t = [(t["index"], t["level"], t["meaning"], t["max"]) for t in truth["tray"]]
        assert trays == sorted(want_t)
    outputs = [
        (t.index, t.type_value.value.value, t.remaining_capacity.raw,
         t.remaining_capacity.meaning.value,
         t.max_capacity.raw, t.name)
        for t in snap.output_tray
    ]  # fmt: skip
    want_o = [(t["index"], t["type"], t["remaining"], t["meaning"], t["max"], t["name"])
              for t in truth.get("output", [])]  # fmt: skip
    assert outputs == want_o
    covers = [(c.index, c.description, c.status.value.value, c.status.raw) for c in snap.cover]
    want_c = [(c["index"], c["description"], c["status"], c["raw"]) for c in truth.get("cover", [])]
    assert covers == want_c
    got = sorted((c.kind.value, c.oid, c.value, c.source, c.unit.value) for c in snap.counter)
    want = sorted(
        (c["kind"], c["oid"], c["value"], c["source"], c["unit"]) for c in truth.get("counter", [])
    )
    assert got == want
    got_s = sorted(
        (
            s.source,
            s.index,
            s.level.raw,
            s.max_capacity.raw,
            s.level.meaning.value,
            s.max_capacity.meaning.value,
            s.percent,
        )
        for s in snap.supply
    )
    want_s = sorted(
        (
            s["source"],
            s["index"],
            s["level"],
            s["max"],
            s["meaning"],
            s["max_meaning"],
            Decimal(s["percent"]) if "percent" in s else None,
        )
        for s in truth.get("supply", [])
    )
    assert got_s == want_s


def test_no_percentage_is_ever_above_100_or_invented(snapshots):
    for snap in snapshots.values():
        for s in snap.supply:
            if s.percent is not None:
                assert 0 <= s.percent <= 100
                assert s.level.meaning.value == "exact" and s.max_capacity.meaning.value == "exact"


def test_same_printer_on_a_new_ip_keeps_its_key(sim, snapshots):
    host, port = sim.endpoints[1]
    assert host == MOVED_HOST
    moved = poll(host, port, "hp_color_mfp_moved")
    first = snapshots["hp_color_mfp"]
    assert moved.identity.ip_address == MOVED_HOST
    assert first.identity.ip_address == "127.0.0.1"
    assert moved.identity.device_key == first.identity.device_key
    assert moved.identity.mac_address == first.identity.mac_address
    assert flag_decreased(moved.counter, previous_counters(first.counter)) == []


def test_counters_that_went_down_are_flagged(snapshots):
    before, after = snapshots["swap_before"], snapshots["swap_after"]
    assert before.identity.device_key == after.identity.device_key
    flagged = flag_decreased(after.counter, previous_counters(before.counter))
    total = next(c for c in flagged if c.kind.value == "total")
    assert (total.value, total.previous, total.anomaly.value) == (1200, 250000, "decreased")
    xml = snapshot_xml(after)
    assert validate_snapshot_xml(xml) == []
    assert b'anomaly="decreased"' in xml and b'previous="250000"' in xml


def test_hostile_device_is_survived_and_explained(snapshots):
    snap = snapshots["hostile"]
    by_code = {}
    for e in snap.collection_error:
        by_code.setdefault(e.code.value, []).append(e.oid)
    assert "1.3.6.1.2.1.43.10.2.1.4.1.1" in by_code["decode-error"]  # counter sent as text
    assert "1.3.6.1.2.1.43.10.2.1.5.1.1" in by_code["decode-error"]  # NULL
    assert "1.3.6.1.2.1.43.11.1.1.8.1.3" in by_code["decode-error"]  # capacity sent as text
    assert by_code["walk-loop"]
    assert any(o.startswith("1.3.6.1.2.1.43.16.5.1.2") for o in by_code["gen-err"])  # genErr
    assert snap.status is None or snap.status.console_line == []
    assert len(snap.supply) == 2  # the two well-formed rows are still there


def test_unreachable_device_still_gives_a_valid_snapshot():
    snap = poll("127.0.0.1", 9, "public", budget=1.0)
    assert [e.code.value for e in snap.collection_error] == ["unreachable"]
    assert validate_snapshot_xml(snapshot_xml(snap)) == []


def test_cached_serializer_gives_the_bytes_of_a_fresh_one(snapshots):
    from xsdata.formats.dataclass.serializers import XmlSerializer
    from xsdata.formats.dataclass.serializers.config import SerializerConfig

    from metersync_agent.poller import NS, Device

    config = SerializerConfig(indent="  ", xml_declaration=True, encoding="UTF-8")
    for name, snap in snapshots.items():
        doc = Device(**{f: getattr(snap, f) for f in snap.__dataclass_fields__})
        fresh = XmlSerializer(config=config).render(doc, ns_map={None: NS}).encode("utf-8")
        assert snapshot_xml(snap) == fresh, name


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_a_printer_on_ipv6_is_read_like_on_ipv4(snapshots):
    # one client keeps an IPv4 and an IPv6 socket; the snapshot is the one read over IPv4
    with SnmpSimulator(RECORDINGS, endpoints=[Endpoint("::1", data_dir=RECORDINGS)]) as v6:
        host, port = v6.endpoints[0]
        snap = poll(host, port, "zebra_zt")
    assert snap.identity.ip_address == "::1"
    assert snap.collection_error == []
    ours = snapshots["zebra_zt"]
    assert snap.identity.device_key == ours.identity.device_key == "sn:zebra:18j153800123"
    assert [(c.oid, c.value) for c in snap.counter] == [(c.oid, c.value) for c in ours.counter]
