"""SNMPv3 (USM) for `snmp.SnmpClient`: one pysnmp engine, imported only when v3 is used.

pysnmp's asyncio API pulls in pysmi, jinja2 and requests (≈ 0.5 s of CPU): v1/v2c never
import this module. Values come back in `snmp_codec`'s conventions, like the v1/v2c path.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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

from . import snmp_codec as codec
from .snmp import AUTH_PROTOCOLS, PRIV_PROTOCOLS, Oid, SnmpValue, _proto_key, oid_str

if TYPE_CHECKING:
    from .snmp import Credential

__all__ = ["V3Engine", "auth_data"]

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


assert set(_AUTH) == AUTH_PROTOCOLS and set(_PRIV) == PRIV_PROTOCOLS


def auth_data(cred: Credential) -> CommunityData | UsmUserData:
    if cred.version != "3":
        return CommunityData(cred.community, mpModel=0 if cred.version == "1" else 1)
    auth = priv = None
    if cred.auth_key:
        auth = _AUTH[_proto_key(cred.auth_protocol or "MD5")]
    if cred.priv_key:
        priv = _PRIV[_proto_key(cred.priv_protocol or "DES")]
    return UsmUserData(
        cred.user, authKey=cred.auth_key, privKey=cred.priv_key,
        authProtocol=auth, privProtocol=priv,
    )  # fmt: skip


# --- pysnmp values into the codec's convention -----------------------------------------------


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

_SPECIAL: dict[type, codec.Special] = {
    rfc1905.EndOfMibView: codec.END_OF_MIB_VIEW,
    rfc1905.NoSuchObject: codec.NO_SUCH_OBJECT,
    rfc1905.NoSuchInstance: codec.NO_SUCH_INSTANCE,
    univ.Null: codec.NULL,
}
_PYSNMP_NULL = univ.Null("")


def _from_pysnmp(value: Any) -> codec.Value:
    """A pysnmp value as the codec would have decoded it (BadValue if it cannot be read)."""
    special = _SPECIAL.get(value.__class__)
    if special is not None:
        return special
    conv = _CONVERT.get(value.__class__)
    if conv is None:
        for cls, c in _CONVERT.items():  # subclasses (rare): find once, then cached
            if isinstance(value, cls):
                _CONVERT[value.__class__] = conv = c
                break
        else:
            for cls, sp in _SPECIAL.items():
                if isinstance(value, cls):
                    return sp
            return codec.BadValue(0, f"unexpected type {type(value).__name__}")
    try:
        return conv(value)
    except Exception as exc:  # pyasn1 may only fail when the value is used
        return codec.BadValue(0, f"{type(value).__name__}: {exc}")


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


# (problem (code, message) | None, error-status, error-index, varbinds), as `snmp._Reply`
Reply = tuple[tuple[str, str] | None, int, int, list[tuple[Oid, codec.Value]]]


class V3Engine:
    """The client's pysnmp engine and command generators (no MIB layer, no walk helpers)."""

    def __init__(self) -> None:
        self.engine = SnmpEngine()
        self._lcd = CommandGeneratorLcdConfigurator()
        self._get = cmdgen.GetCommandGenerator()
        self._next = cmdgen.NextCommandGeneratorSingleRun()
        self._bulk = cmdgen.BulkCommandGeneratorSingleRun()

    async def configure(
        self, host: str, port: int, cred: Credential, timeout: float, retries: int
    ) -> str:
        """Register the target; returns its address name for `request`."""
        target = await UdpTransportTarget.create((host, port), timeout=timeout, retries=retries)
        name, _ = self._lcd.configure(self.engine, auth_data(cred), target, cred.context.encode())
        return str(name)

    async def request(
        self, addr_name: str, context: bytes, pdu_type: int, oids: list[Oid], max_rep: int,
        deadline: float,
    ) -> Reply:  # fmt: skip
        """One GET/GETNEXT/GETBULK; raises TimeoutError at `deadline` (loop time)."""
        fut = asyncio.get_running_loop().create_future()

        def done(engine: Any, handle: Any, ind: Any, status: Any, index: Any, vbs: Any, ctx: Any):
            if not fut.done():
                fut.set_result((ind, int(status), int(index), vbs))

        vbs = [(rfc1902.ObjectName(o), _PYSNMP_NULL) for o in oids]
        if pdu_type == codec.GET_BULK:
            self._bulk.send_varbinds(self.engine, addr_name, None, context, 0, max_rep, vbs, done)
        else:
            gen = self._get if pdu_type == codec.GET else self._next
            gen.send_varbinds(self.engine, addr_name, None, context, vbs, done)
        async with asyncio.timeout_at(deadline):
            ind, status, index, answer = await fut
        if ind is not None:
            return (_indication_code(ind), str(ind)), status, index, []
        return None, status, index, [(n.asTuple(), _from_pysnmp(v)) for n, v in answer]

    def close(self) -> None:
        self.engine.close_dispatcher()
