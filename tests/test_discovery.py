"""Discovery sweeps against several snmpsim "devices" on their own loopback addresses."""

from __future__ import annotations

import asyncio
import time

from metersync.snmpsim import Endpoint, SnmpSimulator, free_udp_port, write_snmprec
from metersync_agent.discovery import discover
from metersync_agent.snmp import Credential, SnmpClient
from metersync_agent.targets import TargetSet

NET = "127.0.5"
SYS = "1.3.6.1.2.1.1"
HR_TYPE = "1.3.6.1.2.1.25.3.2.1.2"


def system(descr: str, name: str, oid: str) -> list[str]:
    return [f"{SYS}.1.0|4|{descr}", f"{SYS}.2.0|6|{oid}", f"{SYS}.5.0|4|{name}"]


def test_sweep_finds_printers_only(tmp_path):
    devices = {
        # Printer-MIB present
        10: ("public", system("HP LaserJet M404", "hp1", "1.3.6.1.4.1.11.2.3.9.1")
             + ["1.3.6.1.2.1.43.5.1.1.1.1|65|3", "1.3.6.1.2.1.43.5.1.1.16.1|4|HP"]),
        # no Printer-MIB, but an hrDeviceTable row of type hrDevicePrinter
        20: ("public", system("Kyocera", "kyo", "1.3.6.1.4.1.1347.41")
             + [f"{HR_TYPE}.1|6|1.3.6.1.2.1.25.3.1.3", f"{HR_TYPE}.2|6|1.3.6.1.2.1.25.3.1.5"]),
        # a printer reachable only with the second credential
        30: ("private", system("Brother MFC", "bro", "1.3.6.1.4.1.2435.2.3.9.1")
             + ["1.3.6.1.2.1.43.5.1.1.1.1|65|1"]),
        # answers SNMP but is not a printer
        40: ("public", system("Linux router", "gw", "1.3.6.1.4.1.8072.3.2.10")
             + [f"{HR_TYPE}.1|6|1.3.6.1.2.1.25.3.1.3"]),
    }  # fmt: skip
    port = free_udp_port(f"{NET}.10")
    endpoints = []
    for last, (community, rows) in devices.items():
        write_snmprec(tmp_path / str(last) / f"{community}.snmprec", rows)
        endpoints.append(Endpoint(f"{NET}.{last}", port, tmp_path / str(last)))
    creds = [Credential("2c", community="public"), Credential("2c", community="private")]

    async def sweep():
        client = SnmpClient(timeout=1.0, retries=0)
        try:
            targets = TargetSet.parse(
                [f"{NET}.0/24"], exclude=[f"{NET}.250-254"], default_port=port
            )
            return await discover(client, targets, creds, concurrency=256)
        finally:
            client.close()

    with SnmpSimulator(tmp_path, endpoints=endpoints):
        t0 = time.monotonic()
        found = asyncio.run(sweep())
        elapsed = time.monotonic() - t0

    assert [(d.host, d.sys_name) for d in found] == [
        (f"{NET}.10", "hp1"), (f"{NET}.20", "kyo"), (f"{NET}.30", "bro"),
    ]  # fmt: skip
    assert found[0].sys_object_id == "1.3.6.1.4.1.11.2.3.9.1"
    assert found[0].sys_descr == "HP LaserJet M404"
    assert found[2].credential == creds[1]
    assert all(d.port == port for d in found)
    # 249 silent addresses x 2 credentials x 1 s would be ~8 minutes one by one
    assert elapsed < 60
