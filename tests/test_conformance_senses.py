"""The senses run of the conformance suite (conformance/agent/senses_run.py) against agents.

Real processes: the reference agent, and agents with flaws (conformance/broken/senses.py),
against the harness's manager and snmpsim printers; the harness sends SNMPv1, v2c and v3
notifications from the printers' own loopback addresses to the agents' trap receivers, which
bind a loopback address on an ephemeral port (never 162). The reference agent passes every
check; each broken agent is caught by exactly the requirements its flaws break. Four runs at
once, about a minute.
"""

from __future__ import annotations

import asyncio

import pytest
from test_conformance_agent import REFERENCE, broken, by_status, evidence

from metersync_conformance.agent.senses_run import run_senses
from metersync_conformance.registry import Status, Verdict

CLASSES = ["Agent-Core", "Agent-HTTP", "Agent-Trap"]
SENSES = {f"MS-TRAP-{n}" for n in range(1, 12)} | {f"MS-PRIV-{n}" for n in (1, 2, 3, 5, 6, 7)}

# flaws (joined with +) -> (stages, the requirements they must fail, and only those)
FLAWS: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "trap-any-source+no-pdu-budget+privacy-leak+key-masked": (
        ("senses", "budget"),
        {"MS-TRAP-3", "MS-TRAP-9", "MS-PRIV-1", "MS-PRIV-2", "MS-PRIV-5"},
    ),
    # trap-flood reads the idle printer at each trap, so adaptive-lazy cannot hide its traps
    "trap-v1-ignored+trap-flood+adaptive-lazy+interval-untold+privacy-unkeyed+masked-unlisted"
    "+masks-readings": (
        ("senses",),
        {"MS-TRAP-2", "MS-TRAP-4", "MS-TRAP-7", "MS-TRAP-8", "MS-TRAP-10"}
        | {"MS-PRIV-3", "MS-PRIV-6", "MS-PRIV-7"},
    ),
    # a receiver on 0.0.0.0 answers informs from another address: they are not acknowledged
    "trap-wildcard+trap-no-read+trap-forgotten+no-trap-stats+adaptive-hurry": (
        ("senses",),
        {"MS-TRAP-1", "MS-TRAP-2", "MS-TRAP-4", "MS-TRAP-5", "MS-TRAP-6", "MS-TRAP-7"},
    ),
}


async def _all() -> dict[str, list[Verdict]]:
    runs = {"reference": run_senses(REFERENCE, CLASSES)}
    for flaws, (stages, _) in FLAWS.items():
        runs[flaws] = run_senses(broken(flaws), CLASSES, stages=stages)
    results = await asyncio.gather(*runs.values())
    return {name: v for name, (v, _) in zip(runs, results, strict=True)}


@pytest.fixture(scope="module")
def verdicts() -> dict[str, list[Verdict]]:
    return asyncio.run(_all())


def test_reference_agent_passes_the_senses_run(verdicts: dict[str, list[Verdict]]) -> None:
    ref = verdicts["reference"]
    assert by_status(ref, Status.FAIL) == set(), evidence(ref)
    assert by_status(ref, Status.NOT_TESTED) == set(), [v.summary for v in ref]
    assert by_status(ref, Status.PASS) == SENSES


@pytest.mark.parametrize("flaws", list(FLAWS))
def test_each_broken_agent_is_caught_by_its_requirements(
    verdicts: dict[str, list[Verdict]], flaws: str
) -> None:
    got = verdicts[flaws]
    assert by_status(got, Status.FAIL) == FLAWS[flaws][1], evidence(got)
