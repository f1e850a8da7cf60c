"""The agent's senses and manners (spec chapters 19, 20): masking, adaptive intervals, the
trap receiver with real pysnmp notifications on loopback (an ephemeral port, never 162), and
`metersync agent record` against our own simulated printer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from xsdata.models.datatype import XmlDateTime

import metersync_generated.v1 as model
from metersync import xml_edge
from metersync.snmpsim import Endpoint, SnmpSimulator, free_udp_port, install_recording
from metersync_agent.config import ConfigError, settings_from_toml_text
from metersync_agent.privacy import SECRET_FILE, Masking
from metersync_agent.scheduling import ATTENTION, BUSY, IDLE, Adaptive, History, PduBudget
from metersync_agent.snmp import Credential
from metersync_agent.traps import TrapConfig, TrapReceiver

RECORDINGS = Path(__file__).resolve().parents[1] / "reference_agent" / "recordings"
MASK_ALL = {
    "ipAddress": "hash",
    "macAddress": "hash",
    "hostname": "hash",
    "contact": "drop",
    "location": "hash",
    "consoleText": "drop",
    "alertDescription": "hash",
}


def snapshot(
    total: int = 100, percent: str | None = "50", alert: bool = False
) -> model.DeviceSnapshot:
    level = model.RawLevel(raw=50, meaning=model.RawMeaning.EXACT)
    return model.DeviceSnapshot(
        polled_at=XmlDateTime.from_string("2026-12-07T08:00:00Z"),
        identity=model.DeviceIdentity(
            device_key="mac:00:11:22:33:44:55",
            ip_address="10.1.2.3",
            mac_address=["00:11:22:33:44:55"],
            hostname="lab-printer",
            sys_name="lab-printer",
            location="Room 1, Jane's office",
            contact="jane@example.com",
        ),
        status=model.DeviceStatusInfo(console_line=["Jane: job done"]),
        counter=[
            model.Counter(
                value=total,
                kind=model.CounterKind.TOTAL,
                unit=model.CounterUnit.IMPRESSIONS,
                oid="1.3.6.1.2.1.43.10.2.1.4.1.1",
                source="standard",
            )
        ],
        supply=[
            model.Supply(
                type_value=model.RawSupplyType(value=model.SupplyType.TONER, raw=3),
                level=level,
                max_capacity=model.RawLevel(raw=100, meaning=model.RawMeaning.EXACT),
                percent=None if percent is None else Decimal(percent),
                index=1,
                source="standard",
            )
        ],
        alert=[
            model.Alert(
                severity=model.RawAlertSeverity(value=model.AlertSeverity.WARNING, raw=4),
                code=model.AlertCode(value="jam", raw=8),
                description="Jam, call Jane",
                index=1,
            )
        ]
        if alert
        else [],
    )


# --- privacy ------------------------------------------------------------------------------


def test_masking_hides_every_field_keeps_the_key_and_validates(tmp_path: Path) -> None:
    masking = Masking.load(MASK_ALL, tmp_path)
    snap = masking.apply(snapshot(alert=True))
    i = snap.identity
    assert i.device_key == "mac:00:11:22:33:44:55"  # MS-PRIV-5: the key as read
    assert i.ip_address.startswith("fd") and i.mac_address[0][1] in "26ae"
    assert i.contact is None and snap.status.console_line == []
    assert all(v.startswith("h:") for v in (i.hostname, i.sys_name, i.location))
    assert snap.alert[0].description.startswith("h:") and snap.counter[0].value == 100
    assert sorted(snap.masked) == sorted(f"{k}:{v}" for k, v in MASK_ALL.items())
    body = xml_edge.to_bytes(
        model.Device(**{f: getattr(snap, f) for f in snap.__dataclass_fields__})
    )
    for secret in (b"Jane", b"10.1.2.3", b"00:11:22:33:44:55\x3c", b"lab-printer", b"Room 1"):
        assert secret not in body.replace(b"mac:00:11:22:33:44:55", b"")


def test_hashes_are_stable_per_agent_and_differ_between_agents(tmp_path: Path) -> None:
    one = Masking.load(MASK_ALL, tmp_path / "a").apply(snapshot())
    again = Masking.load(MASK_ALL, tmp_path / "a").apply(snapshot())  # after a restart
    other = Masking.load(MASK_ALL, tmp_path / "b").apply(snapshot())
    assert one.identity.location == again.identity.location
    assert one.identity.location != other.identity.location
    assert (tmp_path / "a" / SECRET_FILE).stat().st_mode & 0o777 == 0o600


def test_nothing_to_mask_leaves_the_snapshot_alone(tmp_path: Path) -> None:
    snap = snapshot()
    assert Masking.load({}, tmp_path).apply(snap) is snap
    assert not (tmp_path / SECRET_FILE).exists()  # no secret made for keep/drop only


# --- adaptive polling ---------------------------------------------------------------------


def test_moods_and_bounds() -> None:
    plan = Adaptive(min_interval=60, max_interval=1800, pdu_budget=600)
    h = History()
    h.observe(snapshot(total=100), 0, 900)
    h.observe(snapshot(total=100), 900, 900)
    assert h.mood() == IDLE and plan.interval(900, IDLE) == 1800
    h.observe(snapshot(total=150), 1800, 900)
    assert h.mood() == BUSY and plan.interval(900, BUSY) == 225
    h.observe(snapshot(total=150, alert=True), 2700, 900)
    assert h.mood() == ATTENTION and plan.interval(100, ATTENTION) == 60  # minInterval


def test_a_supply_falling_fast_needs_attention() -> None:
    h = History()
    h.observe(snapshot(total=1, percent="80"), 0, 900)
    h.observe(snapshot(total=2, percent="60"), 900, 900)  # 20 % per interval: empty in 3
    assert h.mood() == ATTENTION


def test_the_budget_holds_in_every_window() -> None:
    b = PduBudget(100)
    assert b.allow(60, 10) and (b.spend(60, 10) or True)
    assert not b.allow(60, 50) and b.allow(60, 71)  # 50 is within 60 s of 10; 71 is not


def test_provisioned_senses_in_the_toml_form(tmp_path: Path) -> None:
    base = '[manager]\nurl = "http://127.0.0.1:1"\nenrollment_token = "token-0123456789abcdef"\n'
    base += '[targets]\ninclude = ["127.0.0.1"]\n[schedule]\npoll_interval = 300\n'
    s = settings_from_toml_text(
        base + '[traps]\naddress = "127.0.0.1"\nport = 1162\n[adaptive_polling]\n'
        '[privacy]\nlocation = "hash"\ncontact = "drop"\n'
    )
    assert (s.traps.address, s.traps.port, s.traps.min_interval) == ("127.0.0.1", 1162, 60)
    assert (s.adaptive.min_interval, s.adaptive.max_interval) == (60, 1200)
    assert s.privacy == {"contact": "drop", "location": "hash"}
    with pytest.raises(ConfigError, match="3001.*MS-TRAP-1"):
        settings_from_toml_text(base + '[traps]\naddress = "0.0.0.0"\n')


# --- the trap receiver --------------------------------------------------------------------


async def _send(port: int, auth: object, kind: str, src: str = "127.0.0.1") -> str:
    from pysnmp.hlapi.v3arch.asyncio import (
        ContextData,
        NotificationType,
        ObjectIdentity,
        OctetString,
        SnmpEngine,
        UdpTransportTarget,
        send_notification,
    )

    engine = SnmpEngine()
    t = await UdpTransportTarget.create(("127.0.0.1", port), timeout=1, retries=0)
    t.set_local_address((src, 0))
    note = NotificationType(ObjectIdentity("1.3.6.1.6.3.1.1.5.2")).add_varbinds(
        ("1.3.6.1.2.1.43.18.1.1.8.1.1", OctetString("Paper jam"))
    )
    err, *_ = await send_notification(engine, auth, t, ContextData(), kind, note)
    engine.close_dispatcher()
    return str(err or "")


def test_the_receiver_accepts_v1_v2c_v3_and_counts_the_rest() -> None:
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        UsmUserData,
        usmAesCfb128Protocol,
        usmHMACSHAAuthProtocol,
    )

    user = ("trapper", "authkey123", "privkey123")
    creds = (
        Credential("2c", community="public"),
        Credential(
            "3",
            user=user[0],
            auth_protocol="SHA",
            auth_key=user[1],
            priv_protocol="AES",
            priv_key=user[2],
        ),
    )

    def usm(key: str) -> object:
        return UsmUserData(
            user[0],
            key,
            user[2],
            authProtocol=usmHMACSHAAuthProtocol,
            privProtocol=usmAesCfb128Protocol,
        )

    async def main() -> tuple[list[model.TrapEvent], model.TrapStats, list[str]]:
        port = free_udp_port("127.0.0.1")
        got: list[model.TrapEvent] = []
        rx = TrapReceiver(
            TrapConfig("127.0.0.1", port, creds, (None, None)),
            known=lambda ip: ip == "127.0.0.1",
            accepted=lambda ip, e: got.append(e),
        )
        await rx.start()
        errors = [
            await _send(port, CommunityData("public"), "trap"),
            await _send(port, CommunityData("public", mpModel=0), "trap"),
            await _send(port, usm(user[1]), "inform"),
            await _send(port, CommunityData("wrong"), "trap"),
            await _send(port, usm("wrongkey123"), "inform"),
            await _send(port, CommunityData("public"), "inform", src="127.0.0.2"),
        ]
        await asyncio.sleep(0.2)
        stats = rx.stats()
        rx.close()
        return got, stats, errors

    got, stats, errors = asyncio.run(main())
    assert [(e.snmp_version.value, e.pdu.value) for e in got] == [
        ("2c", "trap"),
        ("1", "trap"),
        ("3", "inform"),
    ]
    assert errors[2] == "" and errors[4] and errors[5]  # only the good inform is acknowledged
    assert got[0].trap_oid == "1.3.6.1.6.3.1.1.5.2"
    assert got[0].varbind[0].value == "Paper jam"
    assert all("public" not in v.value for e in got for v in e.varbind)  # no community (MS-PRV-6)
    assert (stats.accepted, stats.unknown_source) == (3, 1) and stats.bad_credentials >= 2


# --- support recordings -------------------------------------------------------------------


def test_record_an_anonymised_printer_and_its_truth(tmp_path: Path) -> None:
    host, data = "127.0.9.21", tmp_path / "data"
    install_recording(RECORDINGS / "hp_color_mfp.snmprec", data)
    port = free_udp_port(host)
    with SnmpSimulator(endpoints=[Endpoint(host, port, data)]):
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "metersync.cli",
                "agent",
                "record",
                f"{host}:{port}",
                "--out",
                str(tmp_path / "out"),
                "--name",
                "customer",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    rec = (tmp_path / "out" / "customer.snmprec").read_text()
    original = (RECORDINGS / "hp_color_mfp.snmprec").read_text()
    for private in ("CNB1K27391", "a0b1c2d3e4f5", "MeterSync test lab", "Room 1", host):
        assert private.lower() not in rec.lower(), private
    assert "1.3.6.1.2.1.43.10.2.1.4.1.1|65|52311" in rec and "|65|52311" in original
    truth = (tmp_path / "out" / "customer.truth.toml").read_text()
    assert 'key = "sn:hp:anon' in truth and "value = 52311" in truth


def test_a_v3_trap_needs_the_senders_engine_id() -> None:
    from pysnmp.hlapi.v3arch.asyncio import (
        ContextData,
        NotificationType,
        ObjectIdentity,
        SnmpEngine,
        UdpTransportTarget,
        UsmUserData,
        send_notification,
        usmAesCfb128Protocol,
        usmHMACSHAAuthProtocol,
    )
    from pysnmp.proto.rfc1902 import OctetString

    engine_id = "8000000001020304"
    cred = Credential("3", user="t3", auth_protocol="SHA", auth_key="authkey123",
                      priv_protocol="AES", priv_key="privkey123")  # fmt: skip

    async def main(sender_engine: str) -> list[model.TrapEvent]:
        port = free_udp_port("127.0.0.1")
        got: list[model.TrapEvent] = []
        rx = TrapReceiver(TrapConfig("127.0.0.1", port, (cred,), (engine_id,)),
                          known=lambda ip: True, accepted=lambda ip, e: got.append(e))  # fmt: skip
        await rx.start()
        sender = SnmpEngine(snmpEngineID=OctetString(hexValue=sender_engine))
        t = await UdpTransportTarget.create(("127.0.0.1", port), timeout=1, retries=0)
        user = UsmUserData("t3", "authkey123", "privkey123", authProtocol=usmHMACSHAAuthProtocol,
                           privProtocol=usmAesCfb128Protocol)  # fmt: skip
        note = NotificationType(ObjectIdentity("1.3.6.1.6.3.1.1.5.3"))
        await send_notification(sender, user, t, ContextData(), "trap", note)
        await asyncio.sleep(0.2)
        sender.close_dispatcher()
        rx.close()
        return got

    assert [e.trap_oid for e in asyncio.run(main(engine_id))] == ["1.3.6.1.6.3.1.1.5.3"]
    assert asyncio.run(main("8000000001020399")) == []  # another engine: not this user
