"""The conformance suite against agents: the reference agent, and broken ones that must fail.

Real processes: snmpsim responders on 127.3.0.x serving the project's recordings (with the
runtime helper conformance/simulator.py), the harness manager under Hypercorn on loopback, and
the agent as `python -m metersync_agent.service run` (or the same with one flaw patched in,
conformance/broken.py). Runs that are independent go concurrently to keep the wall time down.
"""

from __future__ import annotations

import asyncio
import sys

from metersync_conformance.agent_harness import run_agent
from metersync_conformance.registry import Status, Verdict

CLASSES = ["Agent-Core", "Agent-HTTP"]
REFERENCE = (
    "{python} -m metersync_agent.service run --config {provisioning} --state-dir {state_dir}"
)


def broken(flaw: str) -> str:
    return (
        "{python} -m metersync_conformance.broken agent " + flaw + " -- run --config "
        "{provisioning} --state-dir {state_dir}"
    )


def by_status(verdicts: list[Verdict], status: Status) -> set[str]:
    return {v.requirement for v in verdicts if v.status is status}


def evidence(verdicts: list[Verdict]) -> str:
    return "\n".join(
        f"{v.requirement} {v.check}: {v.summary} | expected {v.expected} | actual {v.actual}"
        for v in verdicts
        if v.status is Status.FAIL
    )


async def _both() -> tuple[list[Verdict], list[Verdict]]:
    ref = run_agent(REFERENCE, CLASSES)
    nob = run_agent(broken("no-backoff"), CLASSES, phases=("baseline", "retry_after", "outage"))
    (r, _), (n, _) = await asyncio.gather(ref, nob)
    return r, n


def test_reference_agent_and_a_retry_storm() -> None:
    ref, storm = asyncio.run(_both())
    print(evidence(ref), file=sys.stderr)
    passed = by_status(ref, Status.PASS)
    # Every phase of the scenario ran and the core rules held.
    for rid in ("MS-XML-9", "MS-HTTP-7", "MS-SEC-5", "MS-DEL-7", "MS-DEL-9", "MS-DEL-10",
                "MS-DEL-11", "MS-DEL-16", "MS-ID-6", "MS-DEV-13", "MS-DEV-15", "MS-DEV-17",
                "MS-CONF-2"):  # fmt: skip
        assert rid in passed, (rid, evidence(ref))
    assert by_status(ref, Status.FAIL) == set(), evidence(ref)
    # The agent that retries every 0.3 s is caught by the backoff rule and nothing else.
    assert by_status(storm, Status.FAIL) == {"MS-DEL-10"}, evidence(storm)


async def _baseline_flaws() -> dict[str, list[Verdict]]:
    flaws = ["wrong-unit", "percent-3", "listen"]
    runs = [run_agent(broken(f), CLASSES, phases=("baseline",)) for f in flaws]
    results = await asyncio.gather(*runs)
    return {f: v for f, (v, _) in zip(flaws, results, strict=True)}


def test_broken_agents_caught_by_exactly_their_requirement() -> None:
    got = asyncio.run(_baseline_flaws())
    expected = {"wrong-unit": {"MS-DEV-11"}, "percent-3": {"MS-DEV-17"}, "listen": {"MS-CONF-2"}}
    for flaw, verdicts in got.items():
        assert by_status(verdicts, Status.FAIL) == expected[flaw], (flaw, evidence(verdicts))


UPDATE = (
    "{python} -m metersync_agent.service update --config {provisioning} --state-dir {state_dir}"
)
UPDATE_CLASSES = ["Agent-Core", "Agent-HTTP", "Agent-Update"]
UPDATE_IDS = {"MS-UPD-1", "MS-UPD-3", "MS-UPD-5", "MS-UPD-6", "MS-UPD-7", "MS-UPD-8",
              "MS-UPD-13", "MS-UPD-18", "MS-UPD-20", "MS-UPD-21"}  # fmt: skip


async def _updates() -> tuple[list[Verdict], list[Verdict]]:
    def one(flawed: bool):  # type: ignore[no-untyped-def]
        broken = "metersync_conformance.broken agent expired-ok --"
        update = UPDATE.replace("metersync_agent.service", broken) if flawed else UPDATE
        return run_agent(
            REFERENCE,
            UPDATE_CLASSES,
            phases=("baseline", "update"),
            update_command=update,
            update_platform="python",
            only="update_",
        )

    (r, _), (b, _) = await asyncio.gather(one(False), one(True))
    return r, b


def test_update_feed_attacks_refused_and_a_frozen_client_caught() -> None:
    ref, frozen = asyncio.run(_updates())
    assert by_status(ref, Status.PASS) == UPDATE_IDS, evidence(ref)
    assert by_status(ref, Status.FAIL) == set(), evidence(ref)
    # The client that accepts an expired timestamp is caught by the freeze rule and nothing else.
    assert by_status(frozen, Status.FAIL) == {"MS-UPD-7"}, evidence(frozen)
