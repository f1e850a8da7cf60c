"""Device identity and counter sanity, without I/O.

The device key (device.xsd DeviceKey, MS-ID-2) is built from what survives an IP change::

    device_key("HP", "CNB1234567", [], None, None, None)      -> "sn:hp:cnb1234567"
    device_key(None, None, ["00:1b:a9:0b:a7:52"], ...)       -> "mac:00:1b:a9:0b:a7:52"
    device_key(None, None, [], "1.3.6.1.4.1.11", "lab", "x")  -> "sys:1.3.6.1.4.1.11:<hash>"

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
    "normalise_token",
    "previous_counters",
]

_JUNK_SERIALS = {
    "", "unknown", "none", "null", "n/a", "na", "default", "serial", "serialnumber",
    "<private>", "not available", "notavailable", "-", "?",
}  # fmt: skip
_REPEATED = re.compile(r"^(.)\1*$")


def normalise_token(text: str) -> str:
    """Lower case, printable ASCII only, no whitespace (the DeviceKey alphabet is [!-~])."""
    return "".join(ch for ch in text.strip().lower() if "!" <= ch <= "~")


def is_junk_serial(serial: str | None) -> bool:
    """True for serials that identify nothing: empty, placeholders, one repeated character
    (all zeros, all 'x', all 'f', all '*'...)."""
    if serial is None:
        return True
    s = serial.strip().strip("\x00").strip().lower()
    if s in _JUNK_SERIALS:
        return True
    token = normalise_token(s)
    return not token or bool(_REPEATED.match(token))


def format_mac(raw: bytes) -> str | None:
    """aa:bb:cc:dd:ee:ff for a usable MAC; None if empty, zero, broadcast or not 6 octets."""
    if len(raw) != 6 or raw in (b"\x00" * 6, b"\xff" * 6):
        return None
    return ":".join(f"{b:02x}" for b in raw)


def device_key(
    vendor: str | None,
    serial: str | None,
    macs: Iterable[str],
    sys_object_id: str | None,
    sys_name: str | None,
    hr_device_descr: str | None,
) -> str:
    """sn:vendor:serial, else mac:lowest-mac, else sys:sysObjectID:hash(sysName, hrDeviceDescr)."""
    if serial and not is_junk_serial(serial):
        key = f"sn:{normalise_token(vendor or 'unknown') or 'unknown'}:{normalise_token(serial)}"
        return key[:253]
    macs = sorted(m for m in macs if m)
    if macs:
        return f"mac:{macs[0]}"
    digest = hashlib.sha256(
        f"{sys_name or ''}\x00{hr_device_descr or ''}".encode("utf-8", "replace")
    ).hexdigest()[:16]
    soid = normalise_token(sys_object_id or "") or "0.0"
    return f"sys:{soid[:200]}:{digest}"


def previous_counters(counters: Iterable[Counter]) -> dict[tuple[str, str], int]:
    """The (kind, oid) -> value map of a snapshot's counters, to feed the next `flag_decreased`."""
    return {(c.kind.value, c.oid): c.value for c in counters}


def flag_decreased(
    counters: Iterable[Counter], previous: Mapping[tuple[str, str], int]
) -> list[Counter]:
    """Mark every counter lower than its previous value (same kind and OID) as decreased.

    The counters are changed in place and the marked ones returned. A counter never seen
    before, or equal or higher, is left alone: only the decrease is an anomaly.
    """
    flagged = []
    for c in counters:
        before = previous.get((c.kind.value, c.oid))
        if before is not None and c.value < before:
            c.anomaly = CounterAnomaly.DECREASED
            c.previous = before
            flagged.append(c)
    return flagged
