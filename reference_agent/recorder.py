"""`metersync agent record HOST`: an anonymised recording of a printer, for support.

    metersync agent record 10.0.0.7 --community public --out recordings/ --name customer_mfp

walks the device's MIB-2 and enterprise subtrees (increasing OIDs only, capped), writes
`<name>.snmprec` with what identifies the customer replaced consistently, counters and levels
kept, and `<name>.truth.toml`: a skeleton of what an agent must report for it, read back by the
reference poller from the anonymised recording itself (served by snmpsim for a moment).
Review both before you share them; `metersync conformance agent --walks DIR` replays them.

Replaced (each value the same way everywhere it occurs, also inside other texts): serial
numbers (prtGeneralSerialNumber and the profiles' serial OIDs), sysName, sysContact,
sysLocation, MAC addresses (binary and as text), IP addresses (IpAddress values, the device's
own address as text) and e-mail addresses. Left out: the address tables whose indexes are
addresses (at, ip, tcp, udp, IP-MIB, TCP-MIB, UDP-MIB, IPV6-MIB).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import ipaddress
import re
import secrets
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Oid = tuple[int, ...]
ROOTS: tuple[Oid, ...] = ((1, 3, 6, 1, 2, 1), (1, 3, 6, 1, 4, 1))
LEFT_OUT: tuple[Oid, ...] = tuple(
    (1, 3, 6, 1, 2, 1, n) for n in (3, 4, 6, 7, 48, 49, 50, 55)
)  # address-indexed tables
MAX_VARBINDS = 50_000
SERIAL = (1, 3, 6, 1, 2, 1, 43, 5, 1, 1, 17)
SYS_CONTACT, SYS_NAME, SYS_LOCATION = (1, 3, 6, 1, 2, 1, 1, 4, 0), (1, 3, 6, 1, 2, 1, 1, 5, 0), (
    1, 3, 6, 1, 2, 1, 1, 6, 0)  # fmt: skip
IF_PHYS = (1, 3, 6, 1, 2, 1, 2, 2, 1, 6)
_EMAIL = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


@dataclass
class Varbind:
    oid: Oid
    tag: str  # snmprec type tag: 2, 4, 4x, 5, 6, 64, 65, 66, 67, 68, 70
    value: Any  # int, bytes (4, 4x, 68), str (6, 64)


def _under(oid: Oid, roots: Iterable[Oid]) -> bool:
    return any(oid[: len(r)] == r for r in roots)


def tag_of(value: Any) -> tuple[str, Any]:
    """A pysnmp value -> (snmprec tag, plain value)."""
    from pyasn1.type import univ
    from pysnmp.proto import rfc1902

    kinds = ((rfc1902.IpAddress, "64"), (rfc1902.Counter64, "70"), (rfc1902.Counter32, "65"),
             (rfc1902.TimeTicks, "67"), (rfc1902.Gauge32, "66"),
             (rfc1902.Opaque, "68"))  # fmt: skip
    for cls, tag in kinds:
        if isinstance(value, cls):
            if tag == "64":
                return tag, ".".join(str(b) for b in value.asOctets())
            return (tag, value.asOctets()) if tag == "68" else (tag, int(value))
    if isinstance(value, univ.Integer):
        return "2", int(value)
    if isinstance(value, univ.ObjectIdentifier):
        return "6", ".".join(map(str, value))
    if isinstance(value, univ.OctetString):
        return "4", value.asOctets()
    return "5", ""


async def walk(host: str, port: int, cred: Any, timeout: float, retries: int) -> list[Varbind]:
    """Every varbind under ROOTS (but LEFT_OUT): GETBULK (v2c, v3) or GETNEXT (v1), stopping
    at a non-increasing OID or MAX_VARBINDS."""
    from pysnmp.hlapi.v3arch.asyncio import (
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        bulk_cmd,
        next_cmd,
    )

    engine = SnmpEngine()
    target = await UdpTransportTarget.create((host, port), timeout=timeout, retries=retries)
    ctx = ContextData(contextName=cred.context or "")
    out: list[Varbind] = []
    try:
        for root in ROOTS:
            cur, last = root, root
            while len(out) < MAX_VARBINDS:
                obj = ObjectType(ObjectIdentity(".".join(map(str, cur))))
                if cred.version == "1":
                    res = await next_cmd(engine, cred.auth_data(), target, ctx, obj,
                                         lookupMib=False)  # fmt: skip
                else:
                    res = await bulk_cmd(engine, cred.auth_data(), target, ctx, 0, 25, obj,
                                         lookupMib=False)  # fmt: skip
                err_ind, err_status, _, vbs = res
                if err_ind:
                    if out or root != ROOTS[0]:
                        break  # what was read stays
                    raise OSError(f"{host}:{port}: {err_ind}")
                if err_status:
                    break  # noSuchName at the end of a v1 view
                done = False
                for name, value in vbs:
                    oid = tuple(name)
                    if value.tagSet in _END_TAGS() or not _under(oid, [root]) or oid <= last:
                        done = True
                        break
                    last = cur = oid
                    if _under(oid, LEFT_OUT):
                        continue
                    tag, plain = tag_of(value)
                    out.append(Varbind(oid, tag, plain))
                if done or not vbs:
                    break
    finally:
        engine.close_dispatcher()
    return out


def _END_TAGS() -> tuple[Any, ...]:  # noqa: N802
    from pysnmp.proto import rfc1905

    return (rfc1905.EndOfMibView.tagSet, rfc1905.NoSuchObject.tagSet,
            rfc1905.NoSuchInstance.tagSet)  # fmt: skip


@dataclass
class Anonymiser:
    """Consistent replacements, keyed by a secret made for this recording only."""

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    texts: dict[bytes, bytes] = field(default_factory=dict)  # whole values and inside texts
    macs: dict[bytes, bytes] = field(default_factory=dict)
    ips: dict[str, str] = field(default_factory=dict)

    def _h(self, what: str, value: bytes) -> str:
        return hmac.new(self.secret, what.encode() + b"\0" + value, hashlib.sha256).hexdigest()

    def learn(
        self, vbs: list[Varbind], serial_oids: Iterable[Oid], device_ip: str, serial: str | None
    ) -> None:
        """What to replace: the values at the identity OIDs, `serial` as the agent decoded it
        (from sysDescr or a vendor encoding too), MACs of ifPhysAddress, IpAddress values."""
        serials = tuple(serial_oids)
        if serial and serial.strip():
            self._serial(serial.strip().encode())
        for vb in vbs:
            if vb.tag != "4" or not vb.value.strip():
                continue
            v = vb.value
            if _under(vb.oid, serials):  # its text, after a vendor's binary prefix (HP's PML)
                self._serial(re.sub(rb"^[^\x20-\x7e]+", b"", v).strip())
            elif vb.oid == SYS_NAME:
                self.texts.setdefault(v, f"printer-{self._h('name', v)[:6]}".encode())
            elif vb.oid == SYS_LOCATION:
                self.texts.setdefault(v, f"location-{self._h('location', v)[:6]}".encode())
            elif vb.oid == SYS_CONTACT:
                self.texts.setdefault(v, f"contact-{self._h('contact', v)[:6]}".encode())
            elif vb.oid[: len(IF_PHYS)] == IF_PHYS and len(v) == 6:
                raw = bytearray(bytes.fromhex(self._h("mac", v)[:12]))
                raw[0] = (raw[0] & 0xFE) | 0x02  # unicast, locally administered
                self.macs.setdefault(v, bytes(raw))
        for ip in [device_ip] + [str(vb.value) for vb in vbs if vb.tag == "64"]:
            self._ip(ip)

    def _serial(self, s: bytes) -> None:
        if s:
            self.texts.setdefault(s, ("ANON" + self._h("serial", s)[:8]).upper().encode())

    def _ip(self, ip: str) -> str:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return ip
        if addr.is_loopback or addr.is_unspecified or ip.startswith("255.") or addr.version != 4:
            return ip
        if ip not in self.ips:
            self.ips[ip] = f"192.0.2.{len(self.ips) % 254 + 1}"  # TEST-NET-1 (RFC 5737)
        return self.ips[ip]

    def _text_forms(self) -> list[tuple[bytes, bytes]]:
        pairs = list(self.texts.items())
        for old, new in self.macs.items():
            for sep in (":", "-", ""):
                for case in (str.lower, str.upper):
                    a = case(sep.join(f"{b:02x}" for b in old)).encode()
                    b = case(sep.join(f"{b:02x}" for b in new)).encode()
                    pairs.append((a, b))
        pairs += [(o.encode(), n.encode()) for o, n in self.ips.items()]
        return sorted(pairs, key=lambda p: -len(p[0]))  # longest first

    def apply(self, vbs: list[Varbind]) -> list[Varbind]:
        forms = self._text_forms()
        out = []
        for vb in vbs:
            value = vb.value
            if vb.tag == "64":
                value = self._ip(value)
            elif vb.tag == "4":
                value = self.macs.get(value, value)
                for old, new in forms:
                    value = value.replace(old, new)
                value = _EMAIL.sub(lambda m: self._email(m.group()), value)
            out.append(Varbind(vb.oid, vb.tag, value))
        return out

    def _email(self, address: bytes) -> bytes:
        return f"user-{self._h('email', address)[:6]}@example.invalid".encode()


def snmprec_lines(vbs: list[Varbind]) -> list[str]:
    lines = []
    for vb in vbs:
        oid = ".".join(map(str, vb.oid))
        if vb.tag in ("4", "68"):
            v = vb.value
            text = v.decode("ascii", "strict") if _printable(v) else None
            if text is None or "|" in text:
                lines.append(f"{oid}|{vb.tag}x|{v.hex()}")
            else:
                lines.append(f"{oid}|{vb.tag}|{text}")
        else:
            lines.append(f"{oid}|{vb.tag}|{vb.value}")
    return lines


def _printable(v: bytes) -> bool:
    return all(32 <= b < 127 for b in v)


# --- the truth skeleton ---------------------------------------------------------------------


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def truth_toml(snap: Any, name: str) -> str:
    """A truth file (agent/truth.py's format) from the snapshot of the anonymised recording."""
    i = snap.identity
    lines = [f"# Truth skeleton of {name}.snmprec, read back by metersync agent record.",
             "# Check every value against the recording and the MIBs before you rely on it.",
             f"key = {_toml_str(i.device_key)}"]  # fmt: skip
    for k, v in (("vendor", i.vendor), ("serial", i.serial_number), ("model", i.model),
                 ("firmware", i.firmware)):  # fmt: skip
        if v:
            lines.append(f"{k} = {_toml_str(v)}")
    lines.append(f"profiles = {_toml_str(snap.profiles or '')}")
    st = snap.status
    des = st.detected_error_state if st else None
    flags = [f.value for f in des.flag] if des else []
    lines.append(f"flags = [{', '.join(_toml_str(f) for f in flags)}]")
    lines.append(f"alert_codes = [{', '.join(str(a.code.raw) for a in snap.alert)}]")
    errors = sorted({e.code.value for e in snap.collection_error})
    lines.append(f"errors = [{', '.join(_toml_str(e) for e in errors)}]")
    for c in snap.counter:
        lines += ["", "[[counter]]", f"kind = {_toml_str(c.kind.value)}",
                  f"oid = {_toml_str(c.oid)}", f"value = {c.value}",
                  f"source = {_toml_str(c.source)}",
                  f"unit = {_toml_str(c.unit.value)}"]  # fmt: skip
        if c.label:  # two counters of one OID differ by it
            lines.append(f"label = {_toml_str(c.label)}")
    for s in snap.supply:
        lines += ["", "[[supply]]", f"index = {s.index}", f"source = {_toml_str(s.source)}",
                  f"level = {s.level.raw}", f"max = {s.max_capacity.raw}",
                  f"meaning = {_toml_str(s.level.meaning.value)}",
                  f"max_meaning = {_toml_str(s.max_capacity.meaning.value)}"]  # fmt: skip
        if s.percent is not None:
            lines.append(f'percent = "{s.percent:.2f}"')
    return "\n".join(lines) + "\n"


async def read_back(snmprec: Path, timeout: float) -> Any:
    """Serve the anonymised recording with snmpsim and poll it as the agent would."""
    from metersync.snmpsim import Endpoint, SnmpSimulator, free_udp_port, install_recording
    from metersync_agent.poller import poll_device
    from metersync_agent.profiles import load_profiles
    from metersync_agent.snmp import Credential, SnmpClient

    with tempfile.TemporaryDirectory(prefix="metersync-record-") as tmp:
        data = Path(tmp) / "data"
        install_recording(snmprec, data)
        port = free_udp_port("127.0.0.1")
        sim = SnmpSimulator(endpoints=[Endpoint("127.0.0.1", port, data)])
        await asyncio.to_thread(sim.start)
        client = SnmpClient(timeout=timeout, retries=1)
        try:
            creds = [Credential("2c", community="public")]
            return await poll_device(client, "127.0.0.1", port, creds, load_profiles(), 60.0)
        finally:
            client.close()
            await asyncio.to_thread(sim.stop)


def serial_oids() -> list[Oid]:
    """prtGeneralSerialNumber and every profile's serial OIDs."""
    from metersync_agent.profiles import load_profiles

    found = [SERIAL]
    for p in load_profiles():
        for src in p.serial:
            if src.oid:
                found.append(tuple(src.oid))
    return found


async def record(host: str, port: int, cred: Any, out: Path, name: str, timeout: float,
                 retries: int) -> tuple[Path, Path, int]:  # fmt: skip
    from metersync.snmpsim import write_snmprec
    from metersync_agent.poller import _ip_of, poll_device
    from metersync_agent.profiles import load_profiles
    from metersync_agent.snmp import SnmpClient

    client = SnmpClient(timeout=timeout, retries=retries)
    try:  # the agent's own reading of the original, for the serial as it decodes it
        original = await poll_device(client, host, port, [cred], load_profiles(), 120.0)
    finally:
        client.close()
    vbs = await walk(host, port, cred, timeout, retries)
    if not vbs:
        raise OSError(f"{host}:{port} answered nothing under {ROOTS}")
    anon = Anonymiser()
    anon.learn(vbs, serial_oids(), await _ip_of(host), original.identity.serial_number)
    rec = write_snmprec(out / f"{name}.snmprec", snmprec_lines(anon.apply(vbs)))
    snap = await read_back(rec, timeout)
    truth = out / f"{name}.truth.toml"
    truth.write_text(truth_toml(snap, name), encoding="utf-8")
    return rec, truth, len(vbs)


def _record(args: argparse.Namespace) -> int:
    from metersync_agent.cli import EXIT_UNREACHABLE, EXIT_USAGE, _credentials, _host_port

    try:
        host, port = _host_port(args.target)
        cred = _credentials(args)[0]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    name = args.name or re.sub(r"[^a-z0-9_]+", "_", host.lower())
    try:
        rec, truth, n = asyncio.run(
            record(host, port, cred, Path(args.out), name, args.timeout, args.retries)
        )
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"{n} varbinds recorded, anonymised: {rec}\ntruth skeleton: {truth}")
    print(f"replay: metersync conformance agent --walks {rec.parent} --command …")
    return 0


def add_record(sub: Any) -> None:
    from metersync_agent.cli import _credential_args

    p = sub.add_parser(
        "record",
        help="walk a printer into an anonymised .snmprec and a truth-file skeleton",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", metavar="HOST[:PORT]", help="address or name, port 161 by default")
    p.add_argument("--out", default=".", help="directory for NAME.snmprec and NAME.truth.toml")
    p.add_argument("--name", help="recording name (default: from HOST)")
    _credential_args(p)
    p.set_defaults(func=_record)
