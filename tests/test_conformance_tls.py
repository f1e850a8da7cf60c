"""The TLS run of the conformance suite (conformance/tls_harness.py) against agents.

Real processes: the reference agent (or one with a flaw, conformance/broken/) against the
harness's HTTPS managers under Hypercorn and aiosmtpd relays with STARTTLS or implicit TLS,
with certificates made at run time. The reference agent passes every stage; each broken one,
run on the stages that concern it, is caught by exactly the requirement it breaks.
"""

from __future__ import annotations

import asyncio

import pytest
from test_conformance_agent import REFERENCE, broken, by_status, evidence

from metersync_conformance.agent.tls_run import run_tls
from metersync_conformance.registry import Status, Verdict

CLASSES = ["Agent-Core", "Agent-HTTP", "Agent-Channel", "Agent-SMTP"]

# flaw -> (the stages it runs, the requirements it must fail, and only those)
FLAWS: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "tls-noverify": (("https-untrusted", "https-wrong-host"), {"MS-HTTP-11"}),
    "tls-old": (("https-tls1.1",), {"MS-HTTP-11"}),
    "no-client-cert": (("https-client-cert",), {"MS-SEC-18"}),
    "smtp-plain-auth": (("smtp-plain-auth",), {"MS-SMTP-8"}),
    "smtp-noverify": (("smtp-untrusted",), {"MS-SMTP-8"}),
}


async def _all() -> dict[str, list[Verdict]]:
    runs = {"reference": run_tls(REFERENCE, CLASSES)}
    for flaw, (stages, _) in FLAWS.items():
        runs[flaw] = run_tls(broken(flaw), CLASSES, stages=stages)
    results = await asyncio.gather(*runs.values())
    return {name: v for name, (v, _) in zip(runs, results, strict=True)}


@pytest.fixture(scope="module")
def verdicts() -> dict[str, list[Verdict]]:
    return asyncio.run(_all())


def test_reference_agent_passes_every_tls_stage(verdicts: dict[str, list[Verdict]]) -> None:
    ref = verdicts["reference"]
    assert by_status(ref, Status.FAIL) == set(), evidence(ref)
    assert by_status(ref, Status.NOT_TESTED) == set(), [v.summary for v in ref]
    assert by_status(ref, Status.PASS) == {"MS-HTTP-11", "MS-SEC-18", "MS-SMTP-8"}
    # Every stage was judged: trusted, three refused servers and a refusal per binding.
    checked = {v.check: 0 for v in ref}
    for v in ref:
        checked[v.check] += 1
    assert checked == {
        "tls_manager_certificate_verified": 5,
        "tls_channel_certificate_verified": 4,
        "tls_client_certificate_presented": 1,
        "tls_smtp_relay_verified": 5,
    }, checked


@pytest.mark.parametrize("flaw", sorted(FLAWS))
def test_broken_agent_caught_by_exactly_its_requirement(
    verdicts: dict[str, list[Verdict]], flaw: str
) -> None:
    got = verdicts[flaw]
    assert by_status(got, Status.FAIL) == FLAWS[flaw][1], (flaw, evidence(got))
    if flaw == "tls-noverify":  # the channel (wss) too, not only the report posts
        failed = {v.check for v in got if v.status is Status.FAIL}
        assert "tls_channel_certificate_verified" in failed, evidence(got)
