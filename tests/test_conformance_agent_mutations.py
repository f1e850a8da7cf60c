"""Every one-line mutation of the reference agent (conformance/broken/agent_mutations.py) is
caught by the checks of the requirement it breaks.

Kept cheap: each mutant runs the baseline phase only, on two recordings, two at a time, next
to the unmutated reference through the same run (which must fail nothing).
"""

from __future__ import annotations

import asyncio

from test_conformance_agent import CLASSES, FEW, REFERENCE, by_status, evidence

from metersync_conformance.agent.harness import run_agent
from metersync_conformance.broken.agent_mutations import AGENT_MUTATIONS
from metersync_conformance.broken.mutations import stale
from metersync_conformance.registry import Status, Verdict

AT_ONCE = 2


def command(name: str) -> str:
    if name == "reference":  # the control: the same run without a mutation fails nothing
        return REFERENCE
    return (
        "{python} -m metersync_conformance.broken agent mut:" + name + " -- run --config "
        "{provisioning} --state-dir {state_dir}"
    )


async def _all() -> dict[str, list[Verdict]]:
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(name: str) -> list[Verdict]:
        async with gate:
            verdicts, _ = await run_agent(command(name), CLASSES, setup=FEW, phases=("baseline",))
            return verdicts

    names = ["reference", *sorted(AGENT_MUTATIONS)]
    return dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))


def test_every_agent_mutation_is_caught_by_its_requirement() -> None:
    runs = asyncio.run(_all())
    control = runs.pop("reference")
    assert by_status(control, Status.FAIL) == set(), evidence(control)
    missed = {
        name: evidence(got)
        for name, got in runs.items()
        if AGENT_MUTATIONS[name].catches not in by_status(got, Status.FAIL)
    }
    assert not missed, missed
    errors = {n: by_status(v, Status.ERROR) for n, v in runs.items() if by_status(v, Status.ERROR)}
    assert not errors, errors


def test_every_agent_mutated_line_is_once_in_its_module() -> None:
    """A refactoring of the reference agent that moves a mutated line fails here, at once."""
    assert not stale(AGENT_MUTATIONS), stale(AGENT_MUTATIONS)
