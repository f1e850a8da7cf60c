"""Unit tests of the pure mapping rules: no SNMP, values in, snapshot parts out."""

from __future__ import annotations

from decimal import Decimal

import pytest

from metersync_agent.identity import (
    device_key,
    flag_decreased,
    format_mac,
    is_junk_serial,
    previous_counters,
)
from metersync_agent.mapper import (
    decode_binary_records,
    decode_error_state,
    map_snapshot,
    percent_of,
    raw_meaning,
)
from metersync_agent.poller import snapshot_xml, validate_snapshot_xml
from metersync_agent.profiles import (
    ProfileError,
    load_profiles,
    parse_oid,
    plan_reads,
    profile_from_dict,
    select_profiles,
)
from metersync_generated.v1.device import Counter, CounterKind, CounterUnit

PROFILES = load_profiles()
STD = PROFILES[0]
ERR_NAMES = STD.enums["error_state"]


def o(text: str) -> tuple[int, ...]:
    return parse_oid(text)


# --- hrPrinterDetectedErrorState ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "flags"),
    [
        (b"\x00\x00", []),
        (b"\x80", ["lowPaper"]),  # bit 0 is the MSB of the first octet
        (b"\x01", ["serviceRequested"]),  # bit 7
        (b"\x00\x80", ["inputTrayMissing"]),  # bit 8
        (b"\x00\x02", ["overduePreventMaint"]),  # bit 14
        (b"\x00\x01", []),  # bit 15 has no name: only in raw
        (b"\x24\x00", ["lowToner", "jammed"]),
        (b"\xff\xfe", [ERR_NAMES[i] for i in range(15)]),
    ],
)
def test_error_state_bits(raw, flags):
    assert decode_error_state(raw, ERR_NAMES) == flags


def test_error_state_names_cover_every_rfc_bit():
    assert sorted(ERR_NAMES) == list(range(15))


# --- levels, meanings, percentages --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "level", "meaning"),
    [
        (0, True, "exact"),
        (7200, False, "exact"),
        (-1, True, "other"),
        (-2, False, "unknown"),
        (-3, True, "someRemaining"),
        (-3, False, "invalid"),  # someRemaining is for levels only
        (-4, True, "invalid"),
        (-2147483648, True, "invalid"),
    ],
)
def test_raw_meaning(raw, level, meaning):
    assert raw_meaning(raw, level=level).value == meaning


@pytest.mark.parametrize(
    ("level", "maximum", "percent"),
    [
        (5340, 6000, Decimal("89.00")),
        (1, 3, Decimal("33.33")),
        (2, 3, Decimal("66.67")),
        (0, 100, Decimal("0.00")),
        (100, 100, Decimal("100.00")),
        (150, 100, None),  # never 150 %, never clipped to 100
        (50, 0, None),
        (-3, 100, None),
        (50, -2, None),
    ],
)
def test_percent_only_where_defined(level, maximum, percent):
    assert percent_of(level, maximum) == percent


# --- Brother binary records ------------------------------------------------------------------


def test_brother_records_decode_entries_and_stop_at_ff():
    raw = bytes.fromhex("630104000000011101040000036f410104000024548101040000005001ff")
    entries, problem = decode_binary_records(raw[:-2] + b"\xff")
    assert problem is None
    assert entries == [
        (0x63, b"\x00\x00\x00\x01"),
        (0x11, bytes.fromhex("0000036f")),
        (0x41, bytes.fromhex("00002454")),
        (0x81, bytes.fromhex("00000050")),
    ]


def test_brother_legacy_two_byte_records():
    entries, problem = decode_binary_records(bytes.fromhex("a101020414a201020c14ff"))
    assert problem is None
    assert entries == [(0xA1, b"\x04\x14"), (0xA2, b"\x0c\x14")]


@pytest.mark.parametrize(
    ("hexdata", "kept", "fragment"),
    [
        ("41010400002454", 1, "end marker"),
        ("410104000024", 0, "runs past"),
        ("4102040000245400ff", 0, "unexpected byte"),
        ("410104000024544101", 1, "truncated"),
    ],
)
def test_brother_broken_records_keep_what_was_read(hexdata, kept, fragment):
    entries, problem = decode_binary_records(bytes.fromhex(hexdata))
    assert len(entries) == kept
    assert problem is not None and fragment in problem


BROTHER = "1.3.6.1.4.1.2435.2.3.9.4.2.1.5.5"


def test_brother_profile_maps_records_to_counters_and_supplies():
    values = {
        o("1.3.6.1.2.1.1.1.0"): b"Brother NC-8800w",
        o("1.3.6.1.2.1.1.2.0"): "1.3.6.1.4.1.2435.2.3.9.1",
        o(f"{BROTHER}.1.0"): b"E7824",
        o(f"{BROTHER}.10.0"): bytes.fromhex("00010400000f4a0601040000012cff"),
        o(f"{BROTHER}.8.0"): bytes.fromhex("410104000025e46a0104000003e8ff"),  # fmt: skip
        o(f"{BROTHER}.11.0"): bytes.fromhex("820104000025d8ff"),
    }
    chosen = select_profiles(PROFILES, values)
    assert [p.name for p in chosen] == ["standard", "brother"]
    snap = map_snapshot(values, chosen, ip_address="192.0.2.1")
    counters = {(c.kind.value, c.label): c.value for c in snap.counter}
    assert counters == {("total", "page counter"): 3914, ("duplex", "duplex unit pages"): 300}
    supplies = {s.description: s for s in snap.supply}
    drum = supplies["Drum remaining life"]
    assert (drum.level.raw, drum.max_capacity.raw, drum.percent) == (9700, 10000, Decimal("97"))
    assert drum.type_value.value.value == "opc"
    assert supplies["Fuser remaining life"].percent == Decimal("10.00")
    pages = supplies["Drum remaining pages"]
    assert (pages.level.raw, pages.max_capacity.meaning.value, pages.percent) == (
        9688,
        "unknown",
        None,
    )
    assert snap.identity.device_key == "sn:brother:e7824"
    assert validate_snapshot_xml(snapshot_xml(snap)) == []


# --- identity --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "serial", ["", "   ", "0000000000", "XXXXXXXX", "unknown", "N/A", None, "\x00\x00"]
)
def test_junk_serials(serial):
    assert is_junk_serial(serial)


def test_real_serials_are_not_junk():
    assert not is_junk_serial("CNB1K27391")
    assert not is_junk_serial("1000")


def test_device_key_prefers_serial_then_mac_then_sys():
    konica = "1.3.6.1.4.1.18334.1.1.1.2.1.180.2"
    assert device_key(" AA2J 0210 ", [], konica, None, None) == "sn:konicaminolta:aa2j0210"
    macs = ["a0:b1:c2:d3:e4:f5", "00:1b:a9:0b:a7:52"]
    assert device_key("000000", macs, "1.3.6.1.4.1.11.2", None, None) == "mac:00:1b:a9:0b:a7:52"
    k1 = device_key(None, [], "1.3.6.1.4.1.11", "lab", "LaserJet")
    k2 = device_key(None, [], "1.3.6.1.4.1.11", "lab", "LaserJet 2")
    assert k1.startswith("sys:1.3.6.1.4.1.11:") and k1 != k2


def test_device_key_vendor_token_comes_from_the_enterprise_number():
    # Spec 3.1, Table 3-1: two agents with different profiles give one printer one key.
    assert device_key("X1", [], "1.3.6.1.4.1.1347.41", None, None) == "sn:kyocera:x1"
    assert device_key("X1", [], "1.3.6.1.4.1.4711.1", None, None) == "sn:ent4711:x1"
    assert device_key("X1", [], None, None, None) == "sn:unknown:x1"
    assert device_key("X1", [], "1.3.6.1.2.1.1", None, None) == "sn:unknown:x1"


def test_every_enterprise_a_profile_matches_has_a_vendor_token():
    # Zebra (10642, 683), Fujifilm (297), Pantum (40093)... never come out as sn:entN:
    from metersync_agent.identity import VENDOR_TOKENS, vendor_token

    standard = PROFILES[0]
    for p in PROFILES:
        for prefix in p.enterprises:
            number = prefix[6]
            assert number in VENDOR_TOKENS, (p.name, number)
            assert number in standard.vendors, (p.name, number)
    zebra = device_key("XXZ1", [], "1.3.6.1.4.1.10642.1.1", None, None)
    assert zebra == "sn:zebra:xxz1"
    assert vendor_token("1.3.6.1.4.1.683.6") == "zebra"
    assert vendor_token("1.3.6.1.4.1.297.1.111") == "fujifilm"


def test_vendor_supply_keeps_raw_values_and_their_meanings():
    from metersync_agent.profiles import profile_from_dict

    vendor = profile_from_dict(
        {
            "name": "acme",
            "match": {"enterprise": ["1.3.6.1.4.1.4711"]},
            "supply": [
                {"index": 1001, "type": "toner", "level": "1.3.6.1.4.1.4711.1.0", "max_value": 100,
                 "unit": "percent"},
                {"index": 1002, "type": "maintenanceKit", "level": "1.3.6.1.4.1.4711.2.0",
                 "max": "1.3.6.1.4.1.4711.3.0"},
                {"index": 1003, "type": "opc", "level": "1.3.6.1.4.1.4711.4.0", "max_value": 100},
            ],
        },
        "acme.toml",
    )  # fmt: skip
    values = {
        (1, 3, 6, 1, 2, 1, 1, 2, 0): "1.3.6.1.4.1.4711.1",
        (1, 3, 6, 1, 4, 1, 4711, 1, 0): 40,
        (1, 3, 6, 1, 4, 1, 4711, 2, 0): -3,
        (1, 3, 6, 1, 4, 1, 4711, 3, 0): 200000,
    }
    snap = map_snapshot(values, [PROFILES[0], vendor], ip_address="192.0.2.1")
    got = {s.index: s for s in snap.supply}
    assert sorted(got) == [1001, 1002]  # 1003 has no level: left out
    toner, kit = got[1001], got[1002]
    assert (toner.percent, toner.unit.raw, toner.source) == (Decimal("40.00"), 19, "acme")
    assert (kit.level.raw, kit.level.meaning.value, kit.percent) == (-3, "someRemaining", None)
    assert kit.max_capacity.oid == "1.3.6.1.4.1.4711.3.0"
    assert validate_snapshot_xml(snapshot_xml(snap)) == []
    with pytest.raises(ProfileError):
        profile_from_dict(
            {"name": "bad", "supply": [{"index": 1, "level": "1.3.6.1.4.1.1.0"}]}, "bad.toml"
        )


def test_device_key_percent_encodes_unusual_serial_characters():
    assert device_key("AB/12 Ü", [], "1.3.6.1.4.1.11", None, None) == "sn:hp:ab%2f12%c3%bc"
    long_key = device_key("S1" * 150, [], "1.3.6.1.4.1.11", None, None)
    assert long_key.startswith("sn:hp:h") and len(long_key) == len("sn:hp:h") + 64


def test_group_mac_addresses_are_not_identities():
    assert format_mac(bytes.fromhex("01005e0000fb")) is None  # multicast bit set
    assert format_mac(bytes.fromhex("001ba90ba752")) == "00:1b:a9:0b:a7:52"


def test_device_key_ignores_the_ip_address():
    base = {
        o("1.3.6.1.2.1.1.2.0"): "1.3.6.1.4.1.1347.41",
        o("1.3.6.1.2.1.43.5.1.1.17.1"): b"VCF9Z04711",
        o("1.3.6.1.2.1.2.2.1.6.2"): bytes.fromhex("001122334455"),
    }
    chosen = select_profiles(PROFILES, base)
    a = map_snapshot(base, chosen, ip_address="10.0.0.5")
    b = map_snapshot(base, chosen, ip_address="10.0.7.99", port=1161)
    assert a.identity.device_key == b.identity.device_key == "sn:kyocera:vcf9z04711"


@pytest.mark.parametrize(
    ("raw", "mac"),
    [
        (bytes.fromhex("001ba90ba752"), "00:1b:a9:0b:a7:52"),
        (b"", None),
        (b"\x00" * 6, None),
        (b"\xff" * 6, None),
        (b"\x01\x02\x03", None),
    ],
)
def test_format_mac(raw, mac):
    assert format_mac(raw) == mac


def _counter(kind: str, oid: str, value: int) -> Counter:
    return Counter(
        value=value, kind=CounterKind(kind), unit=CounterUnit.IMPRESSIONS, oid=oid, source="x"
    )


def test_decreased_counters_are_flagged_with_previous():
    before = [_counter("total", "1.1", 1000), _counter("mono", "1.2", 700)]
    after = [_counter("total", "1.1", 20), _counter("mono", "1.2", 700), _counter("fax", "1.3", 1)]
    flagged = flag_decreased(after, previous_counters(before))
    assert [(c.kind.value, c.value, c.previous, c.anomaly.value) for c in flagged] == [
        ("total", 20, 1000, "decreased")
    ]
    assert after[1].anomaly is None and after[2].anomaly is None


def test_same_oid_different_kind_is_a_different_counter():
    prev = {("total", "1.1"): 1000}
    assert flag_decreased([_counter("mono", "1.1", 5)], prev) == []


# --- hostile values never raise ------------------------------------------------------------


def test_wrong_types_become_decode_errors():
    p = "1.3.6.1.2.1.43"
    values = {
        o("1.3.6.1.2.1.1.1.0"): 42,  # sysDescr as an integer
        o("1.3.6.1.2.1.1.2.0"): b"\xff\xfe",  # sysObjectID as octets
        o("1.3.6.1.2.1.1.3.0"): -5,
        o(f"{p}.10.2.1.4.1.1"): b"12",  # counter as text
        o(f"{p}.10.2.1.5.1.1"): -7,  # negative counter
        o(f"{p}.11.1.1.5.1.1"): 3,
        o(f"{p}.11.1.1.8.1.1"): "1.3.6",  # capacity as an OID
        o(f"{p}.11.1.1.9.1.1"): 10,
        o(f"{p}.11.1.1.5.1.2"): 3,
        o(f"{p}.11.1.1.8.1.2"): 100,
        o(f"{p}.11.1.1.9.1.2"): 2**40,  # not an Integer32
        o(f"{p}.11.1.1.6.1.3"): b"Toner \x00\x07\x1b bad",
        o(f"{p}.11.1.1.8.1.3"): 100,
        o(f"{p}.11.1.1.9.1.3"): 50,
        o("1.3.6.1.2.1.25.3.5.1.2.1"): 5,  # error state as an integer
    }
    snap = map_snapshot(values, select_profiles(PROFILES, values), ip_address="192.0.2.9")
    codes = {(e.oid, e.code.value) for e in snap.collection_error}
    assert ("1.3.6.1.2.1.1.1.0", "decode-error") in codes
    assert ("1.3.6.1.2.1.43.10.2.1.4.1.1", "decode-error") in codes
    assert ("1.3.6.1.2.1.43.10.2.1.5.1.1", "decode-error") in codes
    assert ("1.3.6.1.2.1.43.11.1.1.8.1.1", "decode-error") in codes
    assert ("1.3.6.1.2.1.43.11.1.1.9.1.2", "decode-error") in codes
    assert ("1.3.6.1.2.1.25.3.5.1.2.1", "decode-error") in codes
    assert snap.counter == []
    assert [s.index for s in snap.supply] == [3]
    assert snap.supply[0].description == "Toner  bad"  # control characters dropped
    assert snap.identity.uptime is None
    assert validate_snapshot_xml(snapshot_xml(snap)) == []


def test_level_above_capacity_is_inconsistent_and_has_no_percent():
    p = "1.3.6.1.2.1.43.11.1.1"
    values = {o(f"{p}.5.1.1"): 3, o(f"{p}.8.1.1"): 100, o(f"{p}.9.1.1"): 150}
    snap = map_snapshot(values, PROFILES[:1], ip_address="192.0.2.9")
    (s,) = snap.supply
    assert (s.level.raw, s.max_capacity.raw, s.percent) == (150, 100, None)
    assert [e.code.value for e in snap.collection_error] == ["inconsistent"]


# --- profiles ----------------------------------------------------------------------------------


def test_profiles_are_selected_by_enterprise_and_probe():
    hp = {o("1.3.6.1.2.1.1.2.0"): "1.3.6.1.4.1.11.2.3.9.1"}
    assert [p.name for p in select_profiles(PROFILES, hp)] == ["standard", "hp"]
    nothing = {o("1.3.6.1.2.1.1.2.0"): "1.3.6.1.4.1.99999.1"}
    assert [p.name for p in select_profiles(PROFILES, nothing)] == ["standard"]
    probe = {o(f"{BROTHER}.1.0"): b"serial"}  # no sysObjectID at all
    assert [p.name for p in select_profiles(PROFILES, probe)] == ["standard", "brother"]


def test_required_vendors_have_profiles():
    names = {p.name for p in PROFILES}
    required = ("hp", "kyocera", "ricoh", "sharp", "konica", "xerox", "canon", "brother")
    for vendor in (*required, "lexmark", "epson", "oki", "samsung"):
        assert vendor in names


def test_plan_reads_walks_each_subtree_once():
    for chosen in ([PROFILES[0]], PROFILES):
        walks, gets = plan_reads(chosen)
        for i, a in enumerate(walks):
            for b in walks[i + 1 :]:
                assert b[: len(a)] != a, (a, b)
        assert not any(g[: len(w)] == w for g in gets for w in walks)
        assert len(set(gets)) == len(gets)


def test_bad_profiles_are_refused():
    with pytest.raises(ProfileError):
        profile_from_dict({"name": "Bad Name"}, "x.toml")
    with pytest.raises(ProfileError):
        profile_from_dict({"name": "x", "counter": [{"oid": "1.3.6.1", "kind": "pages"}]}, "x.toml")


def test_hp_branded_samsung_is_read_with_the_samsung_profile():
    from metersync_agent.profiles import select_profiles

    def chosen(descr: str, soid: str) -> list[str]:
        values = {(1, 3, 6, 1, 2, 1, 1, 1, 0): descr.encode(), (1, 3, 6, 1, 2, 1, 1, 2, 0): soid}
        return [p.name for p in select_profiles(PROFILES, values)]

    hp_samsung = "HP Laser MFP 135w; V3.82.01.08 JUN-17-2019; S/N VNC3K12345"
    assert "samsung" in chosen(hp_samsung, "1.3.6.1.4.1.11.2.3.9.1")
    assert "samsung" not in chosen("HP LaserJet M402dn; S/N PHB123", "1.3.6.1.4.1.11.2.3.9.1")
