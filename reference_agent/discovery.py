"""Find printers and MFPs among scan targets.

A device counts as a printer only when SNMP says so: the Printer-MIB (prtGeneral,
1.3.6.1.2.1.43.5) answers, or an hrDeviceTable row has type hrDevicePrinter
(1.3.6.1.2.1.25.3.1.5). All probes share the client's single engine and run with at most
`concurrency` addresses in flight, so a mostly empty /22 takes a few timeouts, not
addresses x timeout::

    found = await discover(client, TargetSet.parse(["10.0.0.0/22"]), creds)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from .snmp import Credential, Oid, SnmpClient, SnmpError, SnmpSession, WalkResult

__all__ = ["DiscoveredDevice", "DiscoveryProgress", "describe", "discover", "probe"]

SYS_DESCR: Oid = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_OBJECT_ID: Oid = (1, 3, 6, 1, 2, 1, 1, 2, 0)
SYS_NAME: Oid = (1, 3, 6, 1, 2, 1, 1, 5, 0)
PRT_GENERAL: Oid = (1, 3, 6, 1, 2, 1, 43, 5)
HR_DEVICE_TYPE: Oid = (1, 3, 6, 1, 2, 1, 25, 3, 2, 1, 2)
HR_DEVICE_PRINTER = "1.3.6.1.2.1.25.3.1.5"


@dataclass
class DiscoveredDevice:
    host: str
    port: int
    credential: Credential
    sys_object_id: str
    sys_descr: str
    sys_name: str


@dataclass
class DiscoveryProgress:
    """Counts a running `discover` keeps up to date (for progress lines and the summary)."""

    probed: int = 0  # addresses whose probe ended
    answered: int = 0  # of those, ones that answered SNMP (printers or not)
    found: int = 0  # printers
    refused: int = 0  # rejected our credentials

    def line(self, total: str, elapsed: float) -> str:
        return (
            f"{self.probed}/{total} addresses probed, {self.answered} answered, "
            f"{self.found} printers, {self.refused} refused our credentials, {elapsed:.1f} s"
        )


def _text(v: object) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace").strip("\x00").strip()
    return "" if v is None else str(v)


async def _is_printer(session: SnmpSession) -> bool:
    r = WalkResult()
    await session.walk(PRT_GENERAL, r, max_varbinds=1)
    if r.values:
        return True
    r = WalkResult()
    await session.walk(HR_DEVICE_TYPE, r, max_varbinds=64)
    return HR_DEVICE_PRINTER in r.values.values()


async def probe(
    client: SnmpClient,
    host: str,
    port: int,
    credentials: list[Credential],
    budget: float = 10.0,
    *,
    use_slot: bool = True,
) -> DiscoveredDevice | None:
    """The device at host:port if it answers and is a printer, else None (SnmpError propagates)."""
    session = await client.open_session(host, port, credentials, budget, use_slot=use_slot)
    async with session:
        if not await _is_printer(session):
            return None
        r = WalkResult()
        await session.get([SYS_OBJECT_ID, SYS_DESCR, SYS_NAME], r)
        return DiscoveredDevice(
            host=host,
            port=port,
            credential=session.credential,
            sys_object_id=_text(r.values.get(SYS_OBJECT_ID)),
            sys_descr=_text(r.values.get(SYS_DESCR)),
            sys_name=_text(r.values.get(SYS_NAME)),
        )


async def discover(
    client: SnmpClient,
    targets: Iterable[tuple[str, int]],
    credentials: list[Credential],
    *,
    concurrency: int = 256,
    budget: float = 10.0,
    problems: list[tuple[str, int, SnmpError]] | None = None,
    progress: DiscoveryProgress | None = None,
) -> list[DiscoveredDevice]:
    """Printers among targets ((host, port) pairs, e.g. a TargetSet), in target order.

    Addresses that stay silent are skipped quietly; ones that reject our credentials
    (auth-failure) are appended to `problems` when given, so a user can fix the credentials.
    `progress`, when given, is kept up to date as probes end.
    """
    found: dict[int, DiscoveredDevice] = {}
    counts = progress if progress is not None else DiscoveryProgress()
    queue: asyncio.Queue[tuple[int, str, int] | None] = asyncio.Queue(maxsize=concurrency * 2)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            i, host, port = item
            try:
                dev = await probe(client, host, port, credentials, budget, use_slot=False)
            except SnmpError as exc:
                counts.probed += 1
                if exc.code != "unreachable":
                    counts.refused += 1
                    if problems is not None:
                        problems.append((host, port, exc))
                continue
            counts.probed += 1
            counts.answered += 1
            if dev is not None:
                counts.found += 1
                found[i] = dev

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        for i, (host, port) in enumerate(targets):  # lazy: never holds the whole range
            await queue.put((i, host, port))
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
    return [found[i] for i in sorted(found)]


def describe(dev: DiscoveredDevice) -> str:
    """One line for logs: host:port sysName (sysObjectID) via credential."""
    via = dev.credential.describe()
    return f"{dev.host}:{dev.port} {dev.sys_name!r} ({dev.sys_object_id}) via {via}"
