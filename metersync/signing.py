"""Message signatures (MS-SEC-4, MS-SEC-10..13): Ed25519 over the exact bytes of a document.

The same detached signature travels in the HTTP header `MeterSync-Signature` and in the SMTP
part `report.xml.sig`, so a manager verifies a report the same way whichever way it came:

    MeterSync-Signature: agent="<agentId>", alg="ed25519", sig="<base64 of 64 bytes>"
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from metersync.errors import ProtocolError

HEADER = "MeterSync-Signature"
ALGORITHM = "ed25519"
_PARAM = re.compile(r'\s*([a-z]+)="([^"]*)"\s*(?:,|$)')


@dataclass(frozen=True)
class Signature:
    agent_id: str
    algorithm: str
    value: bytes


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the key file does not hold an Ed25519 private key")
    return key


def public_key_b64(key: Ed25519PrivateKey) -> str:
    """The raw 32-byte public key in base64, as the Enrollment's publicKey carries it."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def sign(key: Ed25519PrivateKey, data: bytes, agent_id: str) -> str:
    """The signature header value for `data`, exactly as sent."""
    sig = base64.b64encode(key.sign(data)).decode("ascii")
    return f'agent="{agent_id}", alg="{ALGORITHM}", sig="{sig}"'


def header_of(headers: Any) -> str | None:
    """The signature header of a request as one field: two fields are joined by commas (RFC
    9110 section 5.3), so that a repeated parameter is refused (spec Table 8-4, MS-SEC-19)."""
    fields = headers.getlist(HEADER) if hasattr(headers, "getlist") else [headers.get(HEADER)]
    fields = [f for f in fields if f is not None]
    return ", ".join(fields) if fields else None


def parse(header: str | None) -> Signature:
    """Parse a signature header value; refuse a missing or unparseable one, or one repeating
    a parameter, with 2001 and an algorithm other than ed25519 with 2003 (MS-SEC-10, MS-SEC-12,
    MS-SEC-19)."""
    if not header or not header.strip():
        raise ProtocolError("SIGNATURE_MISSING", f"the {HEADER} header is missing or empty")
    params: dict[str, str] = {}
    pos = 0
    text = header.strip()
    while pos < len(text):
        m = _PARAM.match(text, pos)
        if not m:
            raise ProtocolError(
                "SIGNATURE_MISSING", f"cannot parse {HEADER} near {text[pos : pos + 20]!r}"
            )
        if m.group(1) in params:  # MS-SEC-19: one reading of the header, for every reader
            raise ProtocolError("SIGNATURE_MISSING", f"{HEADER} repeats {m.group(1)}")
        params[m.group(1)] = m.group(2)
        pos = m.end()
    missing = [p for p in ("agent", "alg", "sig") if p not in params]
    if missing:
        raise ProtocolError("SIGNATURE_MISSING", f"{HEADER} lacks {', '.join(missing)}")
    if params["alg"] != ALGORITHM:
        raise ProtocolError("BAD_SIGNATURE", f"unsupported signature algorithm {params['alg']!r}")
    try:
        value = base64.b64decode(params["sig"], validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("SIGNATURE_MISSING", "the signature is not valid base64") from None
    if len(value) != 64:
        raise ProtocolError("BAD_SIGNATURE", f"an Ed25519 signature has 64 bytes, not {len(value)}")
    return Signature(agent_id=params["agent"], algorithm=params["alg"], value=value)


def verify(public_key: str, data: bytes, signature: Signature) -> None:
    """Refuse with BAD_SIGNATURE unless `signature` is valid for `data` under `public_key`."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(signature.value, data)
    except (InvalidSignature, ValueError, binascii.Error):
        raise ProtocolError(
            "BAD_SIGNATURE", "the signature does not verify over the exact bytes received"
        ) from None


# --- requests without a body (section 10.3) -------------------------------------------------

DATE_HEADER = "MeterSync-Date"


def format_date(when: float) -> str:
    """`MeterSync-Date` for epoch seconds `when`: RFC 3339 UTC with milliseconds, so that two
    requests in the same second carry different signed bytes (MS-CH-20)."""
    import datetime as dt

    t = dt.datetime.fromtimestamp(when, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def bodyless_bytes(method: str, path: str, date: str) -> bytes:
    """The signed bytes of a request without body: `<METHOD> <path> <MeterSync-Date>`."""
    return f"{method.upper()} {path} {date}".encode("ascii", "replace")


def parse_date(value: str | None) -> float:
    """A `MeterSync-Date` value → epoch seconds; refused with 2001 when missing or unreadable
    (the signature cannot be checked without it)."""
    import datetime as dt

    text = (value or "").strip()
    if not text:
        raise ProtocolError("SIGNATURE_MISSING", f"the {DATE_HEADER} header is missing")
    try:
        when = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ProtocolError(
            "SIGNATURE_MISSING", f"{DATE_HEADER} {text[:40]!r} is not an RFC 3339 date-time"
        ) from None
    if when.tzinfo is None or "T" not in text.upper():
        raise ProtocolError("SIGNATURE_MISSING", f"{DATE_HEADER} needs a date, time and zone")
    return when.timestamp()
