"""The read planner: walked tables narrowed to their used columns, one GETBULK stream over
them (real snmpsim), the same values as column-by-column walks, fewer PDUs in the next cycle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from metersync.snmpsim import SnmpSimulator
from metersync_agent.poller import poll_device
from metersync_agent.profiles import Profile, load_profiles
from metersync_agent.read_plan import plan_columns
from metersync_agent.snmp import Credential, SnmpClient, WalkResult
from metersync_agent.snmp_columns import walk_columns

RECORDINGS = Path(__file__).resolve().parents[1] / "reference_agent" / "recordings"
PROFILES = load_profiles()
STD = PROFILES[0]
SUPPLIES = (1, 3, 6, 1, 2, 1, 43, 11, 1)


def test_a_described_table_is_read_as_its_used_columns():
    columns, gets = plan_columns([STD])
    entry = (*SUPPLIES, 1)
    used = sorted(set(STD.tables["supplies"]["columns"].values()))
    assert [c for c in columns if c[: len(entry)] == entry] == [(*entry, c) for c in used]
    assert SUPPLIES not in columns
    assert (1, 3, 6, 1, 2, 1, 1, 5, 0) in gets


def test_a_vendor_walk_inside_a_narrowed_table_is_kept():
    odd = (*SUPPLIES, 1, 11)  # prtMarkerSuppliesSupplyUnit+2: no standard column
    vendor = Profile(name="v", walks=(odd,), gets=((*SUPPLIES, 1, 9, 1, 1),))
    columns, gets = plan_columns([STD, vendor])
    assert odd in columns
    assert gets.count((*SUPPLIES, 1, 9, 1, 1)) == 0  # inside a walked column: not fetched


@pytest.fixture(scope="module")
def sim():
    with SnmpSimulator(RECORDINGS, variation_modules_dir=RECORDINGS / "variation") as s:
        yield s


@pytest.mark.parametrize("name", ["hp_color_mfp", "konica_bizhub", "sharp_mx"])
def test_the_stream_reads_what_single_walks_read(sim, name):
    columns, _ = plan_columns(PROFILES)

    async def run() -> tuple[WalkResult, WalkResult]:
        client = SnmpClient(timeout=1.0, retries=0)
        try:
            cred = [Credential("2c", community=name)]
            single, stream = WalkResult(), WalkResult()
            async with await client.open_session(*sim.address, cred) as s:
                for c in columns:
                    await s.walk(c, single)
                await walk_columns(s, columns, stream)
            return single, stream
        finally:
            client.close()

    single, stream = asyncio.run(run())
    assert stream.values == single.values
    assert stream.problems == single.problems
    assert stream.pdus * 3 <= single.pdus


def test_the_next_cycle_reads_the_same_with_no_more_pdus(sim):
    counted: list[WalkResult] = []
    orig = SnmpClient.open_session

    async def counting(self, *a, **kw):
        counted.append(kw["into"])
        return await orig(self, *a, **kw)

    async def run():
        client = SnmpClient(timeout=1.0, retries=0)
        cred = [Credential("2c", community="hp_color_mfp")]
        try:
            return [await poll_device(client, *sim.address, cred, PROFILES) for _ in range(2)]
        finally:
            client.close()

    SnmpClient.open_session = counting  # type: ignore[method-assign]
    try:
        first, second = asyncio.run(run())
    finally:
        SnmpClient.open_session = orig  # type: ignore[method-assign]
    assert first.counter == second.counter and first.supply == second.supply
    assert first.identity.device_key == second.identity.device_key
    assert counted[1].pdus <= counted[0].pdus <= 8
    assert counted[0].values == counted[1].values
