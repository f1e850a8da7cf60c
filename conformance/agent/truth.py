"""Recordings and their truth: what an agent must report for each simulated printer.

A walks directory holds `<name>.snmprec` recordings, each with `<name>.truth.toml` beside it,
worked out by hand from the recording and the MIBs (the format of reference_agent/recordings):

    key = "sn:hp:cnb1k27391"        # the device key (MS-ID-2)
    vendor, serial, model, firmware # identity, each optional
    profiles = "standard hp"        # the snapshot's profiles attribute
    flags = ["lowToner"]            # detectedErrorState flags
    alert_codes = [1104, 8]         # prtAlertCode raw values, in any order
    errors = ["gen-err"]            # collectionError codes, in any order
    console = ["READY"]             # consoleLine, in order
    device_status, printer_status   # hrDeviceStatus / hrPrinterStatus names
    alert_descriptions = ["…"]      # prtAlertDescription as decoded (MS-DEV-7), in order
    [text] sys_descr, sys_name, location, contact   # decoded system group texts (MS-DEV-7)
    [[counter]] kind, oid, value, source, unit, label (optional: tells apart counters of one OID)
    [[supply]]  index, source, level, max, meaning, max_meaning, percent (optional string),
                description (optional, as decoded)
    [[tray]]    index, level, max, meaning, max_meaning

A counter's unit, when the truth file does not give it, is derived for Printer-MIB marker
counters from prtMarkerCounterUnit in the same recording (RFC 3805). An optional `variation/`
folder holds snmpsim variation modules the recordings use.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# PrtMarkerCounterUnitTC (RFC 3805) → the XSD's CounterUnit names.
COUNTER_UNITS = {
    3: "tenThousandthsOfInches",
    4: "micrometers",
    5: "characters",
    6: "lines",
    7: "impressions",
    8: "sheets",
    9: "dotRow",
    11: "hours",
    16: "feet",
    17: "meters",
}
MARKER_LIFE = "1.3.6.1.2.1.43.10.2.1.4."
MARKER_POWER_ON = "1.3.6.1.2.1.43.10.2.1.5."
MARKER_UNIT = "1.3.6.1.2.1.43.10.2.1.3."


@dataclass(frozen=True)
class Recording:
    name: str
    snmprec: Path
    truth: dict[str, Any]

    @property
    def key(self) -> str:
        return str(self.truth["key"])

    def counters(self) -> list[dict[str, Any]]:
        out = []
        units = marker_units(self.snmprec)
        for c in self.truth.get("counter", []):
            c = dict(c)
            if "unit" not in c:
                oid = str(c["oid"])
                for prefix in (MARKER_LIFE, MARKER_POWER_ON):
                    if oid.startswith(prefix):
                        unit = units.get(oid[len(prefix) :])
                        if unit:
                            c["unit"] = unit
            out.append(c)
        return out

    def supplies(self) -> list[dict[str, Any]]:
        return [dict(s) for s in self.truth.get("supply", [])]


def marker_units(snmprec: Path) -> dict[str, str]:
    """prtMarkerCounterUnit per marker instance ("1.1" → "impressions") as recorded."""
    out: dict[str, str] = {}
    for line in snmprec.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) == 3 and parts[0].startswith(MARKER_UNIT) and parts[1] == "2":
            try:
                unit = COUNTER_UNITS.get(int(parts[2]))
            except ValueError:
                continue
            if unit:
                out[parts[0][len(MARKER_UNIT) :]] = unit
    return out


def default_walks() -> Path:
    import metersync_agent

    return Path(metersync_agent.__file__).resolve().parent / "recordings"


def load(directory: Path | None = None) -> list[Recording]:
    d = directory or default_walks()
    out = []
    for rec in sorted(d.glob("*.snmprec")):
        truth = rec.with_suffix(".truth.toml")
        if truth.exists():
            out.append(Recording(rec.stem, rec, tomllib.loads(truth.read_text(encoding="utf-8"))))
    return out


def variation_dir(directory: Path | None = None) -> Path | None:
    d = (directory or default_walks()) / "variation"
    return d if d.is_dir() else None
