"""OID values -> DeviceSnapshot, driven by profiles; no I/O.

`map_snapshot(values, profiles, ...)` takes what was read (`{oid tuple: int | bytes | str}`)
and the chosen profiles (standard first) and builds the generated `DeviceSnapshot`. Nothing a
device sends makes it raise: a value of the wrong type, a NULL that never arrived, a corrupt
binary record each become a `collectionError` (decode-error) and the rest is still mapped.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from xsdata.models.datatype import XmlDateTime

from metersync_generated.v1.device import (
    Alert,
    AlertCode,
    AlertGroup,
    AlertSeverity,
    AlertTrainingLevel,
    CollectionError,
    CollectionErrorCode,
    Counter,
    CounterKind,
    CounterUnit,
    Cover,
    CoverStatus,
    DetectedErrorState,
    DeviceIdentity,
    DeviceSnapshot,
    DeviceStatus,
    DeviceStatusInfo,
    ErrorStateFlag,
    InputTray,
    InputType,
    OutputTray,
    OutputType,
    PrinterStatus,
    RawAlertGroup,
    RawAlertSeverity,
    RawAlertTrainingLevel,
    RawCoverStatus,
    RawDeviceStatus,
    RawInputType,
    RawLevel,
    RawMeaning,
    RawOutputType,
    RawPrinterStatus,
    RawSupplyClass,
    RawSupplyType,
    RawSupplyUnit,
    SnmpVersion,
    Supply,
    SupplyClass,
    SupplyType,
    SupplyUnit,
)

from .identity import device_key, format_mac, is_junk_serial, unique_counters
from .profiles import SUPPLY_SCALES, BinarySpec, Oid, Profile, ValueSource

__all__ = [
    "decode_binary_records",
    "decode_error_state",
    "map_snapshot",
    "oid_text",
    "percent_of",
    "raw_meaning",
]

SnmpValue = int | bytes | str
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_SHORT, _TEXT = 255, 1024
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_U64 = 2**64


def oid_text(oid: Oid) -> str:
    return ".".join(map(str, oid))


# --- pure decoding rules ------------------------------------------------------------------


def raw_meaning(raw: int, *, level: bool) -> RawMeaning:
    """Printer-MIB meaning of a level or capacity: -1 other, -2 unknown, -3 someRemaining
    (levels only); any other negative number is invalid."""
    if raw >= 0:
        return RawMeaning.EXACT
    if raw == -1:
        return RawMeaning.OTHER
    if raw == -2:
        return RawMeaning.UNKNOWN
    if raw == -3 and level:
        return RawMeaning.SOME_REMAINING
    return RawMeaning.INVALID


def percent_of(level: int, maximum: int) -> Decimal | None:
    """level/max as a percentage with two decimals, only where defined (MS-DEV-17): both exact,
    capacity above zero, level not above capacity. Never clipped, never invented."""
    if level < 0 or maximum <= 0 or level > maximum:
        return None
    return (Decimal(level) * 100 / Decimal(maximum)).quantize(Decimal("0.01"), ROUND_HALF_UP)


def decode_error_state(raw: bytes, names: Mapping[int, str]) -> list[str]:
    """hrPrinterDetectedErrorState: the names of the set bits, bit 0 = MSB of the first octet
    (RFC 2790 / RFC 3805 2.2.13.4). Set bits without a name are kept only in the raw octets."""
    flags = []
    for i, octet in enumerate(raw):
        for b in range(8):
            if octet & (0x80 >> b) and (i * 8 + b) in names:
                flags.append(names[i * 8 + b])
    return flags


def decode_binary_records(raw: bytes) -> tuple[list[tuple[int, bytes]], str | None]:
    """Brother maintenance records: <code> 0x01 <length> <value>..., ended by 0xFF.

    Returns the (code, value) entries read and an error message if the data broke off or
    did not follow the layout (the entries before the fault are kept)."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(raw):
        code = raw[i]
        if code == 0xFF and i == len(raw) - 1:
            return out, None
        if i + 3 > len(raw):
            return out, f"record truncated at byte {i}"
        if raw[i + 1] != 0x01:
            return out, f"unexpected byte 0x{raw[i + 1]:02x} at {i + 1} (want 0x01)"
        length = raw[i + 2]
        if length == 0 or i + 3 + length > len(raw):
            return out, f"entry 0x{code:02x} at byte {i}: length {length} runs past the end"
        out.append((code, raw[i + 3 : i + 3 + length]))
        i += 3 + length
    return out, None if not raw else "no 0xFF end marker"


def _clean(text: str, limit: int) -> str:
    return _XML_BAD.sub("", text).strip()[:limit]


def _decode_bytes(raw: bytes, codec: str | None = None) -> str:
    raw = raw.rstrip(b"\x00")
    if codec:
        try:
            return raw.decode(codec)
        except (UnicodeDecodeError, LookupError):
            pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# --- reading values with type checks --------------------------------------------------------


@dataclass
class _Reader:
    values: Mapping[Oid, SnmpValue]
    errors: list[CollectionError] = field(default_factory=list)
    _reported: set[Oid] = field(default_factory=set)
    codec: str | None = None

    def error(self, oid: Oid | None, code: CollectionErrorCode, message: str) -> None:
        if oid is not None:
            if oid in self._reported:
                return
            self._reported.add(oid)
        self.errors.append(
            CollectionError(
                oid=oid_text(oid) if oid else None, code=code, message=_clean(message, _TEXT)
            )
        )

    def _typed(self, oid: Oid, want: type, what: str) -> SnmpValue | None:
        v = self.values.get(oid)
        if v is None:
            return None
        if isinstance(v, want) and not isinstance(v, bool):
            return v
        self.error(
            oid,
            CollectionErrorCode.DECODE_ERROR,
            f"expected {what}, got {type(v).__name__} {v!r:.60}",
        )
        return None

    def int(self, oid: Oid) -> int | None:
        v = self._typed(oid, int, "an integer")
        return v if isinstance(v, int) else None

    def octets(self, oid: Oid) -> bytes | None:
        v = self._typed(oid, bytes, "an octet string")
        return v if isinstance(v, bytes) else None

    def oid(self, oid: Oid) -> str | None:
        v = self._typed(oid, str, "an object identifier")
        return v if isinstance(v, str) else None

    def text(self, oid: Oid, limit: int = _SHORT, codec: str | None = None) -> str | None:
        raw = self.octets(oid)
        if raw is None:
            return None
        return _clean(_decode_bytes(raw, codec or self.codec), limit)

    def column(self, entry: Oid, col: int) -> dict[Oid, Oid]:
        """{row index: full OID} of one table column, in OID order."""
        prefix = (*entry, col)
        n = len(prefix)
        return {k[n:]: k for k in sorted(self.values) if k[:n] == prefix and len(k) > n}

    def under(self, prefix: Oid) -> dict[Oid, Oid]:
        n = len(prefix)
        return {k[n:]: k for k in sorted(self.values) if k[:n] == prefix and len(k) > n}


def _enum(cls: type, name: str):  # a generated Enum member by its XML value
    try:
        return cls(name)
    except ValueError:
        return cls("unrecognised")


# --- the mapping ------------------------------------------------------------------------------


@dataclass
class _Device:
    std: Profile
    vendors: list[Profile]
    r: _Reader
    printer_index: int | None = None


def _source_value(d: _Device, src: ValueSource, sys_descr: str) -> str | None:
    if src.sys_descr is not None:
        m = src.sys_descr.search(sys_descr)
        return _clean(m.group(1) if m.groups() else m.group(0), _SHORT) if m else None
    assert src.oid is not None
    oid = src.oid
    if src.table:
        rows = d.r.under(oid)
        if not rows:
            return None
        key = (d.printer_index,) if d.printer_index is not None else None
        oid = rows.get(key, next(iter(rows.values()))) if key else next(iter(rows.values()))
    raw = d.r.octets(oid)
    if raw is None:
        return None
    if src.decode == "pml" and len(raw) >= 2 and raw[0] == 0x01:
        raw = raw[2:]  # HP PML strings: symbol-set prefix 0x01 0xNN
    text = _decode_bytes(raw, d.r.codec if src.decode == "charset" else None)
    text = _clean(text, _TEXT)
    if src.regex is not None:
        m = src.regex.search(text)
        if not m:
            return None
        text = _clean(m.group(1) if m.groups() else m.group(0), _SHORT)
    return text or None


def _first(d: _Device, sources: Iterable[ValueSource], sys_descr: str, junk=None) -> str | None:
    for src in sources:
        v = _source_value(d, src, sys_descr)
        if v and not (junk and junk(v)):
            return v[:_SHORT]
    return None


def _table(d: _Device, name: str) -> tuple[Oid, Mapping[str, int]]:
    t = d.std.tables[name]
    return t["entry"], t["columns"]


def _printer_index(d: _Device) -> int | None:
    entry, cols = _table(d, "hr_device")
    printer_type = oid_text(d.std.system["printer_device_type"])
    for idx, oid in d.r.column(entry, cols["type"]).items():
        if len(idx) == 1 and d.r.oid(oid) == printer_type:
            return idx[0]
    return None


def _identity(d: _Device, ip_address: str, port: int | None, hostname: str | None):
    sys = d.std.system
    r = d.r
    descr = r.text(sys["descr"], _TEXT) or ""
    soid = r.oid(sys["object_id"])
    uptime = r.int(sys["uptime"])
    macs = []
    for oid in r.under(sys["if_phys_address"]).values():
        raw = r.octets(oid)
        mac = format_mac(raw) if raw else None
        if mac and mac not in macs:
            macs.append(mac)
    macs.sort()
    entry, cols = _table(d, "hr_device")
    hr_descr = None
    if d.printer_index is not None:
        hr_descr = r.text((*entry, cols["descr"], d.printer_index))
    else:  # a single-function device (a scanner) with one hrDevice row: that row names it
        rows = [i for i in r.column(entry, cols["descr"]) if len(i) == 1]
        if len(rows) == 1:
            hr_descr = r.text((*entry, cols["descr"], *rows[0]))
    vendor = next((p.vendor for p in d.vendors if p.vendor), None)
    if vendor is None and soid and soid.startswith("1.3.6.1.4.1."):
        vendor = d.std.vendors.get(int(soid.split(".")[6]))
    soid_parts = tuple(int(x) for x in soid.split(".")) if soid and _OID.fullmatch(soid) else None
    # the key's serial: prtGeneralSerialNumber, else the Table 3-2 row of sysObjectID's
    # enterprise (spec 3.1); a serial from a profile matched otherwise (a probe) is reported only
    owned = (s for p in d.vendors if p.owns(soid_parts) for s in p.serial)
    key_serial = _first(d, [*d.std.serial, *owned], descr, is_junk_serial)
    serial = key_serial or _first(
        d, (s for p in d.vendors for s in p.serial), descr, is_junk_serial
    )
    model = _first(d, (s for p in d.vendors for s in p.model), descr) or hr_descr
    firmware = _first(d, (s for p in d.vendors for s in p.firmware), descr)
    sys_name = r.text(sys["name"])
    key = device_key(key_serial, macs, soid, sys_name, hr_descr)
    return DeviceIdentity(
        device_key=key,
        vendor=vendor,
        model=model,
        serial_number=serial,
        mac_address=macs[:16],
        ip_address=ip_address,
        port=port,
        hostname=hostname,
        sys_object_id=soid if soid and _OID.fullmatch(soid) else None,
        sys_descr=descr or None,
        sys_name=sys_name,
        firmware=firmware,
        location=r.text(sys["location"]),
        contact=r.text(sys["contact"]),
        uptime=uptime if uptime is not None and 0 <= uptime < 2**32 else None,
    )


def _status(d: _Device) -> DeviceStatusInfo | None:
    r, std = d.r, d.std
    info = DeviceStatusInfo()
    idx = d.printer_index
    entry, cols = _table(d, "hr_device")
    pentry, pcols = _table(d, "hr_printer")
    if idx is None:  # no hrDevicePrinter row: fall back to the first hrPrinterTable row
        rows = [*r.column(pentry, pcols["status"]), *r.column(pentry, pcols["error_state"])]
        idx = min((i[0] for i in rows if len(i) == 1), default=None)
    if idx is not None:
        raw = r.int((*entry, cols["status"], idx))
        if raw is not None:
            info.device_status = RawDeviceStatus(
                value=_enum(DeviceStatus, std.enum("device_status", raw)), raw=raw
            )
        raw = r.int((*pentry, pcols["status"], idx))
        if raw is not None:
            info.printer_status = RawPrinterStatus(
                value=_enum(PrinterStatus, std.enum("printer_status", raw)), raw=raw
            )
        bits = r.octets((*pentry, pcols["error_state"], idx))
        if bits is not None:
            names = decode_error_state(bits[:8], std.enums.get("error_state", {}))
            info.detected_error_state = DetectedErrorState(
                flag=[ErrorStateFlag(n) for n in names][:16], raw=bits[:64]
            )
    lines = []
    for oid in r.under(std.system["console_text"]).values():
        text = r.text(oid, _TEXT)
        if text:
            lines.append(text)
    if not lines:  # a vendor panel text, where the Printer-MIB console is missing
        for p in d.vendors:
            for src in p.console:
                text = _source_value(d, src, "")
                if text:
                    lines += [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    info.console_line = lines[:64]
    if not (info.device_status or info.printer_status or info.detected_error_state or lines):
        return None
    return info


def _counter_value(d: _Device, oid: Oid, scale: int = 1) -> int | None:
    v = d.r.int(oid)
    if v is None:
        return None
    if v < 0 or v * scale >= _U64:
        d.r.error(oid, CollectionErrorCode.DECODE_ERROR, f"counter value {v} out of range")
        return None
    return v * scale


def _std_counters(d: _Device) -> list[Counter]:
    t = d.std.tables["marker"]
    entry, cols = t["entry"], t["columns"]
    out = []
    for col_name, kind in t.get("counters", {}).items():
        for idx, oid in d.r.column(entry, cols[col_name]).items():
            value = _counter_value(d, oid)
            if value is None:
                continue
            unit_raw = d.r.int((*entry, cols["counter_unit"], *idx))
            unit = d.std.enum("counter_unit", unit_raw) if unit_raw is not None else "unrecognised"
            out.append(
                Counter(
                    value=value,
                    kind=CounterKind(kind),
                    unit=_enum(CounterUnit, unit),
                    oid=oid_text(oid),
                    source=d.std.name,
                    marker=idx[-1] if idx and 0 <= idx[-1] < 2**32 else None,
                )
            )
    return out


def _vendor_counters(d: _Device, p: Profile) -> list[Counter]:
    out = []
    for c in p.counters:
        value = _counter_value(d, c.oid, c.scale)
        if value is not None:
            out.append(
                Counter(
                    value=value,
                    kind=CounterKind(c.kind),
                    unit=_enum(CounterUnit, c.unit),
                    oid=oid_text(c.oid),
                    source=p.name,
                    label=c.label,
                )
            )
    for t in p.counter_tables:
        for idx, oid in d.r.under(t.values).items():
            if t.type_column is not None:
                type_raw = d.r.int((*t.type_column, *idx))
                if type_raw is None:
                    continue
                key = str(type_raw)
            else:
                key = oid_text(idx)
            kind = t.types.get(key) or t.unlisted
            if kind is None:
                continue
            value = _counter_value(d, oid)
            if value is None:
                continue
            label = t.labels.get(key)
            if label is None and t.label_column is not None:
                label = d.r.text((*t.label_column, *idx))
            out.append(
                Counter(
                    value=value,
                    kind=CounterKind(kind),
                    unit=_enum(CounterUnit, t.unit),
                    oid=oid_text(oid),
                    source=p.name,
                    label=label or f"{p.name} {key}",
                )
            )
    return out


def _level(raw: int, oid: Oid | None, *, level: bool) -> RawLevel:
    return RawLevel(
        raw=raw, meaning=raw_meaning(raw, level=level), oid=oid_text(oid) if oid else None
    )


def _int32(d: _Device, oid: Oid) -> int | None:
    v = d.r.int(oid)
    if v is not None and not -(2**31) <= v < 2**31:
        d.r.error(oid, CollectionErrorCode.DECODE_ERROR, f"{v} is not an Integer32")
        return None
    return v


def _std_supplies(d: _Device) -> list[Supply]:
    entry, cols = _table(d, "supplies")
    centry, ccols = _table(d, "colorant")
    rows: dict[Oid, None] = {}
    for name in ("type", "description", "max", "level"):
        rows.update(dict.fromkeys(d.r.column(entry, cols[name])))
    out = []
    untyped = []
    for idx in sorted(rows):
        level_oid, max_oid = (*entry, cols["level"], *idx), (*entry, cols["max"], *idx)
        level, maximum = _int32(d, level_oid), _int32(d, max_oid)
        if level is None or maximum is None:
            what = "level" if level is None else "max capacity"
            d.r.error(
                level_oid if level is None else max_oid,
                CollectionErrorCode.NO_SUCH_OBJECT,
                f"supply {oid_text(idx)} has no usable {what}",
            )
            continue
        type_raw = d.r.int((*entry, cols["type"], *idx))
        if type_raw is None:
            untyped.append(oid_text(idx))
        s = Supply(
            index=idx[-1],
            source=d.std.name,
            type_value=RawSupplyType(
                value=_enum(SupplyType, d.std.enum("supply_type", type_raw))
                if type_raw is not None
                else SupplyType.UNKNOWN,
                raw=type_raw if type_raw is not None else 0,
            ),
            level=_level(level, level_oid, level=True),
            max_capacity=_level(maximum, max_oid, level=False),
        )
        cls_raw = d.r.int((*entry, cols["class"], *idx))
        if cls_raw is not None:
            s.supply_class = RawSupplyClass(
                value=_enum(SupplyClass, d.std.enum("supply_class", cls_raw)), raw=cls_raw
            )
        unit_raw = d.r.int((*entry, cols["unit"], *idx))
        if unit_raw is not None:
            s.unit = RawSupplyUnit(
                value=_enum(SupplyUnit, d.std.enum("supply_unit", unit_raw)), raw=unit_raw
            )
        s.description = d.r.text((*entry, cols["description"], *idx), _TEXT) or None
        if s.description:
            for p in d.vendors:
                for pattern in p.supply_text:
                    m = pattern.search(s.description)
                    if m:
                        found = {
                            k: _clean(v, _SHORT)
                            for k, v in m.groupdict().items()
                            if v and not is_junk_serial(v)
                        }
                        s.part_number = s.part_number or found.get("part")
                        s.serial_number = s.serial_number or found.get("serial")
        marker = d.r.int((*entry, cols["marker"], *idx))
        s.marker = marker if marker is not None and 0 <= marker < 2**32 else None
        colorant = d.r.int((*entry, cols["colorant"], *idx))
        if colorant and len(idx) == 2:
            s.colour = d.r.text((*centry, ccols["value"], idx[0], colorant)) or None
        _finish_supply(d, s, level_oid)
        out.append(s)
    if untyped:
        d.r.error(
            (*entry, cols["type"]),
            CollectionErrorCode.NO_SUCH_OBJECT,
            f"prtMarkerSuppliesType missing for supplies {', '.join(untyped[:20])}: type unknown",
        )
    return out


def _finish_supply(d: _Device, s: Supply, level_oid: Oid | None) -> None:
    level, maximum = s.level.raw, s.max_capacity.raw
    if s.level.meaning == RawMeaning.EXACT and s.max_capacity.meaning == RawMeaning.EXACT:
        if maximum > 0 and level > maximum:
            d.r.error(
                level_oid,
                CollectionErrorCode.INCONSISTENT,
                f"supply {s.index}: level {level} above max capacity {maximum}; no percentage",
            )
        else:
            s.percent = percent_of(level, maximum)


def _vendor_supplies(d: _Device, p: Profile) -> list[Supply]:
    """A profile's [[supply]] entries: level and max capacity as read (Table 4-2 meanings)."""
    out = []
    for spec in p.supplies:
        level = _int32(d, spec.level)
        maximum = _int32(d, spec.max_oid) if spec.max_oid else spec.max_value
        if level is None or maximum is None:
            continue
        s = Supply(
            index=spec.index,
            source=p.name,
            type_value=RawSupplyType(value=_enum(SupplyType, spec.type), raw=0),
            colour=spec.colour,
            description=spec.description,
            level=_level(level, spec.level, level=True),
            max_capacity=_level(maximum, spec.max_oid, level=False),
        )
        if spec.unit:
            raw = next((k for k, v in d.std.enums["supply_unit"].items() if v == spec.unit), 0)
            s.unit = RawSupplyUnit(value=_enum(SupplyUnit, spec.unit), raw=raw)
        _finish_supply(d, s, spec.level)
        out.append(s)
    return out


def _binary_parts(d: _Device, p: Profile, b: BinarySpec) -> tuple[list[Counter], list[Supply]]:
    counters: list[Counter] = []
    supplies: list[Supply] = []
    raw = d.r.octets(b.oid)
    if not raw:
        return counters, supplies
    entries, problem = decode_binary_records(raw)
    if problem:
        d.r.error(b.oid, CollectionErrorCode.DECODE_ERROR, f"{p.name} {b.label}: {problem}")
    for code, value in entries:
        rec = b.records.get(code)
        if rec is None:
            continue
        if rec.scale == "ratio" and rec.supply:
            if len(value) != 2:
                d.r.error(
                    b.oid,
                    CollectionErrorCode.DECODE_ERROR,
                    f"entry 0x{code:02x}: {len(value)} bytes, want 2",
                )
                continue
            level, maximum = value[0], value[1]
        elif len(value) != 4:
            d.r.error(
                b.oid,
                CollectionErrorCode.DECODE_ERROR,
                f"entry 0x{code:02x}: {len(value)} bytes, want 4",
            )
            continue
        else:
            level = int.from_bytes(value, "big")
            cap = SUPPLY_SCALES[rec.scale]
            maximum = cap if cap is not None else -2  # capacity not reported: unknown
        if rec.counter:
            counters.append(
                Counter(
                    value=level,
                    kind=CounterKind(rec.counter),
                    unit=CounterUnit.IMPRESSIONS,
                    oid=oid_text(b.oid),
                    source=p.name,
                    label=rec.label,
                )
            )
            continue
        if level >= 2**31:
            d.r.error(
                b.oid, CollectionErrorCode.DECODE_ERROR, f"entry 0x{code:02x}: {level} too large"
            )
            continue
        s = Supply(
            index=b.index_base + code,
            source=p.name,
            type_value=RawSupplyType(value=_enum(SupplyType, rec.supply or "other"), raw=0),
            colour=rec.colour,
            description=rec.description,
            level=_level(level, b.oid, level=True),
            max_capacity=_level(maximum, None, level=False),
        )
        if rec.scale == "pages":
            s.unit = RawSupplyUnit(value=SupplyUnit.IMPRESSIONS, raw=7)
        _finish_supply(d, s, b.oid)
        supplies.append(s)
    return counters, supplies


def _input_trays(d: _Device) -> list[InputTray]:
    entry, cols = _table(d, "input")
    out = []
    rows = {}
    for name in ("type", "max", "level", "name", "description"):
        rows.update({idx: None for idx in d.r.column(entry, cols[name])})
    for idx in sorted(rows):
        t = InputTray(index=idx[-1])
        type_raw = d.r.int((*entry, cols["type"], *idx))
        if type_raw is not None:
            t.type_value = RawInputType(
                value=_enum(InputType, d.std.enum("input_type", type_raw)), raw=type_raw
            )
        t.media_name = d.r.text((*entry, cols["media_name"], *idx)) or None
        t.media_dim_feed = _int32(d, (*entry, cols["dim_feed"], *idx))
        t.media_dim_xfeed = _int32(d, (*entry, cols["dim_xfeed"], *idx))
        _bin_fields(d, t, entry, cols, idx, "level")
        out.append(t)
    return out


def _bin_fields(d: _Device, t: Any, entry: Oid, cols: Mapping[str, int], idx: Oid, level: str):
    """name, description, status and the raw max/level pair of an input or output row."""
    t.name = d.r.text((*entry, cols["name"], *idx)) or None
    t.description = d.r.text((*entry, cols["description"], *idx), _TEXT) or None
    for attr, col, is_level in (("max_capacity", "max", False), (level, level, True)):
        oid = (*entry, cols[col], *idx)
        v = _int32(d, oid)
        if v is not None:
            setattr(t, attr, _level(v, oid, level=is_level))
    t.status = _int32(d, (*entry, cols["status"], *idx))


def _output_trays(d: _Device) -> list[OutputTray]:
    """prtOutputTable rows (MS-DEV-32): capacities raw with their meanings, no percentage."""
    entry, cols = _table(d, "output")
    rows: dict[Oid, None] = {}
    for name in ("type", "max", "remaining_capacity", "name"):
        rows.update(dict.fromkeys(d.r.column(entry, cols[name])))
    out = []
    for idx in sorted(rows):
        t = OutputTray(index=idx[-1])
        type_raw = d.r.int((*entry, cols["type"], *idx))
        if type_raw is not None:
            name = d.std.enum("output_type", type_raw)
            t.type_value = RawOutputType(value=_enum(OutputType, name), raw=type_raw)
        _bin_fields(d, t, entry, cols, idx, "remaining_capacity")
        out.append(t)
    return out


def _covers(d: _Device) -> list[Cover]:
    """prtCoverTable rows (MS-DEV-33): open or closed, by name with the raw number."""
    entry, cols = _table(d, "cover")
    out = []
    for idx, oid in d.r.column(entry, cols["status"]).items():
        raw = _int32(d, oid)
        if raw is None:
            continue
        status = RawCoverStatus(value=_enum(CoverStatus, d.std.enum("cover_status", raw)), raw=raw)
        text = d.r.text((*entry, cols["description"], *idx), _TEXT) or None
        out.append(Cover(index=idx[-1], description=text, status=status))
    return out


def _alerts(d: _Device) -> list[Alert]:
    entry, cols = _table(d, "alert")
    std = d.std
    out = []
    for idx, code_oid in d.r.column(entry, cols["code"]).items():
        code = _int32(d, code_oid)
        sev = _int32(d, (*entry, cols["severity"], *idx))
        if code is None or sev is None:
            continue
        a = Alert(
            index=idx[-1],
            severity=RawAlertSeverity(
                value=_enum(AlertSeverity, std.enum("alert_severity", sev)), raw=sev
            ),
            code=AlertCode(value=std.enum("alert_code", code), raw=code),
        )
        tl = _int32(d, (*entry, cols["training"], *idx))
        if tl is not None:
            a.training_level = RawAlertTrainingLevel(
                value=_enum(AlertTrainingLevel, std.enum("alert_training", tl)), raw=tl
            )
        grp = _int32(d, (*entry, cols["group"], *idx))
        if grp is not None:
            a.group = RawAlertGroup(value=_enum(AlertGroup, std.enum("alert_group", grp)), raw=grp)
        a.group_index = _int32(d, (*entry, cols["group_index"], *idx))
        a.location = _int32(d, (*entry, cols["location"], *idx))
        a.description = d.r.text((*entry, cols["description"], *idx), _TEXT) or None
        t = d.r.int((*entry, cols["time"], *idx))
        a.time = t if t is not None and 0 <= t < 2**32 else None
        out.append(a)
    return out


def _charset(d: _Device) -> str | None:
    for oid in d.r.under(d.std.system["charset"]).values():
        mib_enum = d.r.int(oid)
        name = d.std.enums.get("charset", {}).get(mib_enum or -1)
        if name:
            try:
                codecs.lookup(name)
                return name
            except LookupError:
                return None
    return None


def map_snapshot(
    values: Mapping[Oid, SnmpValue],
    profiles: Iterable[Profile],
    *,
    ip_address: str,
    port: int | None = None,
    hostname: str | None = None,
    polled_at: datetime | None = None,
    duration_ms: int | None = None,
    snmp_version: str | None = None,
    problems: Iterable[tuple[str | None, str, str]] = (),
) -> DeviceSnapshot:
    """Build the snapshot of one device from the values read and the profiles that apply.

    `problems` are (oid, code, message) triples from collection (codes of CollectionErrorCode;
    anything else becomes "other"); they are reported first, then those met while mapping.
    """
    profiles = list(profiles)
    std = next(p for p in profiles if p.name == "standard")
    vendors = [p for p in profiles if p is not std]
    r = _Reader(values)
    d = _Device(std, vendors, r)
    for oid, code, message in problems:
        try:
            ecode = CollectionErrorCode(code)
        except ValueError:
            ecode = CollectionErrorCode.OTHER
        r.errors.append(
            CollectionError(oid=oid or None, code=ecode, message=_clean(message, _TEXT))
        )
    r.codec = _charset(d)
    d.printer_index = _printer_index(d)
    identity = _identity(d, ip_address, port, hostname)
    counters = _std_counters(d)
    supplies = _std_supplies(d)
    for p in vendors:
        counters += _vendor_counters(d, p)
        supplies += _vendor_supplies(d, p)
        for b in p.binaries:
            c, s = _binary_parts(d, p, b)
            counters += c
            supplies += s
    counters, clashes = unique_counters(counters)
    for c in clashes:  # MS-BILL-2: one series identity, one counter
        r.errors.append(
            CollectionError(
                oid=c.oid,
                code=CollectionErrorCode.OTHER,
                message=f"a second {c.kind.value} counter {c.label or ''} of the same identity "
                f"was read at {c.oid} and left out; the profile maps two values onto one series",
            )
        )
    status = _status(d)
    when = polled_at or datetime.now(UTC)
    return DeviceSnapshot(
        identity=identity,
        status=status,
        counter=counters[:1000],
        supply=supplies[:1000],
        input_tray=_input_trays(d)[:256],
        output_tray=_output_trays(d)[:256],
        cover=_covers(d)[:256],
        alert=_alerts(d)[:1000],
        collection_error=r.errors[:1000],
        polled_at=XmlDateTime.from_datetime(when),
        duration_ms=duration_ms,
        snmp_version=SnmpVersion(snmp_version) if snmp_version else None,
        profiles=" ".join(p.name for p in profiles if not p.key_only),
    )
