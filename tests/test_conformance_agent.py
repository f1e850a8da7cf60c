"""The conformance suite against agents: the reference agent, and broken ones that must fail.

Real processes: snmpsim responders on 127.3.0.x serving the project's recordings (with the
runtime helper metersync/snmpsim.py), the harness manager under Hypercorn on loopback, and
the agent as `python -m metersync_agent.service run` (or the same with one flaw patched in,
conformance/broken/). Every run goes at once (one module fixture), so the wall time is that
of the longest run: the reference agent through the full scenario, and through the hard cases
(FRINGE: wrong credentials first, a range with an exclusion, a router, a slow printer, scripted
answers, retention limits after re-provisioning), and through the short walk-cap run (one printer
with a 6,000-row table). Broken agents run on a few recordings only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from typing import Any

import pytest

from metersync_conformance.agent.harness import (
    FRINGE,
    WALK_CAP,
    WALK_CAP_PHASES,
    Setup,
    run_agent,
)
from metersync_conformance.registry import Status, Verdict

CLASSES = ["Agent-Core", "Agent-HTTP"]
REFERENCE = (
    "{python} -m metersync_agent.service run --config {provisioning} --state-dir {state_dir}"
)
FEW = Setup(recordings=("lexmark_ms", "supplies_odd"))
QUICK_FRINGE = dataclasses.replace(FRINGE, refusals=False)  # broken agents: no bad documents

# flaw -> (setup, phases, the requirements it must fail, and only those)
FLAWS: dict[str, tuple[Setup, tuple[str, ...], set[str]]] = {
    "no-backoff": (FEW, ("baseline", "retry_after", "outage"), {"MS-DEL-10"}),
    "wrong-unit": (FEW, ("baseline",), {"MS-DEV-11"}),
    "twin-counter": (FEW, ("baseline",), {"MS-BILL-2"}),
    "percent-3": (FEW, ("baseline",), {"MS-DEV-17"}),
    "listen": (FEW, ("baseline",), {"MS-CONF-2"}),
    "no-exclude": (QUICK_FRINGE, ("baseline",), {"MS-SNMP-15", "MS-PRV-3"}),
    "foreign-receipt": (
        dataclasses.replace(QUICK_FRINGE, script=("wrong-id", "other-agent")),
        ("baseline", "answers"),
        {"MS-HTTP-10"},
    ),
    "no-walk-cap": (WALK_CAP, WALK_CAP_PHASES, {"MS-SNMP-10"}),
    # One answer after the baseline: the cycle's second report is posted before the run ends.
    "twin-reported": (
        dataclasses.replace(QUICK_FRINGE, script=("duplicate",)),
        ("baseline", "answers"),
        {"MS-ID-8"},
    ),
}


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


UPDATE = (
    "{python} -m metersync_agent.service update --config {provisioning} --state-dir {state_dir}"
)
UPDATE_CLASSES = ["Agent-Core", "Agent-HTTP", "Agent-Update"]
UPDATE_IDS = {"MS-UPD-1", "MS-UPD-2", "MS-UPD-3", "MS-UPD-4", "MS-UPD-5", "MS-UPD-6",
              "MS-UPD-7", "MS-UPD-8", "MS-UPD-9", "MS-UPD-10", "MS-UPD-12", "MS-UPD-13",
              "MS-UPD-14", "MS-UPD-17", "MS-UPD-18", "MS-UPD-20", "MS-UPD-21",
              "MS-UPD-22"}  # fmt: skip
# The broken update run: the agent monitors printers beyond maxDevices and, in automatic mode,
# checks every third of checkInterval; its update command accepts an expired timestamp, a
# licence before its notBefore, and reads downloads past their bound. Each flaw must fail
# exactly its check.
UPDATE_FLAWS = ("ignores-max-devices+update-hurry", "expired-ok+licence-early+unbounded")
UPDATE_BROKEN_CHECKS = {
    "update_expired_timestamp_refused": {"MS-UPD-7"},
    "update_foreign_and_expired_licences_refused": {"MS-UPD-21"},
    "update_downloads_bounded": {"MS-UPD-9"},
    "update_licence_max_devices_respected": {"MS-UPD-22"},
    "update_automatic_mode": {"MS-UPD-14"},
}
# A short discovery interval and SNMP timeout: the extra printer of phase licence_limit is
# silent until then, and found soon after it answers.
UPDATE_SETUP = Setup(recordings=("lexmark_ms",), poll_interval=2, discovery_interval=2,
                     snmp=(1, 0, 5))  # fmt: skip


def _update_run(flawed: bool):  # type: ignore[no-untyped-def]
    command, update = REFERENCE, UPDATE
    if flawed:
        agent_flaw, update_flaw = UPDATE_FLAWS
        command = broken(agent_flaw)
        update = UPDATE.replace(
            "metersync_agent.service", f"metersync_conformance.broken agent {update_flaw} --"
        )
    return run_agent(
        command,
        UPDATE_CLASSES,
        phases=("baseline", "update", "licence_limit", "automatic"),
        setup=UPDATE_SETUP,
        update_command=update,
        update_platform="python",
        only="update_",
    )


CONCURRENT_RUNS = 6


async def _all() -> dict[str, list[Verdict]]:
    runs = {
        "update": _update_run(False),
        "update-broken": _update_run(True),
        "reference": run_agent(REFERENCE, CLASSES, setup=Setup(vanish="oki_c", relay="lexmark_ms")),
        "reference-fringe": run_agent(REFERENCE, CLASSES, setup=FRINGE),
        "reference-walk-cap": run_agent(REFERENCE, CLASSES, setup=WALK_CAP, phases=WALK_CAP_PHASES),
    }
    for flaw, (setup, phases, _) in FLAWS.items():
        runs[flaw] = run_agent(broken(flaw), CLASSES, setup=setup, phases=phases)
    # All at once would be ~13 agents and ~30 snmpsim processes on two cores: SNMP budgets of
    # a few seconds then run out for load alone. A few at a time, longest first.
    gate = asyncio.Semaphore(CONCURRENT_RUNS)

    async def gated(run: Any) -> Any:
        async with gate:
            return await run

    results = await asyncio.gather(*(gated(r) for r in runs.values()))
    return {name: v for name, (v, _) in zip(runs, results, strict=True)}


@pytest.fixture(scope="module")
def verdicts() -> dict[str, list[Verdict]]:
    return asyncio.run(_all())


def test_reference_agent_passes_everything(verdicts: dict[str, list[Verdict]]) -> None:
    ref, fringe = verdicts["reference"], verdicts["reference-fringe"]
    capped = verdicts["reference-walk-cap"]
    print(evidence(ref), evidence(fringe), evidence(capped), file=sys.stderr)
    assert by_status(ref, Status.FAIL) == set(), evidence(ref)
    assert by_status(fringe, Status.FAIL) == set(), evidence(fringe)
    assert by_status(capped, Status.FAIL) == set(), evidence(capped)
    assert "MS-SNMP-10" in by_status(capped, Status.PASS), evidence(capped)
    passed = by_status(ref, Status.PASS) | by_status(fringe, Status.PASS)
    # Every phase of both scenarios ran and the rules they exist for held.
    for rid in ("MS-XML-9", "MS-HTTP-7", "MS-SEC-5", "MS-DEL-7", "MS-DEL-9", "MS-DEL-10",
                "MS-DEL-11", "MS-DEL-16", "MS-ID-6", "MS-DEV-13", "MS-DEV-15", "MS-DEV-17",
                "MS-CONF-2", "MS-DEV-24", "MS-DEV-7", "MS-DEV-6", "MS-HTTP-10", "MS-DEL-3",
                "MS-DEL-12", "MS-ERR-3", "MS-HTTP-14", "MS-HTTP-15", "MS-XML-8", "MS-DEL-13",
                "MS-DEL-14", "MS-PRV-8", "MS-SNMP-4", "MS-SNMP-5", "MS-SNMP-7", "MS-SNMP-8",
                "MS-SNMP-14", "MS-SNMP-15", "MS-PRV-3", "MS-ID-5", "MS-HTTP-1", "MS-HTTP-6",
                "MS-SEC-14", "MS-PRV-4", "MS-SNMP-9", "MS-SNMP-11", "MS-PRV-7",
                "MS-ID-8"):  # fmt: skip
        assert rid in passed, (rid, evidence(ref), evidence(fringe))


@pytest.mark.parametrize("flaw", sorted(FLAWS))
def test_broken_agent_caught_by_exactly_its_requirement(
    verdicts: dict[str, list[Verdict]], flaw: str
) -> None:
    got = verdicts[flaw]
    assert by_status(got, Status.FAIL) == FLAWS[flaw][2], (flaw, evidence(got))


def test_update_feed_attacks_refused_and_a_broken_client_caught(
    verdicts: dict[str, list[Verdict]],
) -> None:
    ref, bad = verdicts["update"], verdicts["update-broken"]
    assert by_status(ref, Status.PASS) == UPDATE_IDS, evidence(ref)
    assert by_status(ref, Status.FAIL) == set(), evidence(ref)
    # Each flaw is caught by its own check, and nothing else fails.
    assert {v.check for v in bad if v.status is Status.FAIL} == set(UPDATE_BROKEN_CHECKS), evidence(
        bad
    )
    for name, ids in UPDATE_BROKEN_CHECKS.items():
        got = {v.requirement for v in bad if v.check == name and v.status is Status.FAIL}
        assert got == ids, (name, evidence(bad))
