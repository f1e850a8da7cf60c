"""The conformance suite's channel checks against the reference agent and a broken one.

Real processes, as in test_conformance_agent.py: snmpsim responders, the harness manager on
loopback, the agent as `python -m metersync_agent.service run`. Each run is the baseline phase
(channel off: MS-CH-1) followed by the channel phase (agent/channel_phase.py). One broken agent
serves a POST over the channel as if it were a GET and must fail exactly MS-CH-7; another keeps
a fresh read as the device's held snapshot and must fail exactly MS-CH-19.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_conformance_agent import REFERENCE, broken, by_status, evidence

from metersync_conformance.agent.harness import Setup, run_agent
from metersync_conformance.agent.truth import default_walks
from metersync_conformance.registry import Status, Verdict

CLASSES = ["Agent-Core", "Agent-HTTP", "Agent-Channel"]
CHANNEL_IDS = {
    "MS-CH-1", "MS-CH-2", "MS-CH-4", "MS-CH-6", "MS-CH-7", "MS-CH-9", "MS-CH-10", "MS-CH-11",
    "MS-CH-12", "MS-CH-13", "MS-CH-14", "MS-CH-15", "MS-CH-16", "MS-MSG-9", "MS-MSG-14",
    "MS-MSG-15", "MS-CONF-6", "MS-CH-20", "MS-ERR-1", "MS-MSG-7", "MS-ERR-2", "MS-ERR-4",
    "MS-XML-11", "MS-XML-7", "MS-SNMP-2", "MS-CH-19",
}  # fmt: skip


# Five printers are enough for the channel (and its burst of fresh reads): a short baseline.
PRINTERS = ["brother_hl", "canon_iradv", "epson_wf", "kyocera_ecosys", "lexmark_ms"]


def _walks(root: Path) -> Path:
    for name in PRINTERS:
        for ext in (".snmprec", ".truth.toml"):
            (root / f"{name}{ext}").symlink_to(default_walks() / f"{name}{ext}")
    return root


async def _all(walks: Path) -> tuple[list[Verdict], ...]:
    # The reference reads its printers with an SNMPv3 user (MS-SNMP-2), the broken ones with v2c.
    ref = run_agent(REFERENCE, CLASSES, walks=walks, phases=("baseline",), setup=Setup(v3=True))
    runs = [run_agent(broken(f), CLASSES, walks=walks, phases=("baseline",)) for f in BROKEN]
    return tuple(v for v, _ in await asyncio.gather(ref, *runs))


BROKEN = {"channel-post": {"MS-CH-7"}, "fresh-kept": {"MS-CH-19"}}


def test_channel_checks_pass_the_reference_and_catch_a_post_and_a_kept_fresh_read(
    tmp_path: Path,
) -> None:
    ref, *bad = asyncio.run(_all(_walks(tmp_path)))
    passed = by_status(ref, Status.PASS)
    assert not CHANNEL_IDS - passed, (sorted(CHANNEL_IDS - passed), evidence(ref))
    assert by_status(ref, Status.FAIL) == set(), evidence(ref)
    for (flaw, want), got in zip(BROKEN.items(), bad, strict=True):
        assert by_status(got, Status.FAIL) == want, (flaw, evidence(got))
