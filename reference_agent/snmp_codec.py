"""Sans-IO BER codec for SNMP v1 and v2c messages (RFC 1157, RFC 3416, X.690 BER subset).

Bytes in, plain Python values out; no sockets, no clocks::

    from metersync_agent import snmp_codec as codec

    packet = codec.encode_get_bulk(7, [(1, 3, 6, 1, 2, 1, 43)], community=b"public",
                                   max_repetitions=25)
    ...                                         # send it, receive `data`
    msg = codec.decode_response(data)           # raises codec.CodecError if malformed
    msg.request_id, msg.error_status, msg.error_index
    for oid, value in msg.varbinds:             # oid: tuple[int, ...]
        ...                                     # value: int | bytes | str | Special | BadValue

Values follow the agent's `SnmpValue` convention: INTEGER, Counter32, Gauge32, TimeTicks,
Unsigned32 and Counter64 -> int; OCTET STRING and Opaque -> bytes; OBJECT IDENTIFIER and
IpAddress -> dotted str. NULL, noSuchObject, noSuchInstance and endOfMibView are the `Special`
sentinels `NULL`, `NO_SUCH_OBJECT`, `NO_SUCH_INSTANCE`, `END_OF_MIB_VIEW`.

Strictness: anything that breaks the message's framing (a truncated or overlong TLV, a wrong
tag where the grammar wants another, indefinite or oversized lengths, bytes after the message,
a varbind name that is not a valid OID) raises `CodecError` with the byte offset and the
reason. A *value* that is well framed but not valid for its type (a Counter32 of 6 bytes, an
IpAddress of 5, an unknown tag) becomes a `BadValue` so the other varbinds of the PDU survive,
as a device with one corrupt object should not lose the whole PDU. Memory stays bounded by the
input: only slices of it are ever made, sub-identifiers are capped at 2**32-1, OIDs at 128 arcs
and messages at 65,535 bytes.

Lenient where real agents are sloppy and the meaning is unambiguous: non-minimal length and
integer encodings are accepted; an unsigned type (Counter32...) whose top bit is set without the
leading zero byte is read as unsigned, as net-snmp does.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "END_OF_MIB_VIEW",
    "GET",
    "GET_BULK",
    "GET_NEXT",
    "NO_SUCH_INSTANCE",
    "NO_SUCH_OBJECT",
    "NULL",
    "RESPONSE",
    "V1",
    "V2C",
    "BadValue",
    "CodecError",
    "Message",
    "Special",
    "Value",
    "decode_message",
    "decode_response",
    "encode_counter32",
    "encode_counter64",
    "encode_gauge32",
    "encode_get",
    "encode_get_bulk",
    "encode_get_next",
    "encode_integer",
    "encode_ip_address",
    "encode_message",
    "encode_octet_string",
    "encode_oid",
    "encode_opaque",
    "encode_request",
    "encode_timeticks",
    "encode_tlv",
    "peek_request_id",
]

Oid = tuple[int, ...]

V1, V2C = 0, 1

# PDU tags (context-specific, constructed)
GET, GET_NEXT, RESPONSE, SET, TRAP_V1, GET_BULK, INFORM, TRAP_V2, REPORT = range(0xA0, 0xA9)
PDU_NAMES = {
    GET: "GetRequest", GET_NEXT: "GetNextRequest", RESPONSE: "Response", SET: "SetRequest",
    TRAP_V1: "Trap-v1", GET_BULK: "GetBulkRequest", INFORM: "InformRequest",
    TRAP_V2: "SNMPv2-Trap", REPORT: "Report",
}  # fmt: skip

# value tags
T_INTEGER, T_OCTETS, T_NULL, T_OID, T_SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
T_IPADDRESS, T_COUNTER32, T_GAUGE32, T_TIMETICKS, T_OPAQUE = 0x40, 0x41, 0x42, 0x43, 0x44
T_COUNTER64, T_UINTEGER32 = 0x46, 0x47
T_NO_SUCH_OBJECT, T_NO_SUCH_INSTANCE, T_END_OF_MIB_VIEW = 0x80, 0x81, 0x82

MAX_MESSAGE = 65535  # an SNMP message travels in one UDP datagram
MAX_OID_ARCS = 128  # RFC 2578 section 3.5
MAX_SUBID = 0xFFFFFFFF
_MAX_FIRST = MAX_SUBID + 80  # first sub-identifier = 40 * X + Y with X = 2
_MAX_LENGTH_BYTES = 3  # a length over 16 MB can never fit in MAX_MESSAGE


class CodecError(ValueError):
    """A message that is not a well-formed SNMP v1/v2c message; `offset` is where it broke."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason


class Special(enum.Enum):
    """Varbind values that are not data (RFC 3416 section 3)."""

    NULL = "NULL"
    NO_SUCH_OBJECT = "noSuchObject"
    NO_SUCH_INSTANCE = "noSuchInstance"
    END_OF_MIB_VIEW = "endOfMibView"

    def __repr__(self) -> str:
        return self.value


NULL = Special.NULL
NO_SUCH_OBJECT = Special.NO_SUCH_OBJECT
NO_SUCH_INSTANCE = Special.NO_SUCH_INSTANCE
END_OF_MIB_VIEW = Special.END_OF_MIB_VIEW


class BadValue(NamedTuple):
    """A well-framed varbind value that is not valid for its type (tag and reason)."""

    tag: int
    reason: str


Value = int | bytes | str | Special | BadValue


class Message(NamedTuple):
    version: int  # V1 or V2C
    community: bytes
    pdu_type: int  # GET, GET_NEXT, RESPONSE, ...
    request_id: int
    error_status: int  # non-repeaters for a GetBulkRequest
    error_index: int  # max-repetitions for a GetBulkRequest
    varbinds: list[tuple[Oid, Value]]


# --- encoding ---------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(size),)) + size


def encode_tlv(tag: int, content: bytes) -> bytes:
    """One BER TLV (single-byte tag, definite length)."""
    return bytes((tag,)) + _length(len(content)) + content


def encode_integer(value: int, tag: int = T_INTEGER) -> bytes:
    """A signed INTEGER (minimal two's complement)."""
    size = ((~value if value < 0 else value).bit_length() + 8) // 8
    return encode_tlv(tag, value.to_bytes(size, "big", signed=True))


def _unsigned(value: int, tag: int, bits: int) -> bytes:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{value} does not fit in {bits} unsigned bits")
    return encode_tlv(tag, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def encode_counter32(value: int) -> bytes:
    return _unsigned(value, T_COUNTER32, 32)


def encode_gauge32(value: int) -> bytes:
    return _unsigned(value, T_GAUGE32, 32)


def encode_timeticks(value: int) -> bytes:
    return _unsigned(value, T_TIMETICKS, 32)


def encode_counter64(value: int) -> bytes:
    return _unsigned(value, T_COUNTER64, 64)


def encode_octet_string(value: bytes) -> bytes:
    return encode_tlv(T_OCTETS, value)


def encode_opaque(value: bytes) -> bytes:
    return encode_tlv(T_OPAQUE, value)


def encode_ip_address(value: str) -> bytes:
    parts = [int(x) for x in value.split(".")]
    if len(parts) != 4 or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"not an IPv4 address: {value!r}")
    return encode_tlv(T_IPADDRESS, bytes(parts))


def _oid_content(oid: Sequence[int]) -> bytes:
    if not 2 <= len(oid) <= MAX_OID_ARCS:
        raise ValueError(f"an OID has 2 to {MAX_OID_ARCS} arcs, not {len(oid)}")
    first, second = oid[0], oid[1]
    if first not in (0, 1, 2) or second < 0 or (first < 2 and second >= 40):
        raise ValueError(f"invalid first arcs {first}.{second}")
    out = bytearray()
    for i, arc in enumerate((first * 40 + second, *oid[2:])):
        if arc < 0 or arc > (_MAX_FIRST if i == 0 else MAX_SUBID):
            raise ValueError(f"sub-identifier {arc} out of range")
        if arc < 0x80:
            out.append(arc)
            continue
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def encode_oid(oid: Sequence[int], tag: int = T_OID) -> bytes:
    return encode_tlv(tag, _oid_content(oid))


_NULL_TLV = b"\x05\x00"


def encode_message(
    version: int,
    community: bytes,
    pdu_type: int,
    request_id: int,
    field2: int,
    field3: int,
    varbinds: Sequence[tuple[Sequence[int], bytes]],
) -> bytes:
    """A whole message; each varbind value is an already encoded TLV (see encode_*)."""
    if version not in (V1, V2C):
        raise ValueError(f"version must be 0 (v1) or 1 (v2c), not {version}")
    if not -(2**31) <= request_id < 2**31:
        raise ValueError(f"request-id {request_id} is not an Integer32")
    vbs = b"".join(encode_tlv(T_SEQUENCE, encode_oid(o) + v) for o, v in varbinds)
    pdu = encode_integer(request_id) + encode_integer(field2) + encode_integer(field3)
    pdu = encode_tlv(pdu_type, pdu + encode_tlv(T_SEQUENCE, vbs))
    return encode_tlv(
        T_SEQUENCE, encode_integer(version) + encode_tlv(T_OCTETS, bytes(community)) + pdu
    )


def encode_request(
    pdu_type: int,
    request_id: int,
    oids: Sequence[Sequence[int]],
    *,
    community: bytes = b"public",
    version: int = V2C,
    non_repeaters: int = 0,
    max_repetitions: int = 0,
) -> bytes:
    """A GetRequest, GetNextRequest or GetBulkRequest (v2c only) asking for oids."""
    if pdu_type == GET_BULK:
        if version == V1:
            raise ValueError("SNMPv1 has no GetBulkRequest")
        fields = (non_repeaters, max_repetitions)
    elif pdu_type in (GET, GET_NEXT):
        fields = (0, 0)
    else:
        raise ValueError(f"not a request this codec builds: {pdu_type:#x}")
    return encode_message(
        version, community, pdu_type, request_id, *fields, [(o, _NULL_TLV) for o in oids]
    )


def encode_get(
    request_id: int, oids: Sequence[Sequence[int]], *, community: bytes, version: int = V2C
) -> bytes:
    return encode_request(GET, request_id, oids, community=community, version=version)


def encode_get_next(
    request_id: int, oids: Sequence[Sequence[int]], *, community: bytes, version: int = V2C
) -> bytes:
    return encode_request(GET_NEXT, request_id, oids, community=community, version=version)


def encode_get_bulk(
    request_id: int,
    oids: Sequence[Sequence[int]],
    *,
    community: bytes,
    max_repetitions: int,
    non_repeaters: int = 0,
) -> bytes:
    return encode_request(
        GET_BULK, request_id, oids, community=community, version=V2C,
        non_repeaters=non_repeaters, max_repetitions=max_repetitions,
    )  # fmt: skip


# --- decoding ---------------------------------------------------------------------------------


def _header(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at pos, which must lie inside [pos, end)."""
    if pos + 2 > end:
        raise CodecError(pos, f"truncated: a TLV needs 2 bytes, {end - pos} left")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise CodecError(pos, f"multi-byte tag {tag:#04x} (not used by SNMP)")
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise CodecError(pos - 1, "indefinite length (not allowed in SNMP)")
        if k > _MAX_LENGTH_BYTES:
            raise CodecError(pos - 1, f"length field of {k} bytes")
        if pos + k > end:
            raise CodecError(pos, "truncated length field")
        n = int.from_bytes(buf[pos : pos + k], "big")
        pos += k
    stop = pos + n
    if stop > end:
        raise CodecError(pos, f"truncated: tag {tag:#04x} says {n} bytes, {end - pos} left")
    return tag, pos, stop


def _expect(buf: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    t, s, e = _header(buf, pos, end)
    if t != tag:
        raise CodecError(pos, f"{what}: tag {t:#04x}, expected {tag:#04x}")
    return s, e


def _header_int(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """An INTEGER field of the message header (at most 4 bytes); (value, next position)."""
    s, e = _expect(buf, pos, end, T_INTEGER, what)
    if not 1 <= e - s <= 4:
        raise CodecError(s, f"{what}: INTEGER of {e - s} bytes")
    return int.from_bytes(buf[s:e], "big", signed=True), e


def _oid(buf: bytes, s: int, e: int) -> Oid:
    """Sub-identifiers of the OBJECT IDENTIFIER content buf[s:e]."""
    if s == e:
        raise CodecError(s, "empty OBJECT IDENTIFIER")
    if e - s > 5 * MAX_OID_ARCS:
        raise CodecError(s, f"OBJECT IDENTIFIER of {e - s} bytes")
    raw = buf[s:e]
    if raw.isascii():  # every sub-identifier is one byte: the common case, done in C
        if e - s >= MAX_OID_ARCS:
            raise CodecError(s, f"OBJECT IDENTIFIER of more than {MAX_OID_ARCS} arcs")
        first = raw[0]
        return (*divmod(first, 40), *raw[1:]) if first < 80 else (2, first - 80, *raw[1:])
    arcs: list[int] = []
    append = arcs.append
    v = 0
    fresh = True  # at the first byte of a sub-identifier
    limit = _MAX_FIRST
    for i, b in enumerate(raw):
        if fresh and b == 0x80:
            raise CodecError(s + i, "sub-identifier with a leading 0x80 byte")
        v = (v << 7) | (b & 0x7F)
        if v > limit:
            raise CodecError(s + i, "sub-identifier over 2**32-1")
        if b & 0x80:
            fresh = False
            continue
        append(v)
        v, fresh, limit = 0, True, MAX_SUBID
    if not fresh:
        raise CodecError(e - 1, "OBJECT IDENTIFIER ends inside a sub-identifier")
    if len(arcs) >= MAX_OID_ARCS:
        raise CodecError(s, f"OBJECT IDENTIFIER of more than {MAX_OID_ARCS} arcs")
    first = arcs[0]
    head = divmod(first, 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


_UNSIGNED_BITS = {T_COUNTER32: 32, T_GAUGE32: 32, T_TIMETICKS: 32, T_UINTEGER32: 32}
_EXCEPTIONS = {
    T_NO_SUCH_OBJECT: NO_SUCH_OBJECT,
    T_NO_SUCH_INSTANCE: NO_SUCH_INSTANCE,
    T_END_OF_MIB_VIEW: END_OF_MIB_VIEW,
    T_NULL: NULL,
}


def _value(buf: bytes, tag: int, s: int, e: int) -> Value:
    """A varbind value other than the fast-path INTEGER / OCTET STRING."""
    n = e - s
    if tag in _UNSIGNED_BITS or tag == T_COUNTER64:
        bits = 64 if tag == T_COUNTER64 else 32
        if not 1 <= n <= bits // 8 + 1:
            return BadValue(tag, f"unsigned{bits} of {n} bytes")
        v = int.from_bytes(buf[s:e], "big")
        if v >> bits:
            return BadValue(tag, f"{v} does not fit in {bits} bits")
        return v
    if tag == T_INTEGER:
        if not 1 <= n <= 5:
            return BadValue(tag, f"INTEGER of {n} bytes")
        v = int.from_bytes(buf[s:e], "big", signed=True)
        if not -(2**31) <= v < 2**31:
            return BadValue(tag, f"{v} is not an Integer32")
        return v
    if tag in (T_OCTETS, T_OPAQUE):
        return buf[s:e]
    if tag == T_OID:
        try:
            return ".".join(map(str, _oid(buf, s, e)))
        except CodecError as exc:
            return BadValue(tag, exc.reason)
    if tag == T_IPADDRESS:
        if n != 4:
            return BadValue(tag, f"IpAddress of {n} bytes")
        return ".".join(map(str, buf[s:e]))
    special = _EXCEPTIONS.get(tag)
    if special is not None:
        return special if n == 0 else BadValue(tag, f"{special.value} with {n} content bytes")
    return BadValue(tag, f"unexpected value tag {tag:#04x}")


def decode_message(data: bytes | bytearray | memoryview) -> Message:
    """Decode any SNMP v1/v2c message (request or response); CodecError if malformed."""
    buf = bytes(data)
    end = len(buf)
    if end > MAX_MESSAGE:
        raise CodecError(MAX_MESSAGE, f"message of {end} bytes (at most {MAX_MESSAGE})")
    s, stop = _expect(buf, 0, end, T_SEQUENCE, "message")
    if stop != end:
        raise CodecError(stop, f"{end - stop} bytes after the message")
    version, pos = _header_int(buf, s, stop, "version")
    if version not in (V1, V2C):
        raise CodecError(s, f"version {version} is not SNMPv1 (0) or SNMPv2c (1)")
    s, pos = _expect(buf, pos, stop, T_OCTETS, "community")
    community = buf[s:pos]
    pdu_type, s, pdu_end = _header(buf, pos, stop)
    if pdu_type not in PDU_NAMES or pdu_type == TRAP_V1:
        raise CodecError(pos, f"tag {pdu_type:#04x} is not a PDU this codec reads")
    if pdu_end != stop:
        raise CodecError(pdu_end, f"{stop - pdu_end} bytes after the PDU")
    request_id, pos = _header_int(buf, s, pdu_end, "request-id")
    status, pos = _header_int(buf, pos, pdu_end, "error-status")
    index, pos = _header_int(buf, pos, pdu_end, "error-index")
    pos, vend = _expect(buf, pos, pdu_end, T_SEQUENCE, "variable-bindings")
    if vend != pdu_end:
        raise CodecError(vend, f"{pdu_end - vend} bytes after the variable-bindings")
    varbinds: list[tuple[Oid, Value]] = []
    append = varbinds.append
    from_bytes = int.from_bytes
    while pos < vend:
        # varbind SEQUENCE, OID and value headers: short lengths inline, long ones via _header
        if pos + 2 > vend or buf[pos] != T_SEQUENCE or buf[pos + 1] & 0x80:
            _, s, vb_end = _header(buf, pos, vend)
            if buf[pos] != T_SEQUENCE:
                raise CodecError(pos, f"varbind: tag {buf[pos]:#04x}, expected 0x30")
        else:
            s = pos + 2
            vb_end = s + buf[pos + 1]
            if vb_end > vend:
                raise CodecError(s, f"truncated varbind: {vb_end - s} bytes, {vend - s} left")
        if s + 2 <= vb_end and buf[s] == T_OID and buf[s + 1] < 0x80:
            os_ = s + 2
            oe = os_ + buf[s + 1]
            if oe > vb_end:
                raise CodecError(os_, "truncated varbind name")
        else:
            os_, oe = _expect(buf, s, vb_end, T_OID, "varbind name")
        name = _oid(buf, os_, oe)
        if oe + 2 <= vb_end and buf[oe + 1] < 0x80:
            tag = buf[oe]
            vs = oe + 2
            ve = vs + buf[oe + 1]
            if ve > vb_end:
                raise CodecError(vs, f"truncated value of {name}")
            if tag & 0x1F == 0x1F:
                raise CodecError(oe, f"multi-byte tag {tag:#04x} (not used by SNMP)")
        else:
            tag, vs, ve = _header(buf, oe, vb_end)
        if ve != vb_end:
            raise CodecError(ve, f"{vb_end - ve} bytes after the value of {name}")
        if tag == T_INTEGER and 0 < ve - vs <= 4:
            append((name, from_bytes(buf[vs:ve], "big", signed=True)))
        elif tag == T_OCTETS:
            append((name, buf[vs:ve]))
        else:
            append((name, _value(buf, tag, vs, ve)))
        pos = vb_end
    return Message(version, community, pdu_type, request_id, status, index, varbinds)


def decode_response(data: bytes | bytearray | memoryview) -> Message:
    """Decode a Response PDU (RFC 3416's Response-PDU, v1's GetResponse-PDU)."""
    msg = decode_message(data)
    if msg.pdu_type != RESPONSE:
        raise CodecError(0, f"{PDU_NAMES[msg.pdu_type]} instead of a Response")
    return msg


def peek_request_id(data: bytes | bytearray | memoryview) -> int | None:
    """The request-id of a message too broken to decode (e.g. truncated), if it can be read."""
    buf = bytes(data[:MAX_MESSAGE])
    end = len(buf)
    pos = 0
    try:
        for tag in (T_SEQUENCE, T_INTEGER, T_OCTETS, None):  # message, version, community, PDU
            if pos + 2 > end or (tag is not None and buf[pos] != tag):
                return None
            n = buf[pos + 1]
            if tag is T_SEQUENCE or tag is None:  # enter: its content may be cut short
                pos += 2 + (n & 0x7F if n & 0x80 else 0)
            else:
                _, _, pos = _header(buf, pos, end)
        return _header_int(buf, pos, end, "request-id")[0]
    except CodecError:
        return None
