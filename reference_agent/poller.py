"""Poll one device: read what the chosen profiles need, map it, always return a snapshot.

    client = SnmpClient(timeout=2.0, retries=1)
    snap = await poll_device(client, "10.0.0.7", 161, [Credential("2c", community="public")],
                             load_profiles(), budget=30.0)
    print(snapshot_xml(snap).decode())

Reads: one GET of the system group plus every profile's probe OIDs, then the walks and GETs
the matching profiles declare (a subtree inside another is walked once, a walked OID is never
also fetched). Every problem the SNMP layer reports becomes a collectionError; a device that
does not answer at all gives a snapshot with only the identity we know and the error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import time
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
from .profiles import Profile, first_get, plan_reads, select_profiles
from .snmp import Credential, SnmpClient, SnmpError, WalkResult, oid_str

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
    try:
        session = await client.open_session(host, port, credentials, budget)
    except SnmpError as exc:
        result.problem(oid_str((1, 3, 6, 1, 2, 1, 1, 2, 0)), exc.code, exc.message)
    else:
        async with session:
            version = session.credential.version
            await session.get(first_get(profiles), result)
            chosen = select_profiles(profiles, result.values)
            walks, gets = plan_reads(chosen)
            for subtree in walks:
                await session.walk(subtree, result, max_varbinds=max_varbinds)
            pending = [g for g in gets if g not in result.values]
            if pending:
                await session.get(pending, result)
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
