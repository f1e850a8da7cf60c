"""A UDP relay in front of one simulated printer, to see the agent's SNMP requests.

The agent talks to the relay at the printer's address; the relay forwards each datagram to the
responder (same host, another port) and the answers back. For every SNMPv1/v2c request it
records the PDU type, max-repetitions of a GETBULK, and how many of the agent's requests were
outstanding at once (sent less than half a `timeout` ago and not answered yet), and a log of the
GETNEXT/GETBULK requests with their first OID (to count the rows an agent asked for in one walk,
MS-SNMP-10). SNMPv3 messages are forwarded and counted, not decoded. Also: `trap()` builds an
SNMPv2 trap for MS-SNMP-3.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from metersync.ber import integer, tlv

PDU_NAMES = {
    0xA0: "get",
    0xA1: "getnext",
    0xA2: "response",
    0xA3: "set",
    0xA5: "getbulk",
    0xA6: "inform",
    0xA7: "trap",
    0xA8: "report",
}


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the TLV at pos."""
    tag, n = data[pos], data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    return tag, pos, pos + n


def _int(data: bytes, pos: int) -> tuple[int, int]:
    _, a, b = _tlv(data, pos)
    return int.from_bytes(data[a:b], "big", signed=True), b


def _read_oid(data: bytes, pos: int) -> tuple[int, ...]:
    """The OBJECT IDENTIFIER whose TLV starts at pos."""
    _, a, b = _tlv(data, pos)
    top = min(data[a] // 40, 2)
    out, n = [top, data[a] - 40 * top], 0
    for byte in data[a + 1 : b]:
        n = (n << 7) | (byte & 0x7F)
        if not byte & 0x80:
            out.append(n)
            n = 0
    return tuple(out)


def first_oid(data: bytes) -> tuple[int, ...] | None:
    """The OID of the first variable binding of a v1/v2c message, else None."""
    try:
        _, pos, _ = _tlv(data, 0)
        for _ in range(2):  # version, community
            pos = _tlv(data, pos)[2]
        _, pos, _ = _tlv(data, pos)  # the PDU
        for _ in range(3):  # request-id, error-status/non-repeaters, error-index/max-reps
            pos = _tlv(data, pos)[2]
        _, pos, _ = _tlv(data, pos)  # the varbind list
        _, pos, _ = _tlv(data, pos)  # the first varbind
        return _read_oid(data, pos)
    except IndexError:
        return None


def rows_per_walk(
    log: list[tuple[int, str, int, tuple[int, ...]]], subtree: tuple[int, ...]
) -> list[int]:
    """Rows asked for in each walk of `subtree` (GETBULK: max-repetitions, GETNEXT: 1). A walk
    starts where a request's OID goes back; a request for the OID just asked for (a resend,
    whatever its request-id) is not counted twice."""
    n = len(subtree)
    walks: list[int] = []
    last: tuple[int, ...] | None = None
    for _rid, name, reps, oid in log:
        if name not in ("getbulk", "getnext") or oid[:n] != subtree or oid == last:
            continue
        if last is None or oid < last:
            walks.append(0)
        walks[-1] += reps if name == "getbulk" else 1
        last = oid
    return walks


def parse(data: bytes) -> tuple[int, str, int, int, bytes] | None:
    """(version, pdu name, request-id, max-repetitions or 0, community) of a v1/v2c message,
    else None."""
    try:
        _, pos, _ = _tlv(data, 0)
        version, pos = _int(data, pos)
        if version not in (0, 1):
            return None
        _, c0, pos = _tlv(data, pos)
        community = data[c0:pos]
        tag, pos, _ = _tlv(data, pos)
        rid, pos = _int(data, pos)
        _, pos = _int(data, pos)
        third, _ = _int(data, pos)
    except (IndexError, ValueError):
        return None
    name = PDU_NAMES.get(tag, hex(tag))
    return version, name, rid, third if name == "getbulk" else 0, community


@dataclass
class Seen:
    requests: dict[str, int] = field(default_factory=dict)  # pdu name (or "v3") -> count
    versions: set[int] = field(default_factory=set)
    communities: dict[bytes, int] = field(default_factory=dict)  # requests per community
    max_repetitions: int = 0
    most_outstanding: int = 0
    # (request-id, pdu name, max-repetitions, first OID) of every GETNEXT and GETBULK
    walk_log: list[tuple[int, str, int, tuple[int, ...]]] = field(default_factory=list)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, client: Any) -> None:
        self.relay, self.client = relay, client
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        got = parse(data)
        if got is not None:
            self.relay.pending.pop(got[2], None)
        if self.relay.transport is not None:
            self.relay.transport.sendto(data, self.client)


class Relay(asyncio.DatagramProtocol):
    """Listen at `listen`, forward to `target`; one upstream socket per agent address."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], timeout: float) -> None:
        self.listen, self.target, self.timeout = listen, target, timeout
        self.seen = Seen()
        self.pending: dict[int, float] = {}
        self.transport: Any = None
        self._up: dict[Any, _Upstream] = {}

    async def start(self) -> Relay:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=self.listen)
        return self

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = time.monotonic()
        got = parse(data)
        s = self.seen
        if got is None:
            s.requests["v3"] = s.requests.get("v3", 0) + 1
        else:
            version, name, rid, reps, community = got
            s.versions.add(version)
            if name != "response":
                s.communities[community] = s.communities.get(community, 0) + 1
            s.requests[name] = s.requests.get(name, 0) + 1
            s.max_repetitions = max(s.max_repetitions, reps)
            if name in ("getbulk", "getnext") and (oid := first_oid(data)) is not None:
                s.walk_log.append((rid, name, reps, oid))
            # A retransmission (same request-id) is not a second outstanding request, and one
            # sent over half a timeout ago may have timed out at the agent already (the relay
            # sees datagrams late under load); true parallel requests arrive together.
            live = [t for r, t in self.pending.items() if r != rid and now - t < self.timeout * 0.5]
            s.most_outstanding = max(s.most_outstanding, len(live) + 1)
            self.pending = {r: t for r, t in self.pending.items() if now - t < self.timeout}
            self.pending[rid] = now
        asyncio.get_running_loop().create_task(self._forward(data, addr))

    async def _forward(self, data: bytes, addr: Any) -> None:
        up = self._up.get(addr)
        if up is None:
            loop = asyncio.get_running_loop()
            _, up = await loop.create_datagram_endpoint(
                lambda: _Upstream(self, addr), local_addr=(self.target[0], 0)
            )
            self._up[addr] = up
        up.transport.sendto(data, self.target)

    def close(self) -> None:
        for up in self._up.values():
            if up.transport is not None:
                up.transport.close()
        if self.transport is not None:
            self.transport.close()


def _oid(text: str) -> bytes:
    parts = [int(x) for x in text.split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        enc = [p & 0x7F]
        p >>= 7
        while p:
            enc.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(enc))
    return tlv(0x06, body)


def trap(payload: bytes, community: bytes = b"public") -> bytes:
    """An SNMPv2c coldStart trap carrying `payload` as sysName (RFC 3416)."""

    def vb(oid: str, value: bytes) -> bytes:
        return tlv(0x30, _oid(oid) + value)

    binds = tlv(
        0x30,
        vb("1.3.6.1.2.1.1.3.0", tlv(0x43, b"\x01"))
        + vb("1.3.6.1.6.3.1.1.4.1.0", _oid("1.3.6.1.6.3.1.1.5.1"))
        + vb("1.3.6.1.2.1.1.5.0", tlv(0x04, payload)),
    )
    pdu = tlv(0xA7, integer(1) + integer(0) + integer(0) + binds)
    return tlv(0x30, integer(1) + tlv(0x04, community) + pdu)
