"""Manager-Update against the reference `metersync manager update`, and a frozen client.

The harness serves a TUF feed on loopback and attacks it step by step (update_harness); the
manager's update command runs once per step. The update checks need no manager server, so the
URL and token command are never used. Both runs go at once (≈ 12 s each).
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from metersync_conformance.cli import run_manager
from metersync_conformance.registry import Status, Verdict

ARGS = "update --feed-url {feed_url} --trusted-root {trusted_root} --data-dir {data_dir}"
REFERENCE = "{python} -m metersync.cli manager " + ARGS
FROZEN = "{python} -m metersync_conformance.broken manager expired-ok -- " + ARGS
IDS = {"MS-UPD-2", "MS-UPD-3", "MS-UPD-4", "MS-UPD-5", "MS-UPD-6", "MS-UPD-7", "MS-UPD-8",
       "MS-UPD-10", "MS-UPD-12", "MS-UPD-17", "MS-UPD-18", "MS-UPD-21"}  # fmt: skip


def _run(command: str | None):  # type: ignore[no-untyped-def]
    return run_manager(
        "http://127.0.0.1:9",  # never contacted by the update checks
        "false",
        ["Manager-Update"],
        update_command=command,
        update_platform="python",
    )


async def _all() -> dict[str, list[Verdict]]:
    runs = {"reference": _run(REFERENCE), "frozen": _run(FROZEN), "none": _run(None)}
    results = await asyncio.gather(*runs.values())
    return {name: v for name, (v, _) in zip(runs, results, strict=True)}


@pytest.fixture(scope="module")
def verdicts() -> dict[str, list[Verdict]]:
    return asyncio.run(_all())


def by_status(verdicts: list[Verdict], status: Status) -> set[str]:
    return {v.requirement for v in verdicts if v.status is status}


def evidence(verdicts: list[Verdict]) -> str:
    return "\n".join(
        f"{v.requirement} {v.check}: {v.summary} | expected {v.expected} | actual {v.actual}"
        for v in verdicts
        if v.status is Status.FAIL
    )


def test_reference_manager_refuses_every_attack_and_stages_the_valid_version(
    verdicts: dict[str, list[Verdict]],
) -> None:
    ref = verdicts["reference"]
    print(evidence(ref), file=sys.stderr)
    assert by_status(ref, Status.FAIL) == set(), evidence(ref)
    assert by_status(ref, Status.PASS) == IDS


def test_frozen_manager_caught_by_the_freeze_rule_only(
    verdicts: dict[str, list[Verdict]],
) -> None:
    assert by_status(verdicts["frozen"], Status.FAIL) == {"MS-UPD-7"}, evidence(verdicts["frozen"])


def test_without_an_update_command_nothing_passes(verdicts: dict[str, list[Verdict]]) -> None:
    none = verdicts["none"]
    assert none and {v.status for v in none} == {Status.NOT_TESTED}
