"""Privacy masking (spec chapter 20): per-field keep, drop or hash, before the outbox.

    masking = Masking.load(settings.privacy, state_dir)   # the secret is made once, kept
    snap = masking.apply(snap)                            # a masked copy; the device key stays

A hash is HMAC-SHA-256 keyed with the agent's own secret (`privacy.key` in the state dir, 32
random bytes, mode 0600) over field name, NUL and the value, written in the element's own form:
an IPv6 unique local address for ipAddress, a locally administered MAC for macAddress, `h:` and
32 hex digits for text. The same value always gives the same hash in one agent's reports.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import metersync_generated.v1 as model

FIELDS = (
    "ipAddress",
    "macAddress",
    "hostname",
    "contact",
    "location",
    "consoleText",
    "alertDescription",
)
MODES = ("keep", "drop", "hash")
SECRET_FILE = "privacy.key"
SECRET_BYTES = 32
DROPPED_IP = "0.0.0.0"  # identity/ipAddress is required: drop writes the unspecified address
_ATTR = {  # Provisioning/privacy element -> generated attribute name
    "ipAddress": "ip_address",
    "macAddress": "mac_address",
    "hostname": "hostname",
    "contact": "contact",
    "location": "location",
    "consoleText": "console_text",
    "alertDescription": "alert_description",
}


def modes_from_provisioning(p: Any) -> dict[str, str]:
    """Provisioning/privacy -> {field: mode} of the fields not kept (empty: nothing masked)."""
    section = getattr(p, "privacy", None)
    if section is None:
        return {}
    out = {}
    for name, attr in _ATTR.items():
        mode = getattr(section, attr, None)
        value = getattr(mode, "value", mode)
        if value and value != "keep":
            out[name] = str(value)
    return out


def load_secret(state_dir: Path) -> bytes:
    """The agent's hashing secret: made once, kept across restarts and re-provisioning."""
    path = state_dir / SECRET_FILE
    try:
        data = path.read_bytes()
        if len(data) >= SECRET_BYTES:
            return data
    except FileNotFoundError:
        pass
    from metersync_agent.enrollment import write_atomic

    data = secrets.token_bytes(SECRET_BYTES)
    state_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, 0o600)
    return data


@dataclass(frozen=True)
class Masking:
    modes: Mapping[str, str]  # field -> drop | hash (kept fields are absent)
    secret: bytes = b""

    @classmethod
    def load(cls, modes: Mapping[str, str], state_dir: Path) -> Masking:
        needs_secret = "hash" in modes.values()
        return cls(dict(modes), load_secret(state_dir) if needs_secret else b"")

    def __bool__(self) -> bool:
        return bool(self.modes)

    def digest(self, name: str, value: str) -> bytes:
        msg = name.encode() + b"\x00" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self.secret, msg, hashlib.sha256).digest()

    def text(self, name: str, value: str) -> str:
        return "h:" + self.digest(name, value)[:16].hex()

    def ip(self, value: str) -> str:
        return str(ipaddress.IPv6Address(b"\xfd" + self.digest("ipAddress", value)[:15]))

    def mac(self, value: str) -> str:
        raw = bytearray(self.digest("macAddress", value)[:6])
        raw[0] = (raw[0] & 0xFE) | 0x02  # unicast, locally administered
        return ":".join(f"{b:02x}" for b in raw)

    def value(self, name: str, value: str | None) -> str | None:
        """The masked form of one value of `name` (None: left out)."""
        mode = self.modes.get(name, "keep")
        if value is None or mode == "keep":
            return value
        if mode == "drop":
            return None
        if name == "ipAddress":
            return self.ip(value)
        return self.mac(value) if name == "macAddress" else self.text(name, value)

    def apply(self, snap: model.DeviceSnapshot) -> model.DeviceSnapshot:
        """A masked copy of `snap` (itself when nothing is masked); `masked` lists the fields
        that had a value to mask (MS-PRIV-6); the device key and readings stay (MS-PRIV-5, 7)."""
        if not self.modes:
            return snap
        snap = copy.deepcopy(snap)
        done: list[str] = []

        def mark(name: str, had: bool) -> None:
            if had and name in self.modes and name not in done:
                done.append(name)

        ident = snap.identity
        mark("ipAddress", bool(ident.ip_address))
        ident.ip_address = self.value("ipAddress", ident.ip_address) or DROPPED_IP
        mark("macAddress", bool(ident.mac_address))
        masked_macs = [self.value("macAddress", m) for m in ident.mac_address]
        ident.mac_address = [m for m in masked_macs if m]
        for attr, name in (("hostname", "hostname"), ("sys_name", "hostname"),
                           ("contact", "contact"), ("location", "location")):  # fmt: skip
            current = getattr(ident, attr)
            mark(name, current is not None)
            setattr(ident, attr, self.value(name, current))
        if snap.status is not None:
            lines = snap.status.console_line
            mark("consoleText", bool(lines))
            snap.status.console_line = [v for v in (self.value("consoleText", s) for s in lines)
                                        if v is not None]  # fmt: skip
        for alert in snap.alert:
            mark("alertDescription", alert.description is not None)
            alert.description = self.value("alertDescription", alert.description)
        for trap in getattr(snap, "trap", []):
            for vb in trap.varbind:
                if vb.type_value.value in ("text", "hex") and "alertDescription" in self.modes:
                    mark("alertDescription", True)
                    vb.value = self.value("alertDescription", vb.value) or ""
                    vb.type_value = model.TrapValueType.MASKED
        order = {n: i for i, n in enumerate(FIELDS)}
        tokens = [f"{n}:{self.modes[n]}" for n in sorted(done, key=order.__getitem__)]
        snap.masked = tokens
        return snap
