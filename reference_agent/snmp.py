"""SNMP access for the reference agent: v1/v2c/v3 GET and walks on one shared pysnmp engine.

Usage::

    import asyncio
    from metersync_agent.snmp import Credential, SnmpClient, SnmpError, WalkResult

    async def read(host: str) -> WalkResult:
        client = SnmpClient(timeout=2.0, retries=1)
        creds = [
            Credential("3", user="mps", auth_protocol="SHA", auth_key="authpass1",
                       priv_protocol="AES", priv_key="privpass1"),
            Credential("2c", community="public"),
        ]
        result = WalkResult()
        try:
            async with await client.open_session(host, 161, creds, budget=30.0) as s:
                await s.get([(1, 3, 6, 1, 2, 1, 1, 5, 0)], result)   # sysName.0
                await s.walk((1, 3, 6, 1, 2, 1, 43), result)          # Printer-MIB
        except SnmpError as exc:                                      # unreachable / auth-failure
            print(exc.code, exc.message)
        finally:
            client.close()
        return result  # result.values: {oid tuple: int | bytes | str}, result.problems: [...]

Design: SNMP v1/v2c go through `snmp_codec` (a sans-IO BER codec) on one asyncio UDP socket per
`SnmpClient`: requests are matched to answers by request-id (random start, wrapping), source
address, version and community; each request has its own timeout and retries. SNMPv3 (USM
authentication and privacy) goes through one pysnmp `SnmpEngine` per client, made on first use,
with pre-built `ObjectName`s (no MIB layer, none of its walk helpers, which never detect
looping agents). Both paths hand the walk the same values: `snmp_codec` conventions. Walks
check that every OID strictly increases and stays in the subtree, and are capped. A session
owns a device slot (`concurrency` of them per client) and a total time budget; when the budget
ends, the slot is given back and every further request records `budget-exceeded`.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import snmp_codec as codec

if TYPE_CHECKING:
    from .snmp_v3 import V3Engine

__all__ = [
    "CollectionProblem",
    "Credential",
    "Oid",
    "SnmpClient",
    "SnmpError",
    "SnmpSession",
    "SnmpValue",
    "WalkResult",
    "oid_str",
    "parse_oid",
]

SnmpValue = int | bytes | str
Oid = tuple[int, ...]

PROBLEM_CODES = (
    "timeout", "auth-failure", "gen-err", "no-such-object", "walk-loop", "walk-cap",
    "budget-exceeded", "decode-error", "unreachable", "other",
)  # fmt: skip

SYS_OBJECT_ID: Oid = (1, 3, 6, 1, 2, 1, 1, 2, 0)


def oid_str(oid: Oid) -> str:
    return ".".join(map(str, oid))


def parse_oid(text: str) -> Oid:
    return tuple(int(x) for x in text.strip().strip(".").split("."))


class SnmpError(Exception):
    """A device could not be talked to at all; `code` is 'unreachable' or 'auth-failure'."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class CollectionProblem:
    oid: str
    code: str
    message: str


@dataclass
class WalkResult:
    values: dict[Oid, SnmpValue] = field(default_factory=dict)
    problems: list[CollectionProblem] = field(default_factory=list)
    pdus: int = 0
    varbinds: int = 0

    def problem(self, oid: Oid | str, code: str, message: str) -> None:
        text = oid if isinstance(oid, str) else oid_str(oid)
        self.problems.append(CollectionProblem(text, code, message))


# Protocol names (see `snmp_v3` for what they map to); pysnmp is imported only for SNMPv3.
AUTH_PROTOCOLS = frozenset(("MD5", "SHA", "SHA1", "SHA224", "SHA256", "SHA384", "SHA512"))
PRIV_PROTOCOLS = frozenset(
    ("DES", "3DES", "AES", "AES128", "AES192", "AES256", "AES192C", "AES256C")
)


def _proto_key(name: str) -> str:
    return name.upper().replace("-", "").replace("_", "")


@dataclass(frozen=True)
class Credential:
    """One way to talk to a device.

    auth: MD5, SHA, SHA-224/256/384/512; priv: DES, AES (-128), AES-192, AES-256.
    """

    version: str = "2c"  # '1' | '2c' | '3'
    community: str = "public"
    user: str = ""
    auth_protocol: str | None = None
    auth_key: str | None = field(default=None, repr=False)
    priv_protocol: str | None = None
    priv_key: str | None = field(default=None, repr=False)
    context: str = ""

    def __post_init__(self) -> None:
        if self.version not in ("1", "2c", "3"):
            raise ValueError(f"SNMP version must be '1', '2c' or '3', not {self.version!r}")
        if self.version == "3":
            if not self.user:
                raise ValueError("SNMPv3 credential needs a user")
            if self.auth_protocol and _proto_key(self.auth_protocol) not in AUTH_PROTOCOLS:
                raise ValueError(f"unknown auth protocol {self.auth_protocol!r}")
            if self.priv_protocol and _proto_key(self.priv_protocol) not in PRIV_PROTOCOLS:
                raise ValueError(f"unknown privacy protocol {self.priv_protocol!r}")
            if self.priv_key and not self.auth_key:
                raise ValueError("SNMPv3 privacy needs authentication too")

    def describe(self) -> str:
        """A secret-free label for logs and problems."""
        if self.version != "3":
            return f"v{self.version}"
        level = "authPriv" if self.priv_key else "authNoPriv" if self.auth_key else "noAuthNoPriv"
        return f"v3 user {self.user!r} {level}"

    def auth_data(self) -> Any:
        """pysnmp's CommunityData / UsmUserData for this credential (imports pysnmp)."""
        from . import snmp_v3

        return snmp_v3.auth_data(self)


class _Budget(Exception):
    """The session's total time budget ran out."""


_GEN_ERR, _NO_SUCH_NAME, _TOO_BIG = 5, 2, 1
_AUTHORIZATION_ERROR, _NO_ACCESS = 16, 6
# RFC 3416 error-status names (1-5 are SNMPv1's too)
_ERROR_STATUS = dict(enumerate((
    "noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess",
    "wrongType", "wrongLength", "wrongEncoding", "wrongValue", "noCreation",
    "inconsistentValue", "resourceUnavailable", "commitFailed", "undoFailed",
    "authorizationError", "notWritable", "inconsistentName",
)))  # fmt: skip


def status_name(status: int) -> str:
    """An error-status as 'name (n)', e.g. 'authorizationError (16)'."""
    return f"{_ERROR_STATUS.get(status, 'unknown error-status')} ({status})"


_PLAIN = frozenset((int, bytes, str))
_END = codec.END_OF_MIB_VIEW
_NO_SUCH = (codec.NO_SUCH_OBJECT, codec.NO_SUCH_INSTANCE)

# (problem (code, message) | None, error-status, error-index, varbinds)
_Reply = tuple[tuple[str, str] | None, int, int, list[tuple[Oid, codec.Value]]]


# --- v1/v2c transport: one UDP socket, requests matched by request-id ------------------------


class _Pending:
    __slots__ = ("addr", "bad", "community", "fut", "version")

    def __init__(self, addr: tuple[str, int], version: int, community: bytes) -> None:
        self.addr = addr
        self.version = version
        self.community = community
        self.fut: asyncio.Future[codec.Message | None] | None = None
        self.bad = ""  # why an answer from the device could not be decoded


class _Udp(asyncio.DatagramProtocol):
    """The client's v1/v2c socket: sends packets, hands each answer to the request it matches.

    An answer counts only if its request-id is one we are waiting for and it comes from the
    address that request went to, with the same version and community; anything else is
    dropped (and counted in `dropped`).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, _Pending] = {}
        self.dropped = 0
        self._next_id = secrets.randbits(31)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for p in self.pending.values():
            if p.fut is not None and not p.fut.done():
                p.fut.set_result(None)

    def new_id(self) -> int:
        rid = self._next_id
        while rid in self.pending or rid == 0:
            rid = (rid + 1) & 0x7FFFFFFF
        self._next_id = (rid + 1) & 0x7FFFFFFF
        return rid

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            msg = codec.decode_message(data)
        except codec.CodecError as exc:
            rid = codec.peek_request_id(data)
            p = self.pending.get(rid) if rid is not None else None
            if p is not None and p.addr == addr[:2]:
                p.bad = str(exc)  # keep waiting: a retry may still be answered properly
            self.dropped += 1
            return
        p = self.pending.get(msg.request_id)
        if (
            p is None or p.addr != addr[:2] or msg.pdu_type != codec.RESPONSE
            or msg.version != p.version or msg.community != p.community
        ):  # fmt: skip
            self.dropped += 1
            return
        fut = p.fut
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors cannot be told apart per request on an unconnected socket: time out


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(None)


class SnmpClient:
    """One UDP socket (v1/v2c) and one SNMP engine (v3) for the whole agent, shared by sessions."""

    def __init__(
        self,
        *,
        timeout: float = 2.0,
        retries: int = 1,
        max_repetitions: int = 25,
        concurrency: int = 50,
    ) -> None:
        self.timeout = timeout
        self.retries = retries
        self.max_repetitions = max_repetitions
        self.concurrency = concurrency
        self._v3: V3Engine | None = None
        self._udps: dict[int, _Udp] = {}  # one v1/v2c socket per address family
        self._opening: dict[int, asyncio.Future[_Udp]] = {}  # the sockets being made
        self._slots: asyncio.Semaphore | None = None
        self._known: OrderedDict[tuple[str, int], Credential] = OrderedDict()
        self.known_limit = 100_000

    @property
    def v3(self) -> V3Engine:
        """The SNMPv3 engine, made (and pysnmp imported) on first use."""
        if self._v3 is None:
            from .snmp_v3 import V3Engine

            self._v3 = V3Engine()
        return self._v3

    async def _socket(self, family: int = socket.AF_INET) -> _Udp:
        """The client's v1/v2c socket of an address family (one for IPv4, one for IPv6);
        concurrent first callers share the one being made."""
        loop = asyncio.get_running_loop()
        udp = self._udps.get(family)
        if udp is not None and udp.transport is not None and udp.loop is loop:
            return udp
        opening = self._opening.get(family)
        if opening is not None and opening.get_loop() is loop:
            return await asyncio.shield(opening)
        if udp is not None and udp.transport is not None:
            udp.transport.close()
        self._opening[family] = opening = loop.create_future()
        udp = _Udp(loop)
        local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
        try:
            await loop.create_datagram_endpoint(lambda: udp, local_addr=local, family=family)
        except BaseException as exc:
            opening.set_exception(exc)
            opening.exception()  # retrieved: callers waiting on it see it raised
            raise
        finally:
            self._opening.pop(family, None)
        self._udps[family] = udp
        opening.set_result(udp)
        return udp

    def known_credential(self, host: str, port: int = 161) -> Credential | None:
        """The credential that last worked for host:port, if any."""
        return self._known.get((host, port))

    def _remember(self, key: tuple[str, int], cred: Credential | None) -> None:
        if cred is None:
            self._known.pop(key, None)
            return
        self._known[key] = cred
        self._known.move_to_end(key)
        while len(self._known) > self.known_limit:
            self._known.popitem(last=False)

    async def open_session(
        self,
        host: str,
        port: int,
        credentials: list[Credential],
        budget: float = 30.0,
        *,
        use_slot: bool = True,
        first: list[Oid] | None = None,
        into: WalkResult | None = None,
    ) -> SnmpSession:
        """Find a working credential (sysObjectID GET), remembered credential first.

        Waits for one of `concurrency` device slots; the budget clock starts once it has one.
        `use_slot=False` skips the slot (for callers that bound concurrency themselves).
        `first` (with `into`): OIDs to GET in the same PDU as the probe; when that PDU is
        answered cleanly their values are in `into` and `session.first_read` is True.
        Raises SnmpError('auth-failure') if a device rejected our v3 user or key (USM report)
        and nothing else worked, SnmpError('unreachable') on silence or when the budget ends.
        """
        if not credentials:
            raise ValueError("no credentials")
        loop = asyncio.get_running_loop()
        release: Callable[[], None] | None = None
        if use_slot:
            if self._slots is None:
                self._slots = asyncio.Semaphore(self.concurrency)
            await self._slots.acquire()
            release = self._slots.release
        session = SnmpSession(self, host, port, loop.time() + budget, release)
        try:
            await session._find_credential(credentials, first or [], into)
        except BaseException:
            session.close()
            raise
        return session

    def close(self) -> None:
        """Close the UDP sockets; the client can be reused afterwards (new ones are made)."""
        udps, self._udps = self._udps, {}
        for udp in udps.values():
            if udp.transport is not None:
                udp.transport.close()
        v3, self._v3 = self._v3, None
        if v3 is not None:
            v3.close()


class SnmpSession:
    """A device with a working credential, a deadline and (usually) a device slot."""

    def __init__(
        self,
        client: SnmpClient,
        host: str,
        port: int,
        deadline: float,
        release: Callable[[], None] | None,
    ) -> None:
        self.client = client
        self.host = host
        self.port = port
        self.deadline = deadline
        self.credential: Credential = Credential()
        self._release = release
        self._addr_name = ""
        self._context = b""
        self._version = "2c"
        self._addr: tuple[str, int] | None = None  # resolved (ip, port) for v1/v2c
        self._family = socket.AF_INET  # of _addr: which of the client's sockets to use
        self._community = b""
        self._mp = codec.V2C
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(deadline, self.close) if release else None
        self.first_read = False  # the probe PDU also read open_session's `first` OIDs

    # -- lifecycle --

    def close(self) -> None:
        """Give the device slot back (idempotent; also happens when the budget ends)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        release, self._release = self._release, None
        if release is not None:
            release()

    async def __aenter__(self) -> SnmpSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    @property
    def remaining(self) -> float:
        return self.deadline - asyncio.get_running_loop().time()

    # -- credentials --

    async def _resolve(self) -> tuple[str, int]:
        """The device's address (IPv4 preferred for a name with both), and its family."""
        if self._addr is None:
            host = self.host.strip("[]")
            for family in (socket.AF_INET, socket.AF_INET6):
                try:
                    socket.inet_pton(family, host)
                except OSError:
                    continue
                self._addr, self._family = (host, self.port), family
                return self._addr
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, self.port, type=socket.SOCK_DGRAM
            )
            infos = sorted(
                (i for i in infos if i[0] in (socket.AF_INET, socket.AF_INET6)),
                key=lambda i: i[0] != socket.AF_INET,
            )
            if not infos:
                raise OSError(f"no IPv4 or IPv6 address for {self.host}") from None
            ip, port = infos[0][4][:2]
            self._addr, self._family = (str(ip), int(port)), infos[0][0]
        return self._addr

    async def _use(self, cred: Credential) -> None:
        client = self.client
        if cred.version == "3":
            self._addr_name = await client.v3.configure(
                self.host, self.port, cred, client.timeout, client.retries
            )
            self._context = cred.context.encode()
        else:
            await self._resolve()
            await client._socket(self._family)
            self._community = cred.community.encode()
            self._mp = codec.V1 if cred.version == "1" else codec.V2C
        self._version = cred.version
        self.credential = cred

    async def _probe(
        self, first: list[Oid], into: WalkResult | None
    ) -> tuple[tuple[str, str] | None, int]:
        """GET sysObjectID (with `first` when given); a clean answer to both stores `first`."""
        extra = [o for o in dict.fromkeys(first) if o != SYS_OBJECT_ID] if into else []
        if extra:
            assert into is not None
            ind, status, _, vbs = await self._request(codec.GET, [SYS_OBJECT_ID, *extra], into)
            if ind is not None or status == 0:
                if ind is None:
                    self._store(vbs, into)
                    self.first_read = True
                return ind, status
        ind, status, _, _ = await self._request(codec.GET, [SYS_OBJECT_ID], into or WalkResult())
        return ind, status

    async def _find_credential(
        self, credentials: list[Credential], first: list[Oid], into: WalkResult | None
    ) -> None:
        key = (self.host, self.port)
        known = self.client.known_credential(*key)
        order = list(credentials)
        if known in order:
            order.remove(known)
            order.insert(0, known)
        auth_failures: list[str] = []
        silent: list[str] = []
        for cred in order:
            if self.remaining <= 0:
                break
            try:
                await self._use(cred)
            except (OSError, socket.gaierror) as exc:
                raise SnmpError("unreachable", f"{self.host}: {exc}") from exc
            try:
                ind, status = await self._probe(first, into)
            except _Budget:
                break
            if ind is None:
                if status == 0 or (self._version == "1" and status == _NO_SUCH_NAME):
                    self.client._remember(key, cred)
                    return
                said = f"{cred.describe()}: {status_name(status)}"
                if status in (_AUTHORIZATION_ERROR, _NO_ACCESS):
                    auth_failures.append(f"{said} (access refused: security level or view)")
                else:
                    silent.append(said)
            elif ind[0] == "auth-failure":
                auth_failures.append(f"{cred.describe()}: {ind[1]}")
            else:
                silent.append(f"{cred.describe()}: {ind[1]}{_silence_hint(cred, ind[0])}")
        self.client._remember(key, None)
        where = f"{self.host}:{self.port}"
        if auth_failures:
            raise SnmpError("auth-failure", f"{where} rejected " + "; ".join(auth_failures))
        if self.remaining <= 0:
            silent.append("time budget exhausted")
        raise SnmpError("unreachable", f"{where} did not answer: " + "; ".join(silent))

    # -- one PDU --

    async def _request(
        self, pdu_type: int, oids: list[Oid], into: WalkResult, max_rep: int = 0
    ) -> _Reply:
        """Send one GET/GETNEXT/GETBULK; (problem, error-status, error-index, varbinds)."""
        if self.remaining <= 0:
            raise _Budget
        into.pdus += 1
        if self._version == "3":
            return await self._request_v3(pdu_type, oids, max_rep)
        client = self.client
        udp = await client._socket(self._family)
        addr = self._addr
        assert addr is not None
        rid = udp.new_id()
        if pdu_type == codec.GET_BULK:
            packet = codec.encode_get_bulk(
                rid, oids, community=self._community, max_repetitions=max_rep
            )
        else:
            packet = codec.encode_request(
                pdu_type, rid, oids, community=self._community, version=self._mp
            )
        pending = _Pending(addr, self._mp, self._community)
        udp.pending[rid] = pending
        loop = udp.loop
        try:
            for _ in range(client.retries + 1):
                if udp.transport is None:
                    return ("other", "the client's socket was closed"), 0, 0, []
                fut: asyncio.Future[codec.Message | None] = loop.create_future()
                pending.fut = fut
                udp.transport.sendto(packet, addr)
                timer = loop.call_at(min(loop.time() + client.timeout, self.deadline), _expire, fut)
                msg = await fut
                timer.cancel()
                if msg is not None:
                    return None, msg.error_status, msg.error_index, msg.varbinds
                if loop.time() >= self.deadline:
                    raise _Budget
        finally:
            del udp.pending[rid]
        if pending.bad:
            return ("decode-error", f"undecodable answer: {pending.bad}"), 0, 0, []
        return ("timeout", f"no answer within {client.timeout:g} s"), 0, 0, []

    async def _request_v3(self, pdu_type: int, oids: list[Oid], max_rep: int) -> _Reply:
        try:
            return await self.client.v3.request(
                self._addr_name, self._context, pdu_type, oids, max_rep, self.deadline
            )
        except TimeoutError:
            raise _Budget from None

    # -- public operations --

    async def get(self, oids: list[Oid], into: WalkResult) -> None:
        """GET oids (several per PDU); missing or noSuch values are simply absent."""
        pending = [tuple(o) for o in oids]
        per_pdu = 20
        try:
            while pending:
                batch, pending = pending[:per_pdu], pending[per_pdu:]
                await self._get_batch(batch, into)
        except _Budget:
            into.problem(pending[0] if pending else oids[-1], "budget-exceeded", self._budget_msg())

    async def _get_batch(self, batch: list[Oid], into: WalkResult) -> None:
        while batch:
            ind, status, index, vbs = await self._request(codec.GET, batch, into)
            if ind is not None:
                into.problem(batch[0], ind[0], f"GET: {ind[1]}")
                return
            if status == 0:
                self._store(vbs, into)
                return
            if status == _TOO_BIG and len(batch) > 1:
                half = len(batch) // 2
                await self._get_batch(batch[:half], into)
                batch = batch[half:]
                continue
            # v1 noSuchName / genErr on one OID: drop it and ask for the rest again
            if 1 <= index <= len(batch):
                bad = batch.pop(index - 1)
                if status != _NO_SUCH_NAME:
                    into.problem(bad, _status_code(status), f"GET: {status_name(status)}")
                continue
            into.problem(batch[0], _status_code(status), f"GET: {status_name(status)}")
            return

    def _store(self, vbs: list[tuple[Oid, codec.Value]], into: WalkResult) -> None:
        for oid, value in vbs:
            if value is not _END:
                into.varbinds += 1
                if value.__class__ in _PLAIN:
                    into.values[oid] = value  # type: ignore[assignment]
                else:
                    _store_odd(oid, value, into)

    async def walk(
        self, subtree: Oid, into: WalkResult, max_varbinds: int = 5000, *, start: Oid | None = None
    ) -> None:
        """All values under subtree (GETBULK for v2c/v3, GETNEXT for v1), checked and capped.

        `start`: an OID inside subtree already read; the walk resumes after it.
        """
        subtree = tuple(subtree)
        try:
            await self._walk(subtree, into, max_varbinds, tuple(start) if start else subtree)
        except _Budget:
            into.problem(subtree, "budget-exceeded", self._budget_msg())

    def _budget_msg(self) -> str:
        return f"time budget for {self.host}:{self.port} exhausted"

    async def _walk(self, subtree: Oid, into: WalkResult, max_varbinds: int, start: Oid) -> None:
        n = len(subtree)
        name = oid_str(subtree)
        bulk = self._version != "1"
        kind = codec.GET_BULK if bulk else codec.GET_NEXT
        max_rep = self.client.max_repetitions
        values = into.values
        last = start  # last OID read (or the OID we resumed after)
        read = start  # last OID actually received
        count = 0
        skips: list[Oid] | None = None  # step-past candidates after `read`, once computed
        fake_end = False  # resuming after an endOfMibView inside the subtree
        # A GETNEXT after `failed` gave genErr: the failing object X is the one after `read`.
        # It is reported only once it is known to lie inside the subtree: a GETNEXT from a
        # step-past point inside the subtree that does not fail proves X <= that point (so
        # inside); if all fail, one GETNEXT from just past the subtree decides (it fails only
        # if X lies beyond). A GETBULK overshoot onto a failing object past the end is no
        # problem of this walk.
        failed: Oid | None = None

        def gen_err(at: Oid) -> None:
            into.problem(at, "gen-err", f"walk of {name}: genErr after {oid_str(at)}")

        while True:
            reps = max(1, min(max_rep, max_varbinds - count + 1)) if bulk else 0
            ind, status, index, vbs = await self._request(kind, [last], into, reps)
            if ind is not None:
                if failed is not None:
                    gen_err(failed)  # could not find out where it was: report it
                into.problem(last, ind[0], f"walk of {name} stopped: {ind[1]}")
                return
            ended = False
            if status == _GEN_ERR and bulk:
                bulk, kind = False, codec.GET_NEXT  # find the failing object one by one
                continue
            if status == _GEN_ERR:
                if skips is None:  # once per failing object
                    failed = last
                    skips = _step_past(read, n)
                if skips:
                    last = skips.pop(0)
                    fake_end = False
                    continue
                if failed is not None and await self._fails_inside(subtree, into):
                    gen_err(failed)
                return
            if failed is not None:  # a GETNEXT from inside the subtree got past the failure
                gen_err(failed)
                failed = None
            if status:
                if status == _NO_SUCH_NAME and not bulk:
                    ended = True  # SNMPv1 end of MIB view
                else:
                    if skips is None:
                        msg = f"walk of {name}: {status_name(status)} after {oid_str(last)}"
                        into.problem(last, _status_code(status), msg)
                    return
            elif not vbs:
                return
            for oid, value in () if ended else vbs:
                if value is _END:
                    ended = True
                    break
                if oid[:n] != subtree:
                    return  # left the subtree: done
                if oid <= last:
                    into.problem(
                        oid, "walk-loop", f"walk of {name}: {oid_str(oid)} "
                        f"after {oid_str(last)} does not increase",
                    )  # fmt: skip
                    return
                if count >= max_varbinds:
                    into.problem(oid, "walk-cap", f"walk of {name} stopped at {max_varbinds}")
                    return
                if skips is not None:  # resumed past a failing object
                    if fake_end:
                        into.problem(
                            read, "decode-error", f"walk of {name}: the object after "
                            f"{oid_str(read)} could not be read; resumed at {oid_str(oid)}",
                        )  # fmt: skip
                    skips = None
                    if self._version != "1":
                        bulk, kind = True, codec.GET_BULK
                last = read = oid
                count += 1
                into.varbinds += 1
                if value.__class__ in _PLAIN:
                    values[oid] = value  # type: ignore[assignment]
                else:
                    _store_odd(oid, value, into)
            if ended:
                # A device also says endOfMibView when it cannot encode a value (corrupt data):
                # if the walk is still inside the subtree, look once or twice past that point.
                if read == subtree:
                    return
                skips = _step_past(read, n) if skips is None else skips
                if not skips:
                    return
                last = skips.pop(0)
                fake_end = True

    async def _fails_inside(self, subtree: Oid, into: WalkResult) -> bool:
        """After genErr from every GETNEXT tried inside subtree: is the failing object inside?

        A GETNEXT from the first OID past the subtree fails too only if the failing object lies
        beyond the subtree (or, rarely, if a second failing object follows it).
        """
        past = (*subtree[:-1], subtree[-1] + 1)
        ind, status, _, _ = await self._request(codec.GET_NEXT, [past], into)
        return ind is not None or status != _GEN_ERR


def _store_odd(oid: Oid, value: codec.Value, into: WalkResult) -> None:
    """A varbind value that is not plain data: noSuch* are absent, NULL and bad ones reported."""
    if value in _NO_SUCH:
        return
    if value is codec.NULL:
        into.problem(oid, "decode-error", "NULL instead of a value")
    elif isinstance(value, codec.BadValue):
        into.problem(oid, "decode-error", value.reason)
    else:
        into.problem(oid, "decode-error", f"unexpected value {value!r}")


def _step_past(read: Oid, n: int) -> list[Oid]:
    """OIDs to resume a walk from when the object after `read` fails.

    Bump one arc of `read` at a time, from the last (next row) towards the subtree (next
    column, ...), keeping the rest: cheap guesses that may skip a few good objects too.
    """
    return [(*read[:p], read[p] + 1, *read[p + 1 :]) for p in range(len(read) - 1, n, -1)][:3]


def _status_code(status: int) -> str:
    codes = {_GEN_ERR: "gen-err", _NO_SUCH_NAME: "no-such-object"}
    codes[_AUTHORIZATION_ERROR] = codes[_NO_ACCESS] = "auth-failure"
    return codes.get(status, "other")


def _silence_hint(cred: Credential, code: str) -> str:
    """Why an SNMPv3 authPriv request may get no answer at all."""
    if code == "timeout" and cred.version == "3" and cred.priv_key:
        return (
            " (a wrong privacy key or privacy protocol is a likely cause: a device drops"
            " what it cannot decrypt)"
        )
    return ""
