"""Signatures over exact bytes, and how a receiver refuses a bad header (MS-SEC-10, MS-SEC-12)."""

from __future__ import annotations

import pytest

from metersync import signing
from metersync.errors import ProtocolError

AGENT = "0b7e3f5a-8c21-4d9e-b6a3-2f4c1d8e9a70"


def test_sign_then_verify_exact_bytes() -> None:
    key = signing.generate_key()
    data = b"<Report/>"
    sig = signing.parse(signing.sign(key, data, AGENT))
    assert sig.agent_id == AGENT and len(sig.value) == 64
    signing.verify(signing.public_key_b64(key), data, sig)
    with pytest.raises(ProtocolError) as caught:
        signing.verify(signing.public_key_b64(key), data + b" ", sig)
    assert caught.value.code == 2003


def test_key_survives_pem_round_trip() -> None:
    key = signing.generate_key()
    again = signing.load_private_key(signing.private_key_pem(key))
    assert signing.public_key_b64(again) == signing.public_key_b64(key)


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, 2001),
        ("   ", 2001),
        ("garbage", 2001),
        (f'agent="{AGENT}", alg="ed25519"', 2001),  # no sig
        (f'agent="{AGENT}", alg="ed25519", sig="@@@"', 2001),  # not base64
        (f'agent="{AGENT}", alg="rsa", sig="AAAA"', 2003),  # another algorithm
        (f'agent="{AGENT}", alg="ed25519", sig="AAAA"', 2003),  # parseable, cannot verify
    ],
)
def test_bad_headers_get_the_spec_code(header: str | None, code: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        signing.parse(header)
    assert caught.value.code == code
