"""Mapping profiles: MIB knowledge as data (`profiles/*.toml`), loaded into plain dataclasses.

A profile says which OIDs to read (GETs and walked subtrees), when it applies (sysObjectID
enterprise prefixes, a sysDescr pattern or a probe OID that answers), and how values become
snapshot parts: counters (one OID, or the rows of a vendor table), identity fields, console
text, supplies read from vendor scalars, and binary records (Brother). The `standard` profile
also names the RFC tables and enumerations. One generic mapper (`mapper.py`) interprets every
profile; a new device family is a new TOML file::

    profiles = load_profiles()                    # the shipped ones
    chosen = select_profiles(profiles, values)    # standard + those that match the device
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from metersync_generated.v1.device import CounterKind

__all__ = [
    "BinaryRecord",
    "BinarySpec",
    "CounterSpec",
    "CounterTable",
    "Profile",
    "ProfileError",
    "SupplySpec",
    "ValueSource",
    "load_profile",
    "load_profiles",
    "parse_oid",
    "plan_reads",
    "select_profiles",
]

Oid = tuple[int, ...]

COUNTER_KINDS = frozenset(k.value for k in CounterKind)
SUPPLY_SCALES = {"hundredths-percent": 10000, "percent": 100, "pages": None, "ratio": None}
_NAME = re.compile(r"^[a-z][a-z0-9\-]{0,63}$")


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the entry."""


def parse_oid(text: str) -> Oid:
    try:
        oid = tuple(int(x) for x in str(text).strip().strip(".").split("."))
    except ValueError:
        raise ProfileError(f"not an OID: {text!r}") from None
    if len(oid) < 2:
        raise ProfileError(f"not an OID: {text!r}")
    return oid


@dataclass(frozen=True)
class ValueSource:
    """Where a text value comes from: an OID (first row of a column when `table`) or sysDescr,
    with an optional regex whose first group is the value, and a decoding ("text", "pml" for
    HP's two-byte-prefixed strings, "charset" for prtLocalizationCharacterSet)."""

    oid: Oid | None = None
    sys_descr: re.Pattern[str] | None = None
    regex: re.Pattern[str] | None = None
    decode: str = "text"
    table: bool = False


@dataclass(frozen=True)
class CounterSpec:
    oid: Oid
    kind: str
    unit: str = "impressions"
    label: str | None = None
    scale: int = 1


@dataclass(frozen=True)
class CounterTable:
    """Rows of a vendor table as counters. A row's type is the value of `type_column` at the
    same index, or else the row index itself (dotted); `types` maps it to a counter kind."""

    values: Oid
    types: Mapping[str, str]
    labels: Mapping[str, str] = field(default_factory=dict)
    type_column: Oid | None = None
    label_column: Oid | None = None
    unlisted: str | None = None  # kind for rows whose type is not listed; None = skip them
    unit: str = "impressions"


@dataclass(frozen=True)
class SupplySpec:
    """A vendor supply read from scalars: the level OID, and the max capacity from an OID or
    a fixed value (100 for a level in percent); raw values keep their Table 4-2 meanings."""

    index: int
    type: str
    level: Oid
    max_oid: Oid | None = None
    max_value: int | None = None
    description: str | None = None
    colour: str | None = None
    unit: str | None = None  # a PrtMarkerSuppliesSupplyUnitTC name, e.g. "percent"


@dataclass(frozen=True)
class BinaryRecord:
    code: int
    counter: str | None = None
    supply: str | None = None
    label: str | None = None
    description: str | None = None
    colour: str | None = None
    scale: str = "hundredths-percent"


@dataclass(frozen=True)
class BinarySpec:
    oid: Oid
    label: str
    records: Mapping[int, BinaryRecord]
    index_base: int = 0


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    vendor: str | None = None
    always: bool = False
    enterprises: tuple[Oid, ...] = ()
    sys_descr: tuple[re.Pattern[str], ...] = ()
    probes: tuple[Oid, ...] = ()
    gets: tuple[Oid, ...] = ()
    walks: tuple[Oid, ...] = ()
    serial: tuple[ValueSource, ...] = ()
    model: tuple[ValueSource, ...] = ()
    firmware: tuple[ValueSource, ...] = ()
    console: tuple[ValueSource, ...] = ()
    counters: tuple[CounterSpec, ...] = ()
    counter_tables: tuple[CounterTable, ...] = ()
    binaries: tuple[BinarySpec, ...] = ()
    supplies: tuple[SupplySpec, ...] = ()
    # patterns over prtMarkerSuppliesDescription with named groups "part" and/or "serial"
    supply_text: tuple[re.Pattern[str], ...] = ()
    # standard profile only: system OIDs, RFC tables, enumerations, enterprise -> vendor
    system: Mapping[str, Oid] = field(default_factory=dict)
    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    enums: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    vendors: Mapping[int, str] = field(default_factory=dict)
    # only the vendor's serial objects of Table 3-2, read for the device key (spec 3.1): not
    # a profile the agent applies (absent from `profiles`, MS-DEV-4)
    key_only: bool = False

    def matches(self, sys_object_id: Oid | None, sys_descr: str, answered: set[Oid]) -> bool:
        if self.always:
            return True
        if sys_object_id and any(sys_object_id[: len(e)] == e for e in self.enterprises):
            return True
        if sys_descr and any(p.search(sys_descr) for p in self.sys_descr):
            return True
        return any(p in answered for p in self.probes)

    def owns(self, sys_object_id: Oid | None) -> bool:
        """The device's sysObjectID is under one of this profile's enterprises: its serial
        objects are the Table 3-2 row that keys the device (spec 3.1)."""
        return bool(sys_object_id) and any(sys_object_id[: len(e)] == e for e in self.enterprises)

    def enum(self, name: str, raw: int) -> str:
        return self.enums.get(name, {}).get(raw, "unrecognised")


def _sources(items: Any, where: str) -> tuple[ValueSource, ...]:
    out = []
    for item in items or ():
        if not isinstance(item, dict) or not ({"oid", "sys_descr"} & item.keys()):
            raise ProfileError(f"{where}: each source needs oid or sys_descr")
        try:
            src = ValueSource(
                oid=parse_oid(item["oid"]) if "oid" in item else None,
                sys_descr=re.compile(item["sys_descr"]) if "sys_descr" in item else None,
                regex=re.compile(item["regex"]) if "regex" in item else None,
                decode=item.get("decode", "text"),
                table=bool(item.get("table", False)),
            )
        except re.error as exc:
            raise ProfileError(f"{where}: bad pattern: {exc}") from None
        if src.decode not in ("text", "pml", "charset"):
            raise ProfileError(f"{where}: unknown decode {src.decode!r}")
        out.append(src)
    return tuple(out)


def _kind(kind: str, where: str) -> str:
    if kind not in COUNTER_KINDS:
        raise ProfileError(f"{where}: unknown counter kind {kind!r}")
    return kind


def _int_keys(table: Mapping[str, Any]) -> dict[int, Any]:
    return {int(k): v for k, v in table.items()}


def _supply(item: Mapping[str, Any], where: str) -> SupplySpec:
    if ("max" in item) == ("max_value" in item):
        raise ProfileError(f"{where}: give max (an OID) or max_value (a number), not both")
    return SupplySpec(
        index=int(item["index"]),
        type=str(item.get("type", "other")),
        level=parse_oid(item["level"]),
        max_oid=parse_oid(item["max"]) if "max" in item else None,
        max_value=int(item["max_value"]) if "max_value" in item else None,
        description=item.get("description"),
        colour=item.get("colour"),
        unit=item.get("unit"),
    )


def profile_from_dict(data: Mapping[str, Any], where: str) -> Profile:
    name = data.get("name", "")
    if not _NAME.match(name):
        raise ProfileError(f"{where}: profile name {name!r} must match {_NAME.pattern}")
    match = data.get("match", {})
    ident = data.get("identity", {})
    counters = tuple(
        CounterSpec(
            oid=parse_oid(c["oid"]),
            kind=_kind(c["kind"], f"{where} counter {c.get('oid')}"),
            unit=c.get("unit", "impressions"),
            label=c.get("label"),
            scale=int(c.get("scale", 1)),
        )
        for c in data.get("counter", [])
    )
    tables = []
    for t in data.get("counter_table", []):
        types = {str(k): _kind(v, f"{where} counter_table") for k, v in t["types"].items()}
        unlisted = t.get("unlisted")
        tables.append(
            CounterTable(
                values=parse_oid(t["values"]),
                types=types,
                labels={str(k): str(v) for k, v in t.get("labels", {}).items()},
                type_column=parse_oid(t["type_column"]) if "type_column" in t else None,
                label_column=parse_oid(t["label_column"]) if "label_column" in t else None,
                unlisted=_kind(unlisted, where) if unlisted else None,
                unit=t.get("unit", "impressions"),
            )
        )
    binaries = []
    for b in data.get("binary", []):
        records = {}
        for code, r in b.get("records", {}).items():
            rec = BinaryRecord(
                code=int(code, 16),
                counter=_kind(r["counter"], where) if "counter" in r else None,
                supply=r.get("supply"),
                label=r.get("label"),
                description=r.get("description"),
                colour=r.get("colour"),
                scale=r.get("scale", "hundredths-percent"),
            )
            if (rec.counter is None) == (rec.supply is None):
                raise ProfileError(f"{where}: record {code} needs counter or supply")
            if rec.scale not in SUPPLY_SCALES:
                raise ProfileError(f"{where}: record {code}: unknown scale {rec.scale!r}")
            records[rec.code] = rec
        binaries.append(
            BinarySpec(
                parse_oid(b["oid"]), b.get("label", ""), records, int(b.get("index_base", 0))
            )
        )
    supplies = tuple(_supply(s, f"{where} supply {s.get('index')}") for s in data.get("supply", []))
    # what to read: declared GETs/walks plus every OID the mapping entries name
    gets = [parse_oid(o) for o in data.get("get", [])]
    walks = [parse_oid(o) for o in data.get("walk", [])]
    for src in (
        *_sources(ident.get("serial"), where),
        *_sources(ident.get("model"), where),
        *_sources(ident.get("firmware"), where),
        *_sources(ident.get("console"), where),
    ):
        if src.oid is not None:
            (walks if src.table else gets).append(src.oid)
    gets += [c.oid for c in counters] + [b.oid for b in binaries]
    gets += [o for s in supplies for o in (s.level, s.max_oid) if o]
    walks += [t.values for t in tables]
    walks += [c for t in tables for c in (t.type_column, t.label_column) if c]
    system = {k: parse_oid(v) for k, v in data.get("system", {}).items()}
    enums = {name: _int_keys(table) for name, table in data.get("enums", {}).items()}
    rfc_tables = {}
    for tname, t in data.get("tables", {}).items():
        rfc_tables[tname] = {**t, "entry": parse_oid(t["entry"])}
    return Profile(
        name=name,
        description=data.get("description", ""),
        vendor=data.get("vendor"),
        always=bool(data.get("always", False)),
        enterprises=tuple(parse_oid(e) for e in match.get("enterprise", [])),
        sys_descr=tuple(re.compile(p) for p in match.get("sys_descr", [])),
        probes=tuple(parse_oid(p) for p in match.get("probe", [])),
        gets=tuple(dict.fromkeys(gets)),
        walks=tuple(dict.fromkeys(walks)),
        serial=_sources(ident.get("serial"), where),
        model=_sources(ident.get("model"), where),
        firmware=_sources(ident.get("firmware"), where),
        console=_sources(ident.get("console"), where),
        counters=counters,
        counter_tables=tuple(tables),
        binaries=tuple(binaries),
        supplies=supplies,
        supply_text=tuple(re.compile(t) for t in data.get("supply_text", [])),
        system=system,
        tables=rfc_tables,
        enums=enums,
        vendors={int(k): str(v) for k, v in data.get("vendors", {}).items()},
    )


def load_profile(path: Path | str) -> Profile:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return profile_from_dict(data, path.name)
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise ProfileError(f"{path.name}: {exc}") from None


def load_profiles(extra_dirs: Iterable[Path | str] = ()) -> list[Profile]:
    """The shipped profiles (standard first), then those in extra_dirs (same name replaces)."""
    found: dict[str, Profile] = {}
    shipped = resources.files("metersync_agent") / "profiles"
    for entry in sorted(shipped.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text(encoding="utf-8"))
            p = profile_from_dict(data, entry.name)
            found[p.name] = p
    for d in extra_dirs:
        for path in sorted(Path(d).glob("*.toml")):
            p = load_profile(path)
            found[p.name] = p
    if "standard" not in found:
        raise ProfileError("no 'standard' profile")
    return [found["standard"], *(p for n, p in sorted(found.items()) if n != "standard")]


def only_profiles(profiles: Iterable[Profile], names: Iterable[str]) -> list[Profile]:
    """The profiles named (`run --profiles standard`: an agent that reads the standard MIBs
    only); `standard` is always kept, an unknown name is a ProfileError. Of every other
    profile only its serial objects stay (`key_only`): Table 3-2 binds every agent's keys."""
    profiles = list(profiles)
    wanted = {"standard", *names}
    unknown = wanted - {p.name for p in profiles}
    if unknown:
        raise ProfileError(f"no profile named {', '.join(sorted(unknown))}")
    return [
        p if p.name in wanted else key_part(p) for p in profiles if p.name in wanted or p.serial
    ]


def key_part(p: Profile) -> Profile:
    """A profile reduced to its Table 3-2 serial objects, matched by enterprise only."""
    gets = tuple(s.oid for s in p.serial if s.oid is not None and not s.table)
    walks = tuple(s.oid for s in p.serial if s.oid is not None and s.table)
    return Profile(
        p.name, enterprises=p.enterprises, gets=gets, walks=walks, serial=p.serial, key_only=True
    )


def select_profiles(
    profiles: Iterable[Profile], values: Mapping[Oid, object], standard: Profile | None = None
) -> list[Profile]:
    """The profiles that apply to a device, given what its first GET returned."""
    profiles = list(profiles)
    std = standard or next(p for p in profiles if p.name == "standard")
    soid_raw = values.get(std.system["object_id"])
    try:
        soid = parse_oid(soid_raw) if isinstance(soid_raw, str) else None
    except ProfileError:
        soid = None
    descr_raw = values.get(std.system["descr"])
    descr = descr_raw.decode("utf-8", "replace") if isinstance(descr_raw, bytes) else ""
    answered = set(values)
    return [p for p in profiles if p.matches(soid, descr, answered)]


def _covered(oid: Oid, subtrees: Iterable[Oid]) -> bool:
    return any(oid[: len(s)] == s for s in subtrees)


def plan_reads(profiles: Iterable[Profile]) -> tuple[list[Oid], list[Oid]]:
    """(walks, gets) for the chosen profiles: no subtree inside another, no GET of a walked OID."""
    profiles = list(profiles)
    walks: list[Oid] = []
    for sub in sorted({w for p in profiles for w in p.walks}, key=len):
        if not _covered(sub, walks):
            walks.append(sub)
    gets = [g for g in dict.fromkeys(g for p in profiles for g in p.gets) if not _covered(g, walks)]
    return sorted(walks), gets


def first_get(profiles: Iterable[Profile]) -> list[Oid]:
    """What the poller asks first: the standard system group and every profile's probe OIDs."""
    out: list[Oid] = []
    for p in profiles:
        if p.always:
            out += p.gets
        out += p.probes
    return list(dict.fromkeys(out))
