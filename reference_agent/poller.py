"""Poll one device: read what the chosen profiles need, map it, always return a snapshot.

    client = SnmpClient(timeout=2.0, retries=1)
    snap = await poll_device(client, "10.0.0.7", 161, [Credential("2c", community="public")],
                             load_profiles(), budget=30.0)
    print(snapshot_xml(snap).decode())

Reads (`read_plan`): one GET of the system group, every profile's probe OIDs and the scalars of
the profiles that applied last time, in the same PDU as the credential probe; then one GETBULK
stream over the columns the matching profiles need (`snmp_columns`, max-repetitions sized by
the previous cycle's rows), then any scalar not yet read (a subtree inside another is walked
once, a walked OID is never also fetched). Every problem the SNMP layer reports becomes a
collectionError; a device that does not answer at all gives a snapshot with only the identity
we know and the error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import time
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree
from xsdata.formats.dataclass.context import XmlContext
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig
from xsdata.models.datatype import XmlDateTime

from metersync_generated.v1.device import Device, DeviceSnapshot

from .mapper import map_snapshot
from .profiles import Profile, first_get, select_profiles
from .read_plan import ReadMemory, plan_columns
from .snmp import Credential, SnmpClient, SnmpError, WalkResult, oid_str
from .snmp_columns import walk_columns

__all__ = ["poll_device", "snapshot_json", "snapshot_xml", "validate_snapshot_xml"]

NS = "urn:metersync:v1"


async def _ip_of(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        return str(infos[0][4][0])
    except (OSError, IndexError):
        return "0.0.0.0"


async def poll_device(
    client: SnmpClient,
    host: str,
    port: int,
    credentials: list[Credential],
    profiles: list[Profile],
    budget: float = 30.0,
    *,
    max_varbinds: int = 5000,
) -> DeviceSnapshot:
    """Read and map one device; never raises for anything the device does."""
    started = datetime.now(UTC)
    t0 = time.monotonic()
    ip = await _ip_of(host)
    hostname = None if ip == host else host
    result = WalkResult()
    version: str | None = None
    chosen = [p for p in profiles if p.always]
    memory = _memory(client)
    known = set(memory.profiles(host, port))
    first = first_get(profiles)  # with the scalars of the profiles that applied last time
    first += [g for p in profiles if p.name in known for g in plan_columns([p])[1]]
    first = list(dict.fromkeys(first))[:_FIRST_MAX]
    try:
        session = await client.open_session(
            host, port, credentials, budget, first=first, into=result
        )
    except SnmpError as exc:
        result.problem(oid_str((1, 3, 6, 1, 2, 1, 1, 2, 0)), exc.code, exc.message)
    else:
        async with session:
            version = session.credential.version
            if not session.first_read:
                await session.get(first, result)
            chosen = select_profiles(profiles, result.values)
            columns, gets = plan_columns(chosen)
            rows = await walk_columns(
                session,
                columns,
                result,
                hints=memory.rows(host, port),
                cap=client.max_repetitions * 3,
                max_repetitions=client.max_repetitions,
                max_varbinds=max_varbinds,
            )
            pending = [g for g in gets if g not in result.values and g not in first]
            if pending:
                await session.get(pending, result)
            memory.remember(host, port, rows, (p.name for p in chosen))
    return map_snapshot(
        result.values,
        chosen,
        ip_address=ip,
        port=port,
        hostname=hostname,
        polled_at=started,
        duration_ms=int((time.monotonic() - t0) * 1000),
        snmp_version=version,
        problems=[(p.oid, p.code, p.message) for p in result.problems],
    )


_FIRST_MAX = 40  # OIDs in the first PDU (a weak SNMP stack answers tooBig beyond)
_MEMORIES: weakref.WeakKeyDictionary[SnmpClient, ReadMemory] = weakref.WeakKeyDictionary()


def _memory(client: SnmpClient) -> ReadMemory:
    """What earlier polls through this client learnt about each device (rows, profiles)."""
    mem = _MEMORIES.get(client)
    if mem is None:
        mem = _MEMORIES[client] = ReadMemory()
    return mem


# --- output -----------------------------------------------------------------------------------


def snapshot_xml(snapshot: DeviceSnapshot) -> bytes:
    """The snapshot as a <Device> document (device.xsd's element for a snapshot of its own)."""
    doc = Device(**{f.name: getattr(snapshot, f.name) for f in dataclasses.fields(snapshot)})
    return _serializer().render(doc, ns_map={None: NS}).encode("utf-8")


@cache
def _serializer() -> XmlSerializer:
    """One serializer and context: xsdata builds each class's metadata once, not per call."""
    config = SerializerConfig(indent="  ", xml_declaration=True, encoding="UTF-8")
    return XmlSerializer(context=XmlContext(), config=config)


@cache
def _schema() -> etree.XMLSchema:
    import metersync_spec

    return etree.XMLSchema(etree.parse(str(Path(metersync_spec.XSD_DIR) / "device.xsd")))


def validate_snapshot_xml(xml: bytes) -> list[str]:
    """Errors of xml against spec/xsd/device.xsd (empty when valid)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    doc = etree.fromstring(xml, parser)
    schema = _schema()
    if schema.validate(doc):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = _plain(getattr(value, f.name))
            if v not in (None, [], {}):
                out[f.metadata.get("name", f.name)] = v
        return out
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, XmlDateTime):
        return str(value)
    return value


def snapshot_json(snapshot: DeviceSnapshot) -> Mapping[str, Any]:
    """A plain dict for humans (json.dumps-able); field names follow the XML."""
    return _plain(snapshot)
