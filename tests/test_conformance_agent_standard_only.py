"""The agent suite is fair to an agent without vendor profiles (issue 15, spec 4.1).

The reference agent run with `--profiles standard` reads the standard MIBs and, for the device
key only, the serial objects of Table 3-2: it must fail nothing. What its truth files take from
a vendor profile it does not apply is reported as profile-dependent (NOT TESTED), never as a
FAIL. The same run with every profile is the control: there the vendor values are judged.
"""

from __future__ import annotations

import asyncio

from test_conformance_agent import CLASSES, REFERENCE, by_status, evidence

from metersync_conformance.agent.harness import Setup, run_agent
from metersync_conformance.registry import Status, Verdict

# Vendor counters and supplies (brother_hl, hp_color_mfp), serials only in vendor objects (the
# key: Table 3-2), a console text from a vendor object (brother_hl), a genErr in a GETBULK
# walk (hostile), and two printers the standard MIBs describe fully.
SETUP = Setup(recordings=("brother_hl", "hp_color_mfp", "hostile", "lexmark_ms", "supplies_odd"))
DEPENDENT = {
    "MS-BILL-1",
    "MS-DEV-4",
    "MS-DEV-9",
    "MS-DEV-12",
    "MS-DEV-14",
    "MS-DEV-18",
    "MS-DEV-21",
}


async def _both() -> tuple[list[Verdict], list[Verdict]]:
    runs = [
        run_agent(REFERENCE + " --profiles standard", CLASSES, setup=SETUP, phases=("baseline",)),
        run_agent(REFERENCE, CLASSES, setup=SETUP, phases=("baseline",)),
    ]
    (standard, _), (full, _) = await asyncio.gather(*runs)
    return standard, full


def _dependent(verdicts: list[Verdict]) -> set[str]:
    return {
        v.requirement
        for v in verdicts
        if v.status is Status.NOT_TESTED and "profile-dependent" in v.summary
    }


def test_a_standard_profile_only_agent_fails_nothing() -> None:
    standard, full = asyncio.run(_both())
    assert by_status(standard, Status.FAIL) == set(), evidence(standard)
    assert by_status(standard, Status.ERROR) == set(), evidence(standard)
    # The vendor values are reported as profile-dependent, and said to be so ...
    assert _dependent(standard) == DEPENDENT, sorted(_dependent(standard))
    # ... while the device keys, from Table 3-2 whatever the profiles, are judged and pass.
    keys = {v.requirement for v in standard if v.status is Status.PASS}
    assert {"MS-ID-2", "MS-ID-3", "MS-ID-9", "MS-SNMP-17"} <= keys
    # The control: with its profiles the same agent is judged on the vendor values too.
    assert by_status(full, Status.FAIL) == set(), evidence(full)
    assert _dependent(full) == set(), sorted(_dependent(full))
    assert by_status(full, Status.PASS) >= DEPENDENT
