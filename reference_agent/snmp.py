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

Design: one `SnmpEngine` (one UDP socket) per `SnmpClient`; requests go straight to pysnmp's
command generators with pre-built `ObjectName`s, skipping its MIB layer (no `ObjectIdentity`,
no MIB lookups) and its walk helpers, which never detect looping agents. Walks check that every
OID strictly increases and stays in the subtree, and are capped. A session owns a device slot
(`concurrency` of them per client) and a total time budget; when the budget ends, the slot is
given back and every further request records `budget-exceeded`.
"""

from __future__ import annotations

import asyncio
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyasn1.type import univ
from pysnmp.entity.rfc3413 import cmdgen
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
)
from pysnmp.hlapi.v3arch.asyncio import auth as _auth
from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
from pysnmp.proto import errind, rfc1902, rfc1905

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


_AUTH = {
    "MD5": _auth.USM_AUTH_HMAC96_MD5,
    "SHA": _auth.USM_AUTH_HMAC96_SHA,
    "SHA1": _auth.USM_AUTH_HMAC96_SHA,
    "SHA224": _auth.USM_AUTH_HMAC128_SHA224,
    "SHA256": _auth.USM_AUTH_HMAC192_SHA256,
    "SHA384": _auth.USM_AUTH_HMAC256_SHA384,
    "SHA512": _auth.USM_AUTH_HMAC384_SHA512,
}
_PRIV = {
    "DES": _auth.USM_PRIV_CBC56_DES,
    "3DES": _auth.USM_PRIV_CBC168_3DES,
    "AES": _auth.USM_PRIV_CFB128_AES,
    "AES128": _auth.USM_PRIV_CFB128_AES,
    # AES-192/256 per draft-blumenthal (net-snmp's AES192/AES256); the "C" forms are Cisco/Reeder.
    "AES192": _auth.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES256": _auth.USM_PRIV_CFB256_AES_BLUMENTHAL,
    "AES192C": _auth.USM_PRIV_CFB192_AES,
    "AES256C": _auth.USM_PRIV_CFB256_AES,
}


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
            if self.auth_protocol and _proto_key(self.auth_protocol) not in _AUTH:
                raise ValueError(f"unknown auth protocol {self.auth_protocol!r}")
            if self.priv_protocol and _proto_key(self.priv_protocol) not in _PRIV:
                raise ValueError(f"unknown privacy protocol {self.priv_protocol!r}")
            if self.priv_key and not self.auth_key:
                raise ValueError("SNMPv3 privacy needs authentication too")

    def describe(self) -> str:
        """A secret-free label for logs and problems."""
        if self.version != "3":
            return f"v{self.version}"
        level = "authPriv" if self.priv_key else "authNoPriv" if self.auth_key else "noAuthNoPriv"
        return f"v3 user {self.user!r} {level}"

    def auth_data(self) -> CommunityData | UsmUserData:
        if self.version != "3":
            return CommunityData(self.community, mpModel=0 if self.version == "1" else 1)
        auth = priv = None
        if self.auth_key:
            auth = _AUTH[_proto_key(self.auth_protocol or "MD5")]
        if self.priv_key:
            priv = _PRIV[_proto_key(self.priv_protocol or "DES")]
        return UsmUserData(
            self.user, authKey=self.auth_key, privKey=self.priv_key,
            authProtocol=auth, privProtocol=priv,
        )  # fmt: skip


# --- value conversion: one dict lookup on the value's class ---------------------------------


def _ip(v: Any) -> str:
    return socket.inet_ntoa(v.asOctets()) if len(v) == 4 else v.asOctets().hex()


_CONVERT: dict[type, Callable[[Any], SnmpValue]] = {}
for _cls in (
    univ.Integer, rfc1902.Integer32, rfc1902.Integer, rfc1902.Counter32, rfc1902.Gauge32,
    rfc1902.Unsigned32, rfc1902.TimeTicks, rfc1902.Counter64,
):  # fmt: skip
    _CONVERT[_cls] = int
for _cls in (univ.OctetString, rfc1902.OctetString, rfc1902.Opaque, rfc1902.Bits):
    _CONVERT[_cls] = univ.OctetString.asOctets
_CONVERT[univ.ObjectIdentifier] = _CONVERT[rfc1902.ObjectIdentifier] = lambda v: oid_str(
    v.asTuple()
)
_CONVERT[rfc1902.IpAddress] = _ip


def _null(v: Any) -> SnmpValue:
    raise ValueError("NULL instead of a value")


_CONVERT[univ.Null] = _null

_END = rfc1905.EndOfMibView
_NOSUCH = (rfc1905.NoSuchObject, rfc1905.NoSuchInstance)
_NULL = univ.Null("")


def _convert(value: Any) -> SnmpValue | None:
    """int / bytes / str for a value, None if its type is not one we read (raises if corrupt)."""
    conv = _CONVERT.get(value.__class__)
    if conv is None:
        for cls, c in _CONVERT.items():  # subclasses (rare): find once, then cached
            if isinstance(value, cls):
                _CONVERT[value.__class__] = conv = c
                break
        else:
            return None
    return conv(value)


_AUTH_ERRORS = (
    errind.WrongDigest, errind.UnknownUserName, errind.UnknownSecurityName,
    errind.AuthenticationFailure, errind.AuthenticationError, errind.DecryptionError,
    errind.UnsupportedSecurityLevel, errind.UnknownCommunityName,
)  # fmt: skip


def _indication_code(ind: Any) -> str:
    if isinstance(ind, errind.RequestTimedOut):
        return "timeout"
    if isinstance(ind, _AUTH_ERRORS):
        return "auth-failure"
    return "other"


class _Budget(Exception):
    """The session's total time budget ran out."""


_GEN_ERR, _NO_SUCH_NAME, _TOO_BIG = 5, 2, 1
_ERROR_STATUS = {1: "tooBig", 2: "noSuchName", 3: "badValue", 4: "readOnly", 5: "genErr"}


class SnmpClient:
    """One SNMP engine and UDP socket for the whole agent, shared by every device session."""

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
        self._engine: SnmpEngine | None = None
        self._lcd = CommandGeneratorLcdConfigurator()
        self._get = cmdgen.GetCommandGenerator()
        self._next = cmdgen.NextCommandGeneratorSingleRun()
        self._bulk = cmdgen.BulkCommandGeneratorSingleRun()
        self._slots: asyncio.Semaphore | None = None
        self._known: OrderedDict[tuple[str, int], Credential] = OrderedDict()
        self.known_limit = 100_000

    @property
    def engine(self) -> SnmpEngine:
        if self._engine is None:
            self._engine = SnmpEngine()
        return self._engine

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
    ) -> SnmpSession:
        """Find a working credential (sysObjectID GET), remembered credential first.

        Waits for one of `concurrency` device slots; the budget clock starts once it has one.
        `use_slot=False` skips the slot (for callers that bound concurrency themselves).
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
            await session._find_credential(credentials)
        except BaseException:
            session.close()
            raise
        return session

    def close(self) -> None:
        """Close the UDP socket; the client can be reused afterwards (a new engine is made)."""
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None
            self._lcd = CommandGeneratorLcdConfigurator()


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
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(deadline, self.close) if release else None

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

    async def _use(self, cred: Credential) -> None:
        client = self.client
        target = await UdpTransportTarget.create(
            (self.host, self.port), timeout=client.timeout, retries=client.retries
        )
        self._addr_name, _ = client._lcd.configure(
            client.engine, cred.auth_data(), target, cred.context.encode()
        )
        self._context = cred.context.encode()
        self._version = cred.version
        self.credential = cred

    async def _find_credential(self, credentials: list[Credential]) -> None:
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
            probe = WalkResult()
            try:
                ind, status, _, vbs = await self._request(self.client._get, [SYS_OBJECT_ID], probe)
            except _Budget:
                break
            if ind is None:
                if status == 0 or (self._version == "1" and status == _NO_SUCH_NAME):
                    self.client._remember(key, cred)
                    return
                silent.append(f"{cred.describe()}: {_ERROR_STATUS.get(status, status)}")
            elif _indication_code(ind) == "auth-failure":
                auth_failures.append(f"{cred.describe()}: {ind}")
            else:
                silent.append(f"{cred.describe()}: {ind}")
        self.client._remember(key, None)
        where = f"{self.host}:{self.port}"
        if auth_failures:
            raise SnmpError("auth-failure", f"{where} rejected " + "; ".join(auth_failures))
        if self.remaining <= 0:
            silent.append("time budget exhausted")
        raise SnmpError("unreachable", f"{where} did not answer: " + "; ".join(silent))

    # -- one PDU --

    async def _request(
        self, gen: Any, oids: list[Oid], into: WalkResult, max_rep: int = 0
    ) -> tuple[Any, int, int, Any]:
        """Send one GET/GETNEXT/GETBULK; (errorIndication, errorStatus, errorIndex, varbinds)."""
        if self.remaining <= 0:
            raise _Budget
        client = self.client
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def done(engine: Any, handle: Any, ind: Any, status: Any, index: Any, vbs: Any, ctx: Any):
            if not fut.done():
                fut.set_result((ind, int(status), int(index), vbs))

        vbs = [(rfc1902.ObjectName(o), _NULL) for o in oids]
        if max_rep:
            gen.send_varbinds(
                client.engine, self._addr_name, None, self._context, 0, max_rep, vbs, done
            )
        else:
            gen.send_varbinds(client.engine, self._addr_name, None, self._context, vbs, done)
        into.pdus += 1
        try:
            async with asyncio.timeout_at(self.deadline):
                return await fut
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
            ind, status, index, vbs = await self._request(self.client._get, batch, into)
            if ind is not None:
                into.problem(batch[0], _indication_code(ind), f"GET: {ind}")
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
                    into.problem(bad, _status_code(status), f"GET: {_ERROR_STATUS.get(status)}")
                continue
            into.problem(batch[0], _status_code(status), f"GET: {_ERROR_STATUS.get(status)}")
            return

    def _store(self, vbs: Any, into: WalkResult) -> None:
        for name, value in vbs:
            if not isinstance(value, _END):
                into.varbinds += 1
                self._store_slow(name.asTuple(), value, into)

    async def walk(self, subtree: Oid, into: WalkResult, max_varbinds: int = 5000) -> None:
        """All values under subtree (GETBULK for v2c/v3, GETNEXT for v1), checked and capped."""
        subtree = tuple(subtree)
        try:
            await self._walk(subtree, into, max_varbinds)
        except _Budget:
            into.problem(subtree, "budget-exceeded", self._budget_msg())

    def _budget_msg(self) -> str:
        return f"time budget for {self.host}:{self.port} exhausted"

    async def _walk(self, subtree: Oid, into: WalkResult, max_varbinds: int) -> None:
        n = len(subtree)
        bulk = self._version != "1"
        gen = self.client._bulk if bulk else self.client._next
        max_rep = self.client.max_repetitions
        values = into.values
        last = subtree  # last OID read (or the OID we resumed after)
        read = subtree  # last OID actually received
        count = 0
        skips: list[Oid] | None = None  # step-past candidates after `read`, once computed
        fake_end = False  # resuming after an endOfMibView inside the subtree
        while True:
            reps = max(1, min(max_rep, max_varbinds - count + 1)) if bulk else 0
            ind, status, index, vbs = await self._request(gen, [last], into, reps)
            if ind is not None:
                code = _indication_code(ind)
                into.problem(last, code, f"walk of {oid_str(subtree)} stopped: {ind}")
                return
            ended = False
            if status:
                if status == _NO_SUCH_NAME and not bulk:
                    ended = True  # SNMPv1 end of MIB view
                elif status == _GEN_ERR and bulk:
                    bulk, gen = False, self.client._next  # find the failing object one by one
                    continue
                else:
                    if skips is None:  # once per failing object
                        msg = f"walk of {oid_str(subtree)}: {_ERROR_STATUS.get(status)} after"
                        into.problem(last, _status_code(status), f"{msg} {oid_str(last)}")
                    if status != _GEN_ERR:
                        return
                    # genErr: step past the object that fails
                    skips = _step_past(read, n) if skips is None else skips
                    if not skips:
                        return
                    last = skips.pop(0)
                    fake_end = False
                    continue
            elif not vbs:
                return
            for name, value in () if ended else vbs:
                if value.__class__ is _END:
                    ended = True
                    break
                oid = name.asTuple()
                if oid[:n] != subtree:
                    return  # left the subtree: done
                if oid <= last:
                    into.problem(
                        oid, "walk-loop", f"walk of {oid_str(subtree)}: {oid_str(oid)} "
                        f"after {oid_str(last)} does not increase",
                    )  # fmt: skip
                    return
                if count >= max_varbinds:
                    into.problem(
                        oid, "walk-cap", f"walk of {oid_str(subtree)} stopped at {max_varbinds}"
                    )
                    return
                if skips is not None:  # resumed past a failing object
                    if fake_end:
                        into.problem(
                            read, "decode-error", f"walk of {oid_str(subtree)}: the object after "
                            f"{oid_str(read)} could not be read; resumed at {oid_str(oid)}",
                        )  # fmt: skip
                    skips = None
                    if self._version != "1":
                        bulk, gen = True, self.client._bulk
                last = read = oid
                count += 1
                into.varbinds += 1
                conv = _CONVERT.get(value.__class__)
                if conv is not None:
                    try:
                        values[oid] = conv(value)
                        continue
                    except Exception as exc:  # pyasn1 may only fail when the value is used
                        into.problem(oid, "decode-error", f"{type(value).__name__}: {exc}")
                        continue
                self._store_slow(oid, value, into)
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

    def _store_slow(self, oid: Oid, value: Any, into: WalkResult) -> None:
        if isinstance(value, _NOSUCH):
            return
        try:
            v = _convert(value)
        except Exception as exc:
            into.problem(oid, "decode-error", f"{type(value).__name__}: {exc}")
            return
        if v is None:
            into.problem(oid, "decode-error", f"unexpected type {type(value).__name__}")
        else:
            into.values[oid] = v


def _step_past(read: Oid, n: int) -> list[Oid]:
    """OIDs to resume a walk from when the object after `read` fails.

    Bump one arc of `read` at a time, from the last (next row) towards the subtree (next
    column, ...), keeping the rest: cheap guesses that may skip a few good objects too.
    """
    return [(*read[:p], read[p] + 1, *read[p + 1 :]) for p in range(len(read) - 1, n, -1)][:3]


def _status_code(status: int) -> str:
    return {_GEN_ERR: "gen-err", _NO_SUCH_NAME: "no-such-object"}.get(status, "other")
