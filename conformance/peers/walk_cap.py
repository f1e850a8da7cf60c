"""A printer whose interface table is longer than the walk cap (MS-SNMP-10).

Its recording is written at run time: a plain printer (serial, one marker counter, one supply)
with 6,000 ifPhysAddress rows, the first a usable MAC address and the others empty (virtual
interfaces without one), so the report stays small whatever an agent keeps. Only that column of
the ifTable exists, so an agent walking ifPhysAddress, ifEntry or ifTable meets the long column
at once. It is served by its own snmpsim process (its walks never slow the other printers) behind
a relay (peers/snmp_relay.py) that logs the rows the agent asks for, and only for the run that
needs it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from metersync.snmpsim import Endpoint, SnmpSimulator, free_udp_port, write_snmprec
from metersync_conformance.peers.snmp_relay import Relay

CAP = 5000  # the fixed walk cap (Table 5-1)
ROWS = 6000
SUBTREE = (1, 3, 6, 1, 2, 1, 2, 2, 1, 6)  # ifPhysAddress
SLACK = 50  # two GETBULKs of 25 past the cap: "stopped", not "walked on"
KEY = "sn:ent99996:walkcap01"
SERIAL = "WALKCAP01"
MAC = "02:00:00:ca:ff:ee"
TOTAL = 424242
LEVEL, MAX_CAPACITY = 61, 100


def recording() -> list[str]:
    column = ".".join(map(str, SUBTREE))
    rows = [f"{column}.1|4x|{MAC.replace(':', '')}"]
    rows += [f"{column}.{i}|4|" for i in range(2, ROWS + 1)]
    return rows + [
        "1.3.6.1.2.1.1.1.0|4|Printer with a long interface table",
        "1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.99996.1",
        "1.3.6.1.2.1.1.3.0|67|555",
        "1.3.6.1.2.1.1.5.0|4|walkcap",
        "1.3.6.1.2.1.25.3.2.1.1.1|2|1",
        "1.3.6.1.2.1.25.3.2.1.2.1|6|1.3.6.1.2.1.25.3.1.5",
        "1.3.6.1.2.1.25.3.2.1.3.1|4|Walk cap printer",
        "1.3.6.1.2.1.25.3.2.1.5.1|2|2",
        "1.3.6.1.2.1.25.3.5.1.1.1|2|3",
        f"1.3.6.1.2.1.43.5.1.1.17.1|4|{SERIAL}",
        "1.3.6.1.2.1.43.10.2.1.3.1.1|2|7",  # impressions
        f"1.3.6.1.2.1.43.10.2.1.4.1.1|65|{TOTAL}",
        "1.3.6.1.2.1.43.11.1.1.4.1.1|2|3",  # supplyThatIsConsumed
        "1.3.6.1.2.1.43.11.1.1.5.1.1|2|3",  # toner
        "1.3.6.1.2.1.43.11.1.1.6.1.1|4|Black Toner",
        "1.3.6.1.2.1.43.11.1.1.7.1.1|2|19",  # percent
        f"1.3.6.1.2.1.43.11.1.1.8.1.1|2|{MAX_CAPACITY}",
        f"1.3.6.1.2.1.43.11.1.1.9.1.1|2|{LEVEL}",
    ]


@dataclass
class WalkCapPrinter:
    host: str
    port: int
    relay: Relay
    responder: SnmpSimulator

    async def stop(self) -> None:
        self.relay.close()
        await asyncio.to_thread(self.responder.stop)


async def start(work: Path, host: str, port: int, timeout: float) -> WalkCapPrinter:
    """Serve the printer at host:port (a relay) from its own responder on another port."""
    data = work / "printers" / "walk-cap"
    write_snmprec(data / "public.snmprec", recording())
    behind = free_udp_port(host)
    responder = SnmpSimulator(endpoints=[Endpoint(host, behind, data)])
    await asyncio.to_thread(responder.start)
    relay = await Relay((host, port), (host, behind), timeout=timeout).start()
    return WalkCapPrinter(host, port, relay, responder)
