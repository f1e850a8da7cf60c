"""metersync.ber, the BER encoders of the snmpsim launcher and the conformance relay, against an
independent decoder (pyasn1) and the reference agent's codec, at the length and sign boundaries."""

from __future__ import annotations

import pytest
from pyasn1.codec.ber import decoder
from pyasn1.type import univ

from metersync.ber import integer, tlv
from metersync_agent import snmp_codec

INTEGERS = [0, 1, 127, 128, 255, 256, 65507, 2**31 - 1, 2**63, -1, -128, -129, -(2**31)]
LENGTHS = [0, 1, 127, 128, 255, 256, 65535, 65536]


@pytest.mark.parametrize("value", INTEGERS)
def test_integer_decodes_and_is_minimal(value: int) -> None:
    decoded, rest = decoder.decode(integer(value), asn1Spec=univ.Integer())
    assert (int(decoded), rest) == (value, b"")
    assert integer(value) == snmp_codec.encode_integer(value)


@pytest.mark.parametrize("n", LENGTHS)
def test_tlv_lengths(n: int) -> None:
    content = bytes(i % 251 for i in range(n))
    decoded, rest = decoder.decode(tlv(0x04, content), asn1Spec=univ.OctetString())
    assert (bytes(decoded), rest) == (content, b"")
    assert tlv(0x04, content) == snmp_codec.encode_tlv(0x04, content)
