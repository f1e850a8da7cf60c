"""The two BER encoders that the snmpsim launcher and the conformance relay build messages with.

Not the reference agent's codec (`metersync_agent.snmp_codec`): the conformance harness must not
lean on the implementation it judges. Single-byte tags, definite lengths (X.690 8.1).
"""

from __future__ import annotations


def tlv(tag: int, content: bytes) -> bytes:
    """One TLV: tag, length (short form below 128, else long form), content."""
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def integer(value: int) -> bytes:
    """An INTEGER in the fewest two's-complement octets."""
    size = ((~value if value < 0 else value).bit_length() + 8) // 8
    return tlv(0x02, value.to_bytes(size, "big", signed=True))
