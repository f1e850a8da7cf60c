"""The SNMP trap receiver (spec chapter 19): it faces the printers only, and is off unless
provisioned (MS-TRAP-1). The manager never reaches it: it is no channel and no endpoint.

    config = TrapConfig.from_provisioning(p, settings.credentials)   # None: off
    receiver = TrapReceiver(config, known=lambda ip: ip in polled, accepted=on_trap)
    await receiver.start()            # binds UDP config.address:config.port, nothing else
    receiver.stats()                  # model.TrapStats for agentStatus/traps (MS-TRAP-6)
    receiver.close()

v1 Trap, v2c Trap and Inform, v3 USM (informs with the receiver's own engine, traps with the
user's provisioned engineId), on one pysnmp engine. A notification from an address the agent
does not poll is counted (unknownSource) and dropped before any inform is acknowledged; one
with a wrong community or USM credential never passes pysnmp's security layer and is counted
(badCredentials) from its MIB counters. `accepted(ip, event)` gets a `model.TrapEvent`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import metersync_generated.v1 as model
from metersync_agent.snmp import Credential

log = logging.getLogger("metersync.agent.traps")

DEFAULT_PORT = 162
DEFAULT_MIN_INTERVAL = 60
MAX_VARBINDS = 64
MAX_PER_SNAPSHOT = 100  # MS-TRAP-5: the oldest dropped beyond that
_SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
_SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
# RFC 3584's snmpTrapAddress.0 and snmpTrapCommunity.0, added to translated v1 traps: the
# community is a secret (MS-PRV-6) and the address is the source, masked as ipAddress: left out.
_LEFT_OUT = {_SYS_UPTIME, (1, 3, 6, 1, 6, 3, 18, 1, 3, 0), (1, 3, 6, 1, 6, 3, 18, 1, 4, 0)}
# Counters of notifications that failed the security layer (engine discovery and time
# synchronisation of informs, usmStatsUnknownEngineIDs / NotInTimeWindows, are normal).
_BAD = (
    ("__SNMPv2-MIB", "snmpInBadCommunityNames"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownUserNames"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsWrongDigests"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsDecryptionErrors"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnsupportedSecLevels"),
)


@dataclass(frozen=True)
class TrapConfig:
    address: str
    port: int
    credentials: tuple[Credential, ...] = field(repr=False)
    engine_ids: tuple[str | None, ...] = ()  # per credential: the sender's engine (v3 traps)
    min_interval: float = DEFAULT_MIN_INTERVAL

    @classmethod
    def from_provisioning(cls, p: Any, polling: tuple[Credential, ...]) -> TrapConfig | None:
        t = getattr(p, "traps", None)
        if t is None or not t.enabled:
            return None
        creds: list[Credential] = list(polling)
        engines: list[str | None] = [None] * len(creds)
        if t.credentials is not None:
            from metersync_agent.config import _credential

            creds, engines = [], []
            for kind in ("v1", "v2c", "v3"):
                for c in getattr(t.credentials, kind):
                    creds.append(_credential(kind, c))
                    raw = getattr(c, "engine_id", None)
                    engines.append(raw.hex() if isinstance(raw, bytes) else raw)
        port = DEFAULT_PORT if t.port is None else int(t.port)
        interval = DEFAULT_MIN_INTERVAL if t.min_interval is None else t.min_interval
        return cls(t.address, port, tuple(creds), tuple(engines), float(interval))


def _xml_now() -> Any:
    from xsdata.models.datatype import XmlDateTime

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return XmlDateTime.from_datetime(now)


def varbind(oid: tuple[int, ...], value: Any) -> model.TrapVarbind:
    """One varbind as reported: its type and its value as text (spec, TrapVarbind)."""
    from pyasn1.type import univ
    from pysnmp.proto import rfc1902

    text, kind = value.prettyPrint(), "other"
    if isinstance(value, rfc1902.IpAddress):
        kind, text = "ipAddress", ".".join(str(b) for b in value.asOctets())
    elif isinstance(value, rfc1902.TimeTicks):
        kind, text = "timeticks", str(int(value))
    elif isinstance(value, rfc1902.Counter32 | rfc1902.Counter64):
        kind, text = "counter", str(int(value))
    elif isinstance(value, rfc1902.Gauge32 | rfc1902.Unsigned32):
        kind, text = "unsigned", str(int(value))
    elif isinstance(value, univ.Integer):
        kind, text = "integer", str(int(value))
    elif isinstance(value, univ.ObjectIdentifier):
        kind, text = "oid", ".".join(map(str, value))
    elif isinstance(value, univ.OctetString):
        raw = value.asOctets()
        try:
            kind, text = "text", raw.decode("utf-8")
            if any(ord(ch) < 32 and ch not in "\t\r\n" for ch in text):
                raise ValueError
        except ValueError:
            kind, text = "hex", raw.hex()
    return model.TrapVarbind(
        value=text[:1024], oid=".".join(map(str, oid)), type_value=model.TrapValueType(kind)
    )


def trap_event(version: str, confirmed: bool, var_binds: list[tuple[Any, Any]]) -> model.TrapEvent:
    """A notification (already in SNMPv2 form, RFC 3584) -> model.TrapEvent."""
    trap_oid = "0.0"
    rest = []
    for name, value in var_binds:
        oid = tuple(name)
        if oid == _SNMP_TRAP_OID:
            trap_oid = ".".join(map(str, value))
        elif oid not in _LEFT_OUT:
            rest.append(varbind(oid, value))
    return model.TrapEvent(
        varbind=rest[:MAX_VARBINDS],
        received_at=_xml_now(),
        snmp_version=model.SnmpVersion(version),
        pdu=model.TrapPdu.INFORM if confirmed else model.TrapPdu.TRAP,
        trap_oid=trap_oid,
    )


class TrapReceiver:
    def __init__(
        self,
        config: TrapConfig,
        known: Callable[[str], bool],
        accepted: Callable[[str, model.TrapEvent], None],
    ) -> None:
        self.config = config
        self._known = known
        self._accepted = accepted
        self.accepted = self.unknown_source = self.triggered_reads = 0
        self._engine: Any = None
        self._bad_at_start = 0

    async def start(self) -> None:
        import asyncio

        from pysnmp.carrier.asyncio.dgram import udp
        from pysnmp.entity import config, engine

        snmp = self._engine = engine.SnmpEngine()
        transport = udp.UdpTransport().open_server_mode((self.config.address, self.config.port))
        config.add_transport(snmp, udp.DOMAIN_NAME, transport)
        for i, (cred, eid) in enumerate(
            zip(self.config.credentials, self.config.engine_ids, strict=False)
        ):
            self._add_credential(snmp, i, cred, eid)
        _Receiver(snmp, self)
        await asyncio.sleep(0)  # the datagram endpoint is made on the loop
        for _ in range(100):
            if getattr(transport, "_lport", None) is not None:
                break
            await asyncio.sleep(0.01)
        self._bad_at_start = self._bad()
        log.info("trap receiver listening on udp %s:%d", self.config.address, self.config.port)

    @staticmethod
    def _add_credential(snmp: Any, i: int, cred: Credential, engine_id: str | None) -> None:
        from pysnmp.entity import config
        from pysnmp.proto import rfc1902

        if cred.version != "3":
            config.add_v1_system(snmp, f"trap-{i}", cred.community)
            return
        usm = cred.auth_data()
        kw: dict[str, Any] = {}
        if engine_id:
            kw["securityEngineId"] = rfc1902.OctetString(hexValue=engine_id)
        config.add_v3_user(
            snmp,
            cred.user,
            usm.authentication_protocol,
            cred.auth_key,
            usm.privacy_protocol,
            cred.priv_key,
            **kw,
        )

    def _bad(self) -> int:
        if self._engine is None:
            return 0
        builder = self._engine.get_mib_builder()
        return sum(int(builder.import_symbols(m, n)[0].syntax) for m, n in _BAD)

    def stats(self) -> model.TrapStats:
        return model.TrapStats(
            address=self.config.address,
            port=self.config.port,
            accepted=self.accepted,
            unknown_source=self.unknown_source,
            bad_credentials=max(0, self._bad() - self._bad_at_start),
            triggered_reads=self.triggered_reads,
        )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None
            log.info("trap receiver closed")


def _receiver_class() -> Any:
    from pysnmp.entity.rfc3413 import ntfrcv
    from pysnmp.proto import rfc3411

    class Receiver(ntfrcv.NotificationReceiver):
        """Drops notifications from unknown sources before pysnmp acknowledges an inform."""

        def __init__(self, snmp: Any, owner: TrapReceiver) -> None:
            self.owner = owner
            super().__init__(snmp, self._callback)

        def process_pdu(self, snmp: Any, mp_model: int, *args: Any) -> None:
            ctx = snmp.observer.get_execution_context("rfc3412.receiveMessage:request")
            source = str(ctx["transportAddress"][0])
            if not self.owner._known(source):
                self.owner.unknown_source += 1
                log.info("trap from %s dropped: not a device this agent polls", source)
                return
            pdu = args[6]
            self._last = (source, {0: "1", 1: "2c"}.get(mp_model, "3"),
                          pdu.tagSet in rfc3411.CONFIRMED_CLASS_PDUS)  # fmt: skip
            super().process_pdu(snmp, mp_model, *args)

        def _callback(self, snmp: Any, ref: Any, ce: Any, cn: Any, vbs: Any, ctx: Any) -> None:
            source, version, confirmed = self._last
            self.owner.accepted += 1
            event = trap_event(version, confirmed, list(vbs))
            self.owner._accepted(source, event)

    return Receiver


def _Receiver(snmp: Any, owner: TrapReceiver) -> Any:  # noqa: N802 - a class made on demand
    return _receiver_class()(snmp, owner)
