"""snmp_codec: byte-exact encodings worked out by hand from RFC 1157 / RFC 3416 and X.690,
every value type, and malformed packets (each must raise CodecError, nothing else)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metersync_agent import snmp_codec as codec
from metersync_agent.snmp_codec import CodecError

SYS_DESCR_0 = (1, 3, 6, 1, 2, 1, 1, 1, 0)
H = bytes.fromhex

# SNMPv1 GetRequest, request-id 1, community "public", sysDescr.0 (X.690 BER by hand):
GET_SYSDESCR_V1 = H(
    "30 26"  # Message SEQUENCE, 38 bytes
    " 02 01 00"  # version-1 (0)
    " 04 06 70 75 62 6c 69 63"  # community "public"
    " a0 19"  # GetRequest-PDU, 25 bytes
    " 02 01 01"  # request-id 1
    " 02 01 00 02 01 00"  # error-status 0, error-index 0
    " 30 0e 30 0c"  # VarBindList, VarBind
    " 06 08 2b 06 01 02 01 01 01 00"  # 1.3.6.1.2.1.1.1.0 (1.3 -> 40 * 1 + 3 = 0x2b)
    " 05 00"  # NULL
)


def response(varbinds: bytes, *, rid: bytes = b"\x02\x01\x01", status: int = 0) -> bytes:
    """A v2c Response carrying pre-encoded varbinds (outer lengths computed by codec)."""
    pdu = rid + bytes([2, 1, status, 2, 1, 0]) + codec.encode_tlv(0x30, varbinds)
    body = H("02 01 01 04 06") + b"public" + codec.encode_tlv(0xA2, pdu)
    return codec.encode_tlv(0x30, body)


def vb(oid_hex: str, value_hex: str) -> bytes:
    return codec.encode_tlv(0x30, H(oid_hex) + H(value_hex))


OID_A = "06 03 2b 06 01"  # 1.3.6.1


# --- requests ---------------------------------------------------------------------------------


def test_get_request_for_sysdescr_matches_hand_encoding():
    packet = codec.encode_get(1, [SYS_DESCR_0], community=b"public", version=codec.V1)
    assert packet == GET_SYSDESCR_V1
    msg = codec.decode_message(packet)
    assert msg == codec.Message(0, b"public", codec.GET, 1, 0, 0, [(SYS_DESCR_0, codec.NULL)])


def test_get_next_and_bulk_requests():
    nxt = codec.encode_get_next(0x1234, [(1, 3, 6, 1, 2, 1, 43)], community=b"c")
    assert nxt == H(
        "30 20 02 01 01 04 01 63 a1 18 02 02 12 34 02 01 00 02 01 00"
        " 30 0c 30 0a 06 06 2b 06 01 02 01 2b 05 00"
    )
    bulk = codec.encode_get_bulk(
        2**31 - 1, [(1, 3, 6, 1, 2, 1, 43)], community=b"c", max_repetitions=25
    )
    assert bulk == H(
        "30 22 02 01 01 04 01 63 a5 1a 02 04 7f ff ff ff 02 01 00 02 01 19"
        " 30 0c 30 0a 06 06 2b 06 01 02 01 2b 05 00"
    )
    msg = codec.decode_message(bulk)
    assert (msg.pdu_type, msg.request_id, msg.error_status, msg.error_index) == (
        codec.GET_BULK, 2**31 - 1, 0, 25,
    )  # fmt: skip
    with pytest.raises(ValueError):
        codec.encode_request(codec.GET_BULK, 1, [SYS_DESCR_0], version=codec.V1)


def test_long_form_length_is_encoded_and_read():
    oids = [(1, 3, 6, 1, 2, 1, 43, 11, 1, 1, 9, 1, i) for i in range(8)]
    packet = codec.encode_get(7, oids, community=b"public")
    assert packet[:2] == b"\x30\x81" and packet[2] == len(packet) - 3 > 127
    assert [o for o, _ in codec.decode_message(packet).varbinds] == oids


@pytest.mark.parametrize(
    ("oid", "content"),
    [
        ((1, 3, 6, 1, 4, 1, 2435), "2b 06 01 04 01 93 03"),  # 2435 = 0x13 * 128 + 0x03
        ((1, 3, 128), "2b 81 00"),
        ((1, 3, 2**32 - 1), "2b 8f ff ff ff 7f"),
        ((2, 999, 3), "88 37 03"),  # 2 * 40 + 999 = 1079 = 8 * 128 + 55
        ((0, 0), "00"),
    ],
)
def test_oid_encoding_with_large_sub_identifiers(oid, content):
    enc = codec.encode_oid(oid)
    assert enc == bytes([6, len(H(content))]) + H(content)
    msg = codec.decode_message(response(vb(OID_A, enc.hex())))
    assert msg.varbinds[0][1] == ".".join(map(str, oid))


# --- every value type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value_hex", "expected"),
    [
        ("02 01 00", 0),
        ("02 01 fd", -3),
        ("02 02 00 80", 128),
        ("02 04 80 00 00 00", -(2**31)),
        ("02 04 7f ff ff ff", 2**31 - 1),
        ("04 00", b""),
        ("04 07 54 6f 6e 65 72 20 ff", b"Toner \xff"),
        ("44 03 9f 78 04", b"\x9f\x78\x04"),  # Opaque: raw bytes
        ("06 07 2b 06 01 04 01 87 06", "1.3.6.1.4.1.902"),  # 902 = 7 * 128 + 6
        ("40 04 0a 00 00 07", "10.0.0.7"),
        ("41 05 00 ff ff ff ff", 2**32 - 1),  # Counter32
        ("41 04 ff ff ff ff", 2**32 - 1),  # sloppy agents: no leading zero (net-snmp reads it)
        ("42 01 07", 7),  # Gauge32
        ("43 03 01 e2 40", 123456),  # TimeTicks
        ("47 01 05", 5),  # UInteger32 (v1's obsolete one)
        ("46 09 00 ff ff ff ff ff ff ff ff", 2**64 - 1),  # Counter64
        ("46 05 01 00 00 00 00", 2**32),
        ("05 00", codec.NULL),
        ("80 00", codec.NO_SUCH_OBJECT),
        ("81 00", codec.NO_SUCH_INSTANCE),
        ("82 00", codec.END_OF_MIB_VIEW),
    ],
)
def test_every_value_type(value_hex, expected):
    msg = codec.decode_response(response(vb(OID_A, value_hex)))
    assert msg.varbinds == [((1, 3, 6, 1), expected)]
    assert type(msg.varbinds[0][1]) is type(expected)


@pytest.mark.parametrize(
    ("value_hex", "reason"),
    [
        ("41 06 01 00 00 00 00 00", "unsigned32 of 6 bytes"),
        ("41 05 01 00 00 00 00", "does not fit in 32 bits"),
        ("46 0a 00 00 00 00 00 00 00 00 00 01", "unsigned64 of 10 bytes"),
        ("02 00", "INTEGER of 0 bytes"),
        ("02 05 00 80 00 00 00", "is not an Integer32"),
        ("40 05 0a 00 00 07 01", "IpAddress of 5 bytes"),
        ("05 01 00", "NULL with 1 content bytes"),
        ("06 02 2b 86", "ends inside a sub-identifier"),
        ("45 01 00", "unexpected value tag 0x45"),
    ],
)
def test_a_bad_value_is_reported_for_its_varbind_only(value_hex, reason):
    packet = response(vb(OID_A, value_hex) + vb("06 03 2b 06 02", "02 01 05"))
    msg = codec.decode_response(packet)
    bad = msg.varbinds[0][1]
    assert isinstance(bad, codec.BadValue) and reason in bad.reason
    assert msg.varbinds[1] == ((1, 3, 6, 2), 5)


def test_encoders_round_trip_every_type():
    values = [
        (codec.encode_integer(-(2**31)), -(2**31)),
        (codec.encode_integer(-129), -129),
        (codec.encode_integer(-128), -128),
        (codec.encode_counter32(2**32 - 1), 2**32 - 1),
        (codec.encode_gauge32(0), 0),
        (codec.encode_timeticks(8640000), 8640000),
        (codec.encode_counter64(2**64 - 1), 2**64 - 1),
        (codec.encode_octet_string(b"x" * 300), b"x" * 300),
        (codec.encode_opaque(b"\x00"), b"\x00"),
        (codec.encode_ip_address("192.168.1.254"), "192.168.1.254"),
        (codec.encode_oid((1, 3, 6, 1, 4, 1, 2**32 - 1)), "1.3.6.1.4.1.4294967295"),
    ]
    assert codec.encode_integer(-128) == H("02 01 80")
    varbinds = [((1, 3, 6, 1, 9, i), enc) for i, (enc, _) in enumerate(values)]
    packet = codec.encode_message(codec.V2C, b"public", codec.RESPONSE, -5, 0, 0, varbinds)
    msg = codec.decode_response(packet)
    assert msg.request_id == -5
    assert [v for _, v in msg.varbinds] == [v for _, v in values]
    with pytest.raises(ValueError):
        codec.encode_counter32(2**32)
    with pytest.raises(ValueError):
        codec.encode_oid((1, 40))
    with pytest.raises(ValueError):
        codec.encode_oid((1, 3, 2**32))


def test_response_with_error_status():
    packet = response(vb(OID_A, "05 00"), status=5)
    msg = codec.decode_response(packet)
    assert (msg.error_status, msg.error_index) == (5, 0)
    with pytest.raises(CodecError, match="GetRequest instead of a Response"):
        codec.decode_response(GET_SYSDESCR_V1)


# --- malformed packets ------------------------------------------------------------------------

GOOD = response(vb(OID_A, "02 01 05") + vb("06 03 2b 06 02", "04 02 68 69"))


@pytest.mark.parametrize("cut", range(len(GOOD)))
def test_every_truncation_raises_codec_error(cut):
    with pytest.raises(CodecError):
        codec.decode_message(GOOD[:cut])


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (GOOD + b"\x00", "bytes after the message"),
        (H("31") + GOOD[1:], "message: tag 0x31"),
        (H("30 80") + GOOD[2:] + H("00 00"), "indefinite length"),
        (H("30 84 00 00 00 2b") + GOOD[2:], "length field of 4 bytes"),
        (H("30 83 ff ff ff") + GOOD[2:], "truncated"),
        (GOOD[:2] + H("02 01 03") + GOOD[5:], "version 3"),
        (
            codec.encode_tlv(0x30, H("02 05 00 00 00 00 01") + GOOD[5:]),
            "version: INTEGER of 5 bytes",
        ),
        (response(vb(OID_A, "02 01 05"), rid=H("02 00")), "request-id: INTEGER of 0 bytes"),
        (response(vb("06 00", "05 00")), "empty OBJECT IDENTIFIER"),
        (response(vb("04 03 2b 06 01", "05 00")), "varbind name: tag 0x04"),
        (response(vb("06 03 2b 86 80", "05 00")), "ends inside a sub-identifier"),
        (response(vb("06 03 2b 80 01", "05 00")), "leading 0x80"),
        (response(vb("06 06 2b 90 80 80 80 00", "05 00")), "over 2**32-1"),
        (response(vb("06 81 81 2b" + " 01" * 128, "05 00")), "more than 128 arcs"),
        (response(vb(OID_A, "02 01 05 00")), "1 bytes after the value"),
        (response(vb(OID_A, "1f 01 00")), "multi-byte tag"),
        (response(b"\x02\x01\x00"), "varbind: tag 0x02"),
        (H("30 0b 02 01 01 04 00 a4 04 02 01 01 30"), "not a PDU this codec reads"),
        (b"\x30" + b"\x82\xff\xff" + b"\x00" * 65535, "at most 65535"),
    ],
)
def test_malformed_packets_raise_precise_errors(packet, reason):
    with pytest.raises(CodecError, match=reason.replace("*", r"\*")) as exc:
        codec.decode_message(packet)
    assert 0 <= exc.value.offset <= len(packet)


def test_peek_request_id_of_a_truncated_answer():
    assert codec.peek_request_id(GOOD[:-3]) == 1
    assert codec.peek_request_id(b"\x30\x03\x02") is None
    assert codec.peek_request_id(b"") is None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_ever_raise_codec_error(data):
    for blob in (data, b"\x30" + bytes([len(data) & 0x7F]) + data):
        try:
            msg = codec.decode_message(blob)
        except CodecError:
            continue
        assert isinstance(msg, codec.Message)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_responses_only_ever_raise_codec_error(data):
    packet = bytearray(GOOD)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(packet) - 1))
        packet[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(CodecError):
        codec.decode_message(bytes(packet))
    rid = codec.peek_request_id(bytes(packet))  # never raises either
    assert rid is None or isinstance(rid, int)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=20),
            st.one_of(
                st.integers(-(2**31), 2**31 - 1).map(lambda v: (codec.encode_integer(v), v)),
                st.integers(0, 2**64 - 1).map(lambda v: (codec.encode_counter64(v), v)),
                st.binary(max_size=200).map(lambda v: (codec.encode_octet_string(v), v)),
            ),
        ),
        max_size=30,
    ),
    st.integers(-(2**31), 2**31 - 1),
)
def test_fuzz_round_trip(varbinds, rid):
    vbs = [((1, 3, *tail), enc) for tail, (enc, _) in varbinds]
    packet = codec.encode_message(codec.V2C, b"public", codec.RESPONSE, rid, 0, 0, vbs)
    msg = codec.decode_response(packet)
    assert msg.request_id == rid
    assert msg.varbinds == [((1, 3, *tail), v) for tail, (_, v) in varbinds]
