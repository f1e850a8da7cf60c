"""Device identity and counter sanity, without I/O.

The device key (device.xsd DeviceKey, MS-ID-2) is built from what survives an IP change::

    device_key("CNB1234567", [], "1.3.6.1.4.1.11.2.3.9.1", None, None) -> "sn:hp:cnb1234567"
    device_key(None, ["00:1b:a9:0b:a7:52"], None, None, None)        -> "mac:00:1b:a9:0b:a7:52"
    device_key(None, [], "1.3.6.1.4.1.11", "lab", "x")                -> "sys:1.3.6.1.4.1.11:<hash>"

`flag_decreased` marks counters lower than the last value sent for the same (kind, OID).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

from metersync_generated.v1.device import Counter, CounterAnomaly

__all__ = [
    "device_key",
    "flag_decreased",
    "format_mac",
    "is_junk_serial",
    "normalise_serial",
    "vendor_token",
    "previous_counters",
]

# Table 3-1 of the spec: IANA enterprise number of sysObjectID -> vendor token of the key.
# Every enterprise number a shipped profile matches has a token (tests/test_mapper.py checks).
VENDOR_TOKENS = {
    11: "hp", 236: "samsung", 253: "xerox", 297: "fujifilm", 367: "ricoh", 641: "lexmark",
    674: "dell", 683: "zebra", 1129: "toshiba", 1248: "epson", 1347: "kyocera", 1602: "canon",
    2001: "oki", 2385: "sharp", 2435: "brother", 10642: "zebra", 18334: "konicaminolta",
    40093: "pantum",
}  # fmt: skip
_JUNK_SERIALS = {
    "", "unknown", "none", "null", "n/a", "na", "default", "serial", "serialnumber",
    "<private>", "not available", "-", "?", "123456789", "1234567890",
}  # fmt: skip
_REPEATED = re.compile(r"^(.)\1*$")
_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._~-")
_MAX_KEY = 254


def vendor_token(sys_object_id: str | None) -> str:
    """The vendor part of an `sn:` key, from sysObjectID's enterprise number (spec 3.1)."""
    parts = (sys_object_id or "").split(".")
    if len(parts) < 7 or parts[:6] != ["1", "3", "6", "1", "4", "1"] or not parts[6].isdigit():
        return "unknown"
    number = int(parts[6])
    return VENDOR_TOKENS.get(number, f"ent{number}")


def normalise_serial(serial: str) -> str:
    """Trim, lower-case, drop white space, percent-encode anything outside a-z 0-9 . _ ~ -."""
    text = "".join(serial.strip().strip("\x00").strip().lower().split())
    return "".join(
        ch if ch in _KEEP else "".join(f"%{b:02x}" for b in ch.encode("utf-8")) for ch in text
    )


def is_junk_serial(serial: str | None) -> bool:
    """True for serials that identify nothing: empty, placeholders, one repeated character
    (all zeros, all 'x', all 'f', all '*'...)."""
    if serial is None:
        return True
    s = serial.strip().strip("\x00").strip().lower()
    if s in _JUNK_SERIALS:
        return True
    token = normalise_serial(s)
    return not token or bool(_REPEATED.match("".join(s.split())))


def format_mac(raw: bytes) -> str | None:
    """aa:bb:cc:dd:ee:ff for a usable MAC; None unless 6 octets, not all zeros or all ones,
    and not a group (multicast) address."""
    if len(raw) != 6 or raw in (b"\x00" * 6, b"\xff" * 6) or raw[0] & 1:
        return None
    return ":".join(f"{b:02x}" for b in raw)


def device_key(
    serial: str | None,
    macs: Iterable[str],
    sys_object_id: str | None,
    sys_name: str | None,
    hr_device_descr: str | None,
) -> str:
    """sn:vendor:serial, else mac:lowest-mac, else sys:sysObjectID:hash (spec 3.1, MS-ID-2)."""
    if serial and not is_junk_serial(serial):
        prefix = f"sn:{vendor_token(sys_object_id)}:"
        token = normalise_serial(serial)
        if len(prefix) + len(token) > _MAX_KEY:
            token = "h" + hashlib.sha256(token.encode()).hexdigest()
        return prefix + token
    macs = sorted(m for m in macs if m)
    if macs:
        return f"mac:{macs[0]}"
    digest = hashlib.sha256(
        f"{sys_name or ''}\x00{hr_device_descr or ''}".encode("utf-8", "replace")
    ).hexdigest()[:16]
    return f"sys:{sys_object_id or '0.0'}:{digest}"


def series_name(c: Counter) -> str:
    """A counter's series identity besides its OID (MS-BILL-1): kind, unit, source, label and
    marker. Two counters of one OID (a vendor's binary record) never share a baseline."""
    unit = c.unit.value if c.unit is not None else ""
    marker = "" if c.marker is None else str(c.marker)
    return "|".join((c.kind.value, unit, c.source or "", c.label or "", marker))


def previous_counters(counters: Iterable[Counter]) -> dict[tuple[str, str], int]:
    """The (series name, oid) -> value map of a snapshot's counters, for `flag_decreased`."""
    return {(series_name(c), c.oid): c.value for c in counters}


def flag_decreased(
    counters: Iterable[Counter], previous: Mapping[tuple[str, str], int]
) -> list[Counter]:
    """Mark every counter lower than its previous value (same series: `series_name` and OID)
    as decreased.

    The counters are changed in place and the marked ones returned. A counter never seen
    before, or equal or higher, is left alone: only the decrease is an anomaly.
    """
    flagged = []
    for c in counters:
        before = previous.get((series_name(c), c.oid))
        if before is not None and c.value < before:
            c.anomaly = CounterAnomaly.DECREASED
            c.previous = before
            flagged.append(c)
    return flagged


def unique_counters(counters: list[Counter]) -> tuple[list[Counter], list[Counter]]:
    """MS-BILL-2: the counters with distinct series identities, and the clashing rest (a
    second counter of the same identity: the same value read twice, or a profile fault)."""
    seen: set[tuple[str, str]] = set()
    kept, clashes = [], []
    for c in counters:
        ident = (series_name(c), c.oid)
        if ident in seen:
            clashes.append(c)
        else:
            seen.add(ident)
            kept.append(c)
    return kept, clashes
